"""The cluster's GPU inventory: Node labels -> GPU types, which Nodes a pod can be scheduled on,
and the judgement against every GPU type it could get (the webhook and `check --cluster`)."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
import yaml

from vllm_fit.admission.config import WebhookConfig
from vllm_fit.admission.nodes import NodeStore
from vllm_fit.admission.review import Reviewer
from vllm_fit.check import check_object
from vllm_fit.cli import main as cli_main
from vllm_fit.inventory import Inventory, reachable_gpus, read_node, schedulable
from vllm_fit.launch.gpus import placement_of
from vllm_fit.profiles import vllm_flag_table

LLAMA = "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic"
H100_LABEL = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
L4_LABEL = {"nvidia.com/gpu.product": "NVIDIA-L4"}


def node(name, labels=None, gpus=None, resource="nvidia.com/gpu", taints=None):
    body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": dict(labels or {})},
            "spec": {}, "status": {}}
    if gpus is not None:
        body["status"]["allocatable"] = {resource: str(gpus), "cpu": "64"}
    if taints:
        body["spec"]["taints"] = taints
    return body


def pod(args, gpus=1, node_selector=None, affinity=None, tolerations=None, annotations=None):
    spec = {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.11.0", "args": args,
                            "resources": {"limits": {"nvidia.com/gpu": gpus}}}]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if affinity:
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": affinity}}}
    if tolerations:
        spec["tolerations"] = tolerations
    meta = {"name": "p", "namespace": "default"}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


# ---------------------------------------------------------------- reading Nodes

@pytest.mark.parametrize("labels, allocatable, expected", [
    (H100_LABEL, 8, ("H100-80GB", "nvidia.com/gpu", 8)),
    ({"cloud.google.com/gke-accelerator": "nvidia-l4"}, 1, ("L4", "nvidia.com/gpu", 1)),
    ({"amd.com/gpu.product-name": "AMD_Instinct_MI300X"}, None, ("MI300X", "amd.com/gpu", None)),
    ({"nvidia.com/gpu.product": "NVIDIA-Future-GPU"}, 8, (None, "nvidia.com/gpu", 8)),
    ({"beta.amd.com/gpu.product-name": "MI300X"}, None, ("MI300X", "amd.com/gpu", None)),
    ({"node.kubernetes.io/instance-type": "p5.48xlarge"}, 8, ("H100-80GB", "nvidia.com/gpu", 8)),
    ({"nvidia.com/gpu.memory": "46068"}, 4, ("46068MiB", "nvidia.com/gpu", 4)),
    ({"amd.com/gpu.vram": "192G"}, None, ("192GiB", "amd.com/gpu", None)),
    ({}, 2, (None, "nvidia.com/gpu", 2)),  # a GPU Node with no type label
])
def test_read_node(catalog, labels, allocatable, expected):
    resource = expected[1]
    got = read_node(node("n", labels, allocatable, resource=resource), catalog)
    assert (got.gpu, got.resource, got.count) == expected


def test_nodes_without_gpus_are_left_out(catalog):
    assert read_node(node("cpu-only", {"kubernetes.io/os": "linux"}), catalog) is None
    assert read_node({"kind": "Node"}, catalog) is None
    assert read_node("garbage", catalog) is None


# ---------------------------------------------------------------- scheduling predicates

def _n(catalog, labels=None, taints=None, name="n"):
    return read_node(node(name, {**H100_LABEL, **(labels or {})}, 8, taints=taints), catalog)


@pytest.mark.parametrize("expr, fits", [
    ({"key": "pool", "operator": "In", "values": ["a", "b"]}, True),
    ({"key": "pool", "operator": "In", "values": ["c"]}, False),
    ({"key": "pool", "operator": "NotIn", "values": ["a"]}, False),
    ({"key": "zone", "operator": "NotIn", "values": ["x"]}, True),
    ({"key": "pool", "operator": "Exists"}, True),
    ({"key": "pool", "operator": "DoesNotExist"}, False),
    ({"key": "gen", "operator": "Gt", "values": ["3"]}, True),
    ({"key": "gen", "operator": "Lt", "values": ["3"]}, False),
])
def test_required_node_affinity_operators(catalog, expr, fits):
    n = _n(catalog, {"pool": "a", "gen": "4"})
    placement = placement_of({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [expr]}]}}}})
    assert schedulable(n, placement, "nvidia.com/gpu") is fits


def test_affinity_terms_are_ored_and_match_fields_name_the_node(catalog):
    n = _n(catalog, {"pool": "a"}, name="gpu-7")
    terms = [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["z"]}]},
             {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["gpu-7"]}]}]
    assert schedulable(n, placement_of({"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}), None)


def test_node_name_pins_one_node(catalog):
    inv = Inventory.from_nodes([node("h1", H100_LABEL, 8), node("l1", L4_LABEL, 8)], catalog)
    got = reachable_gpus(inv, placement_of({"nodeName": "l1"}), "nvidia.com/gpu", 1, catalog)
    assert [(o.name, o.nodes) for o in got.options] == [("L4", ("l1",))]


def test_taints_and_tolerations(catalog):
    tainted = _n(catalog, taints=[{"key": "dedicated", "value": "llm", "effect": "NoSchedule"}])
    assert not schedulable(tainted, placement_of({}), "nvidia.com/gpu")
    assert schedulable(tainted, placement_of({"tolerations": [{"key": "dedicated", "value": "llm",
                                                                 "effect": "NoSchedule"}]}), "nvidia.com/gpu")
    assert schedulable(tainted, placement_of({"tolerations": [{"operator": "Exists"}]}), "nvidia.com/gpu")
    assert not schedulable(tainted, placement_of({"tolerations": [{"key": "dedicated", "value": "other"}]}),
                           "nvidia.com/gpu")
    # PreferNoSchedule only steers; the GPU operator's nvidia.com/gpu taint is tolerated for GPU pods
    soft = _n(catalog, taints=[{"key": "x", "effect": "PreferNoSchedule"},
                               {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}])
    assert schedulable(soft, placement_of({}), "nvidia.com/gpu")


def test_reachable_gpus_groups_by_type_largest_first_and_drops_nodes_with_too_few(catalog):
    inv = Inventory.from_nodes([node("h1", H100_LABEL, 8), node("h2", H100_LABEL, 8), node("l1", L4_LABEL, 1),
                                node("l4x4", L4_LABEL, 4), node("amd", {"amd.com/gpu.product-name": "MI300X"}, 8,
                                                                resource="amd.com/gpu")], catalog)
    got = reachable_gpus(inv, placement_of({}), "nvidia.com/gpu", 2, catalog)
    assert [(o.name, o.nodes) for o in got.options] == [("H100-80GB", ("h1", "h2")), ("L4", ("l4x4",))]
    assert got.too_few_gpus == ("l1",)
    pinned = reachable_gpus(inv, placement_of({"nodeSelector": L4_LABEL}), "nvidia.com/gpu", 1, catalog)
    assert [o.name for o in pinned.options] == ["L4"]


# ---------------------------------------------------------------- the judgement

@pytest.fixture()
def judge(catalog, profiles, bundled):
    table = vllm_flag_table()

    def run(obj, nodes):
        inv = Inventory.from_nodes(nodes, catalog)
        (result,) = check_object(obj, resolver=bundled, catalog=catalog, profiles=profiles, flag_table=table,
                                 inventory=inv)
        return result
    return run


TWO_H100 = [node("h100-a", H100_LABEL), node("h100-b", H100_LABEL)]


def test_fits_no_gpu_of_the_cluster_is_denied_naming_the_gpu_and_the_fix(judge):
    result = judge(pod([LLAMA]), TWO_H100)
    assert result.rejected
    error = result.verdict.errors[0]
    assert error.code == "no-kv-cache-memory"
    assert "fits none of the cluster's GPUs this pod can be scheduled on (H100-80GB (2 nodes))" in error.message
    assert "TP=2 gives" in error.message
    assert result.gpu == "H100-80GB" and result.found.gpus.type_source == "cluster"


def test_tp2_on_the_same_cluster_fits(judge):
    result = judge(pod([LLAMA, "-tp", "2", "--max-model-len", "16000"], gpus=2), TWO_H100)
    assert not result.rejected and result.plan is not None and result.plan.gpu["name"] == "H100-80GB"


def test_fits_some_gpus_warns_and_suggests_the_node_selector(judge):
    nodes = TWO_H100 + [node("l4", L4_LABEL, 8)]
    result = judge(pod(["Qwen/Qwen3-32B", "--max-model-len", "8192"]), nodes)
    assert not result.rejected
    warning = next(r for r in result.verdict.reasons if r.code == "fits-some-cluster-gpus")
    assert "fits H100-80GB but not L4" in warning.message
    assert "nodeSelector nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3" in warning.message
    assert result.gpu == "H100-80GB"


def test_when_all_fit_the_smallest_gpu_is_assumed(judge):
    nodes = [node("h200", {"nvidia.com/gpu.product": "NVIDIA-H200"}), *TWO_H100]
    result = judge(pod(["Qwen/Qwen3-0.6B", "--max-model-len", "8192"]), nodes)
    assert not result.rejected and result.gpu == "H100-80GB"


def test_node_selector_limits_what_is_judged(judge):
    nodes = TWO_H100 + [node("l4", L4_LABEL, 8)]
    # pinned to the H100 Nodes by affinity: the L4s do not count
    result = judge(pod(["Qwen/Qwen3-32B", "--max-model-len", "8192"], affinity=[{"matchExpressions": [
        {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3"]}]}]), nodes)
    assert not [r for r in result.verdict.reasons if r.code == "fits-some-cluster-gpus"]


def test_unknown_gpu_types_on_reachable_nodes_prevent_a_denial(judge):
    nodes = TWO_H100 + [node("x", {"nvidia.com/gpu.product": "NVIDIA-Future-GPU"}, 8)]
    result = judge(pod([LLAMA]), nodes)
    assert not result.rejected
    assert any(r.code == "unknown-gpu" and "NVIDIA-Future-GPU" in r.message for r in result.verdict.reasons)


def test_no_reachable_node_falls_back_to_the_unknown_gpu_warning(judge):
    result = judge(pod([LLAMA], node_selector={"pool": "none"}), TWO_H100)
    assert not result.rejected and [r.code for r in result.verdict.reasons] == ["unknown-gpu"]


def test_nodes_with_too_few_gpus_are_reported(judge):
    result = judge(pod([LLAMA, "-tp", "8"], gpus=8), [node("small", H100_LABEL, 4)])
    assert not result.rejected
    codes = [r.code for r in result.verdict.reasons]
    assert "too-few-gpus-on-nodes" in codes and "unknown-gpu" in codes


def test_many_like_nodes_are_judged_as_pools(catalog):
    nodes = [node(f"h{i}", {**H100_LABEL, "kubernetes.io/hostname": f"h{i}"}, 8) for i in range(50)]
    nodes += [node(f"l{i}", {**L4_LABEL, "kubernetes.io/hostname": f"l{i}"}, 1) for i in range(50)]
    inv = Inventory.from_nodes(nodes, catalog)
    assert len(inv.pools()) == 2
    got = reachable_gpus(inv, placement_of({}), "nvidia.com/gpu", 1, catalog)
    assert [(o.name, len(o.nodes)) for o in got.options] == [("H100-80GB", 50), ("L4", 50)]
    assert reachable_gpus(inv, placement_of({}), "nvidia.com/gpu", 1, catalog) is got  # remembered per snapshot
    # a placement on the name label is judged Node by Node
    one = reachable_gpus(inv, placement_of({"nodeSelector": {"kubernetes.io/hostname": "h7"}}), "nvidia.com/gpu",
                         1, catalog)
    assert [(o.name, o.nodes) for o in one.options] == [("H100-80GB", ("h7",))]


def test_a_stated_gpu_type_wins_over_the_cluster(judge):
    result = judge(pod([LLAMA], node_selector={"nvidia.com/gpu.product": "NVIDIA-H200"}), TWO_H100)
    assert result.found.gpus.type_source == "node-selector" and result.gpu == "H200"


# ---------------------------------------------------------------- the webhook's store and review

def test_node_store_follows_watch_events(catalog):
    store = NodeStore(catalog)
    store.apply(None, node("h1", H100_LABEL, 8))
    store.apply("ADDED", node("cpu", {}))
    generation = store.generation
    store.apply("MODIFIED", node("h1", H100_LABEL, 8))  # a heartbeat: nothing we read changed
    assert store.generation == generation and len(store) == 1
    store.apply("MODIFIED", node("h1", L4_LABEL, 8))
    assert store.inventory().nodes[0].gpu == "L4" and store.generation == generation + 1
    store.apply("DELETED", node("h1", L4_LABEL, 8))
    assert store.inventory().nodes == ()


def test_reviewer_denies_with_cluster_gpus_and_annotates_the_source(catalog, profiles, bundled):
    store = NodeStore(catalog)
    reviewer = Reviewer(WebhookConfig(), bundled, catalog, profiles, nodes=store)
    obj = pod([LLAMA])
    before = asyncio.run(reviewer.review(obj))
    assert before.decision == "allow" and any("unknown" in w or "GPU type" in w for w in before.warnings)
    for body in TWO_H100:
        store.apply("ADDED", body)
    after = asyncio.run(reviewer.review(obj))  # the cached result of the first review is not reused
    assert after.decision == "deny"
    assert "H100-80GB" in after.message and "TP=2" in after.message
    assert after.annotations["vllm-fit.io/gpu-source"] == "cluster"
    assert after.annotations["vllm-fit.io/gpu"] == "H100-80GB"


def test_reviewer_gives_no_warning_for_a_cpu_launch(catalog, profiles, bundled):
    reviewer = Reviewer(WebhookConfig(), bundled, catalog, profiles, nodes=NodeStore(catalog))
    obj = pod(["Qwen/Qwen3-0.6B", "--device", "cpu"])
    del obj["spec"]["containers"][0]["resources"]
    judgement = asyncio.run(reviewer.review(obj))
    assert judgement.decision == "allow" and judgement.warnings == ()


# ---------------------------------------------------------------- the CLI, offline

def test_cli_check_with_saved_nodes_gives_the_webhook_verdict(tmp_path, capsys):
    manifest, nodes = tmp_path / "m.yaml", tmp_path / "nodes.yaml"
    manifest.write_text(json.dumps(pod([LLAMA])))
    nodes.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": TWO_H100}))
    assert cli_main(["check", str(manifest)]) == 0  # no GPU type: a warning
    capsys.readouterr()
    assert cli_main(["check", str(manifest), "--nodes", str(nodes)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"REJECT +1xH100-80GB", out) and "TP=2 gives" in out


def test_cli_check_cluster_with_an_unreachable_api_server_is_bad_input(tmp_path, capsys):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    manifest = tmp_path / "m.yaml"
    manifest.write_text(json.dumps(pod([LLAMA])))
    assert cli_main(["check", str(manifest), "--cluster", "--kubeconfig", str(kubeconfig)]) == 2
    assert "cannot reach the API server" in capsys.readouterr().err


@pytest.mark.parametrize("obj, decision", [
    (pod(["Qwen/Qwen3-32B", "-tp", "4"], gpus=2), "deny"),
    (pod([LLAMA, "-tp", "3"], gpus=3), "deny"),
    (pod(["Qwen/Qwen3-32B", "--gpu-memory-utilisation", "0.5"]), "deny"),
    (pod([LLAMA]), "allow"),  # no GPU type, no Nodes: memory not judged
])
def test_check_gives_the_webhook_verdict_offline(catalog, profiles, bundled, obj, decision):
    """The acceptance launches: `vllm-fit check` (check_object) and a review with the server's
    default configuration agree, with and without the cluster's Nodes."""
    for nodes in ([], TWO_H100):
        store = NodeStore(catalog)
        for body in nodes:
            store.apply(None, body)
        judgement = asyncio.run(Reviewer(WebhookConfig(), bundled, catalog, profiles, nodes=store).review(obj))
        (result,) = check_object(obj, resolver=bundled, catalog=catalog, profiles=profiles,
                                 flag_table=vllm_flag_table(), inventory=Inventory.from_nodes(nodes, catalog))
        expected = decision if not nodes or decision == "deny" else "deny"  # 70B at TP=1 on H100: denied
        assert judgement.decision == expected, (nodes, judgement.message)
        assert result.rejected is (expected == "deny")
