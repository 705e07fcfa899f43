"""What a user sees in kubectl with the webhook installed (E2E_MODE=local: `serve --dev`; helm: the chart).

The manifests are the recorded ones (tests/fixtures/admission/manifests), placed in this run's
namespaces. Their pods never start (no GPUs, nodeSelector on H100): only admission matters.
"""

from __future__ import annotations

import copy
import json
from typing import Optional

import pytest

from e2e_support import (MODE_LABEL, Cluster, Kubectl, Namespaces, is_denial, manifest, placed, poll,
                         vllm_annotations, warnings_of)

TP1 = "a-deploy-create.yaml"  # Llama-3.3-70B-FP8, TP=1, 1 GPU: no KV cache memory
TP2 = "b-deploy-update-tp2.yaml"  # the same at TP=2 with 2 GPUs: fits
NGINX = "h-nginx-negative.yaml"

EXPECTED_KEYS = {"verdict", "kv-cache-gib", "kv-cache-tokens", "max-concurrency", "weights-gib", "gpu", "profile"}

pytestmark = pytest.mark.usefixtures("webhook")


def assert_denied_with_the_numbers(result) -> None:
    assert is_denial(result), str(result)
    assert "-1.44 GiB" in result.stderr, result.stderr
    assert "TP=2 gives" in result.stderr, result.stderr


def test_tp1_is_denied_with_the_numbers_and_the_fix(kubectl: Kubectl, namespaces: Namespaces):
    obj = placed(manifest(TP1), namespaces.enforce, "llama70b-fp8-tp1")
    result = kubectl.apply(obj)
    assert_denied_with_the_numbers(result)
    assert kubectl.get("deployment", "llama70b-fp8-tp1", namespaces.enforce) is None


def test_tp2_with_two_gpus_is_created_and_annotated(kubectl: Kubectl, namespaces: Namespaces):
    obj = placed(manifest(TP2), namespaces.enforce, "llama70b-fp8-tp2")
    result = kubectl.apply(obj)
    assert result.ok, str(result)
    assert not warnings_of(result), result.stderr
    created = kubectl.get("deployment", "llama70b-fp8-tp2", namespaces.enforce)
    assert created is not None
    annotations = vllm_annotations(created)
    assert {k.removeprefix("vllm-fit.io/") for k in annotations} >= EXPECTED_KEYS, annotations
    assert annotations["vllm-fit.io/verdict"] == "fits"
    assert annotations["vllm-fit.io/gpu"] == "H100-80GB"
    assert float(annotations["vllm-fit.io/kv-cache-gib"]) == pytest.approx(31.99, abs=0.05)
    # The workload's own metadata only: annotating the pod template would roll out every pod.
    assert not vllm_annotations(created["spec"]["template"]), created["spec"]["template"]["metadata"]
    # Re-applying the same manifest is admitted and leaves the annotations as they were.
    again = kubectl.apply(obj)
    assert again.ok, str(again)
    assert vllm_annotations(kubectl.get("deployment", "llama70b-fp8-tp2", namespaces.enforce)) == annotations


def test_changing_a_fitting_deployment_to_tp1_is_denied(kubectl: Kubectl, namespaces: Namespaces):
    name = "llama70b-update"
    created = kubectl.apply(placed(manifest(TP2), namespaces.enforce, name))
    assert created.ok, str(created)
    result = kubectl.apply(placed(manifest(TP1), namespaces.enforce, name))
    assert_denied_with_the_numbers(result)
    current = kubectl.get("deployment", name, namespaces.enforce)
    assert current is not None and vllm_annotations(current)["vllm-fit.io/verdict"] == "fits"


def test_server_dry_run_denies_tp1_the_same(kubectl: Kubectl, namespaces: Namespaces):
    obj = placed(manifest(TP1), namespaces.enforce, "llama70b-dry-tp1")
    result = kubectl.apply(obj, "--dry-run=server")
    assert_denied_with_the_numbers(result)
    assert kubectl.get("deployment", "llama70b-dry-tp1", namespaces.enforce) is None


def test_server_dry_run_admits_and_annotates_tp2_without_creating_it(kubectl: Kubectl, namespaces: Namespaces):
    obj = placed(manifest(TP2), namespaces.enforce, "llama70b-dry-tp2")
    result = kubectl.apply(obj, "--dry-run=server", "-o", "json")
    assert result.ok, str(result)
    annotations = vllm_annotations(result.json())
    assert {k.removeprefix("vllm-fit.io/") for k in annotations} >= EXPECTED_KEYS, annotations
    assert annotations["vllm-fit.io/verdict"] == "fits"
    assert kubectl.get("deployment", "llama70b-dry-tp2", namespaces.enforce) is None


def test_warn_mode_prints_warnings_and_admits(kubectl: Kubectl, namespaces: Namespaces):
    obj = placed(manifest(TP1), namespaces.warn, "llama70b-fp8-tp1")
    dry = kubectl.apply(obj, "--dry-run=server")
    assert dry.ok, str(dry)
    assert warnings_of(dry), dry.stderr
    result = kubectl.apply(obj)
    assert result.ok, str(result)
    warnings = warnings_of(result)
    assert warnings and any("-1.44 GiB" in w for w in warnings), result.stderr
    created = kubectl.get("deployment", "llama70b-fp8-tp1", namespaces.warn)
    assert created is not None
    assert vllm_annotations(created)["vllm-fit.io/verdict"] == "reject"


def test_audit_mode_admits_silently_and_annotates(kubectl: Kubectl, namespaces: Namespaces):
    obj = placed(manifest(TP1), namespaces.audit, "llama70b-fp8-tp1")
    result = kubectl.apply(obj)
    assert result.ok, str(result)
    assert not warnings_of(result), result.stderr
    created = kubectl.get("deployment", "llama70b-fp8-tp1", namespaces.audit)
    assert created is not None
    assert vllm_annotations(created)["vllm-fit.io/verdict"] == "reject"


def test_a_non_vllm_deployment_is_untouched(kubectl: Kubectl, namespaces: Namespaces):
    result = kubectl.apply(placed(manifest(NGINX), namespaces.enforce))
    assert result.ok, str(result)
    assert not warnings_of(result), result.stderr
    created = kubectl.get("deployment", "nginx", namespaces.enforce)
    assert created is not None
    assert not vllm_annotations(created), created["metadata"].get("annotations")


@pytest.mark.parametrize("where", ["kube-system", "webhook-namespace"])
def test_system_and_webhook_namespaces_are_never_blocked(kubectl: Kubectl, namespaces: Namespaces,
                                                         cluster: Cluster, where: str):
    namespace = "kube-system" if where == "kube-system" else namespaces.own
    name = f"vllm-fit-e2e-{cluster.run_id}-tp1"
    try:
        result = kubectl.apply(placed(manifest(TP1), namespace, name))
        assert result.ok, str(result)
        assert not warnings_of(result), result.stderr
        created = kubectl.get("deployment", name, namespace)
        assert created is not None and not vllm_annotations(created), created and created["metadata"]
    finally:
        kubectl("delete", "deployment", name, "-n", namespace, "--ignore-not-found", "--wait=false")


def test_values_from_a_configmap_are_read_with_the_charts_rbac(kubectl: Kubectl, namespaces: Namespaces):
    """The webhook GETs the ConfigMap the launch reads (issue 16) as the chart's ServiceAccount: the
    same TP=1 launch with its model and TP in a ConfigMap is denied with the same numbers."""
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "llama-serving", "namespace": namespaces.enforce},
                 "data": {"MODEL": "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", "TP": "1"}}
    assert kubectl.apply(configmap).ok
    obj = placed(manifest(TP1), namespaces.enforce, "llama70b-from-configmap")
    container = obj["spec"]["template"]["spec"]["containers"][0]
    container["args"] = ["$(MODEL)", "--tensor-parallel-size=$(TP)"] + container["args"][2:]
    container["envFrom"] = [{"configMapRef": {"name": "llama-serving"}}]
    result = kubectl.apply(obj)
    assert_denied_with_the_numbers(result)
    assert kubectl.get("deployment", "llama70b-from-configmap", namespaces.enforce) is None


# --------------------------------------------------------------------------------------------
# The seed's failure cases (shared/seed/vllm-memory-profiling.md, "Failed Configurations"), each as
# the seed's own reproduction Pod on an H100 node, and the fix the denial names.


def seed_pod(name: str, model: str, tp: int, max_model_len: int = 16000, *extra: str) -> dict:
    """The seed's "How to Replicate" Pod, pinned to H100 by the GPU feature discovery label."""
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            "containers": [{
                "name": "vllm", "image": "vllm/vllm-openai:v0.11.0", "command": ["vllm", "serve"],
                "args": [model, f"--tensor-parallel-size={tp}", "--gpu-memory-utilization=0.90",
                         f"--max-model-len={max_model_len}", "--block-size=128", "--enable-prefix-caching",
                         "--host=0.0.0.0", "--port=8000", *extra],
                "resources": {"requests": {"nvidia.com/gpu": str(tp)}, "limits": {"nvidia.com/gpu": str(tp)}},
                "env": [{"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"}, {"name": "HF_HOME", "value": "/tmp/cache"}],
            }],
        },
    }


SEED_FAILURES = {
    # name: (model, tp, max-model-len, what the denial must say)
    "llama70b-fp8-tp1": ("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", 1, 16000,
                         ["-1.44 GiB", "No available memory for the cache blocks", "TP=2 gives 31.99 GiB"]),
    "qwen3-32b-tp1-32k": ("Qwen/Qwen3-32B", 1, 32000,
                          ["one 32,000-token request needs 7.81 GiB", "TP=2 gives", "--max-model-len 18176 fits"]),
    "deepseek-r1-tp1": ("deepseek-ai/DeepSeek-R1", 1, 16000,
                        ["weights need 626.94 GiB per GPU", "OOM while loading", "TP=8 x PP=2 over 2 nodes"]),
}

SEED_FIXES = {
    # name: (model, tp, max-model-len) — the fix the denial above names; DeepSeek-R1's (a 2-node
    # LeaderWorkerSet) is in test_crds.py.
    "llama70b-fp8-tp2": ("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", 2, 16000),
    "qwen3-32b-tp2-32k": ("Qwen/Qwen3-32B", 2, 32000),
    "qwen3-32b-tp1-shorter": ("Qwen/Qwen3-32B", 1, 18176),
}


@pytest.mark.parametrize("name", list(SEED_FAILURES))
def test_seed_failure_cases_are_denied_saying_why_and_what_fits(kubectl: Kubectl, namespaces: Namespaces, name: str):
    model, tp, max_model_len, phrases = SEED_FAILURES[name]
    result = kubectl.apply(placed(seed_pod(name, model, tp, max_model_len), namespaces.enforce))
    assert is_denial(result), str(result)
    for phrase in phrases:
        assert phrase in result.stderr, (phrase, result.stderr)
    assert kubectl.get("pod", name, namespaces.enforce) is None


@pytest.mark.parametrize("name", list(SEED_FIXES))
def test_seed_fixes_are_admitted_and_annotated(kubectl: Kubectl, namespaces: Namespaces, name: str):
    model, tp, max_model_len = SEED_FIXES[name]
    result = kubectl.apply(placed(seed_pod(name, model, tp, max_model_len), namespaces.enforce))
    assert result.ok, str(result)
    created = kubectl.get("pod", name, namespaces.enforce)
    assert created is not None
    annotations = vllm_annotations(created)
    assert annotations["vllm-fit.io/verdict"] in ("fits", "warn"), annotations
    assert float(annotations["vllm-fit.io/kv-cache-gib"]) > 0, annotations


# --------------------------------------------------------------------------------------------
# UPDATE


def test_patching_a_running_deployment_to_a_bad_tp_is_denied(kubectl: Kubectl, namespaces: Namespaces):
    """`kubectl patch` (a JSON patch on the args), not a re-apply: the UPDATE is judged on the new object."""
    name = "llama70b-patch"
    created = kubectl.apply(placed(manifest(TP2), namespaces.enforce, name))
    assert created.ok, str(created)
    args = kubectl.get("deployment", name, namespaces.enforce)["spec"]["template"]["spec"]["containers"][0]["args"]
    index = args.index("--tensor-parallel-size=2")
    patch = [{"op": "replace", "path": f"/spec/template/spec/containers/0/args/{index}",
              "value": "--tensor-parallel-size=1"}]
    result = kubectl("patch", "deployment", name, "-n", namespaces.enforce, "--type=json", "-p", json.dumps(patch))
    assert_denied_with_the_numbers(result)
    # A change that keeps it fitting goes through (and is re-annotated).
    patch = [{"op": "replace", "path": f"/spec/template/spec/containers/0/args/{index}",
              "value": "--tensor-parallel-size=2"},
             {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--max-num-seqs=64"}]
    result = kubectl("patch", "deployment", name, "-n", namespaces.enforce, "--type=json", "-p", json.dumps(patch))
    assert result.ok, str(result)
    current = kubectl.get("deployment", name, namespaces.enforce)
    assert "--tensor-parallel-size=2" in current["spec"]["template"]["spec"]["containers"][0]["args"]
    assert vllm_annotations(current)["vllm-fit.io/verdict"] == "fits"


# --------------------------------------------------------------------------------------------
# The scale subresource, and what controllers create


def test_scale_subresource_is_never_blocked(kubectl: Kubectl, namespaces: Namespaces, make_namespace):
    """Scaling changes no launch: `kubectl scale` goes through even for a Deployment that would be
    denied today (created in audit mode, its namespace since switched to enforce) — scaling a broken
    deployment to zero must always work."""
    namespace = make_namespace("scale", {MODE_LABEL: "audit"})
    name = "llama70b-fp8-tp1"
    obj = placed(manifest(TP1), namespace, name)
    obj["spec"]["replicas"] = 2
    assert kubectl.apply(obj).ok
    relabel = kubectl("label", "namespace", namespace, f"{MODE_LABEL}-")
    assert relabel.ok, str(relabel)
    # The namespace now enforces: creating the same Deployment again is denied ...
    poll("the relabelled namespace to enforce", lambda: None if is_denial(kubectl.apply(
        placed(obj, namespace, "again"), "--dry-run=server")) else "not denied yet")
    # ... but the scale subresource is not a launch change, in either direction.
    for replicas in ("0", "3"):
        result = kubectl("scale", "deployment", name, "-n", namespace, f"--replicas={replicas}")
        assert result.ok, str(result)
        assert kubectl.get("deployment", name, namespace)["spec"]["replicas"] == int(replicas)


def test_controller_owned_replicasets_and_pods_are_not_judged_again(kubectl: Kubectl, namespaces: Namespaces,
                                                                  make_namespace, webhook):
    """Deployment -> ReplicaSet -> Pod (the controller manager makes them): only the Deployment is
    judged. A TP=1 Deployment admitted in audit mode, in a namespace since switched to enforce, is
    scaled up: if its ReplicaSet or Pods were judged they would be denied and never appear."""
    namespace = make_namespace("owned", {MODE_LABEL: "audit"})
    name = "llama70b-fp8-tp1"
    obj = placed(manifest(TP1), namespace, name)
    obj["spec"]["replicas"] = 0
    assert kubectl.apply(obj).ok
    assert kubectl("label", "namespace", namespace, f"{MODE_LABEL}-").ok
    poll("the relabelled namespace to enforce", lambda: None if is_denial(kubectl.apply(
        placed(obj, namespace, "again"), "--dry-run=server")) else "not denied yet")
    assert kubectl("scale", "deployment", name, "-n", namespace, "--replicas=2").ok

    def pods() -> Optional[str]:
        found = kubectl.items("pods", namespace, "app.kubernetes.io/instance=llama70b-fp8-tp1")
        return None if len(found) == 2 else f"{len(found)} pods"

    poll("the ReplicaSet's two Pods (needs kube-controller-manager)", pods, timeout=90)
    (replicaset,) = kubectl.items("replicasets", namespace, "app.kubernetes.io/instance=llama70b-fp8-tp1")
    owner = replicaset["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner.get("controller")) == ("Deployment", name, True)
    # The deployment controller copies the Deployment's annotations (the audit-mode verdict) to the
    # ReplicaSet; nothing was added to them, and the Pods (from the template) carry none.
    deployment = kubectl.get("deployment", name, namespace)
    assert vllm_annotations(replicaset) == vllm_annotations(deployment), replicaset["metadata"].get("annotations")
    for pod in kubectl.items("pods", namespace, "app.kubernetes.io/instance=llama70b-fp8-tp1"):
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
        assert not vllm_annotations(pod), pod["metadata"].get("annotations")
    if getattr(webhook, "server", None) is not None:
        # The server sees them (anyone may write ownerReferences: only it can check the owner) and
        # skips them once it has found their controller, with that uid and that template.
        reviewed = [json.loads(line) for line in webhook.server.log_text().splitlines()
                    if line.startswith("{") and '"event": "review"' in line]
        children = [r for r in reviewed if r.get("namespace") == namespace and r["kind"] in ("ReplicaSet", "Pod")]
        assert {r["kind"] for r in children} == {"ReplicaSet", "Pod"}, children
        assert all("its controller was judged" in (r.get("skipped") or "") for r in children), children
    # The same Pod without an owner is judged, and denied.
    bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare-tp1", "namespace": namespace},
            "spec": copy.deepcopy(obj["spec"]["template"]["spec"])}
    assert_denied_with_the_numbers(kubectl.apply(bare))


# --------------------------------------------------------------------------------------------
# Namespaces by mode label


def test_mode_label_changes_take_effect_and_the_opt_out_label_exempts(kubectl: Kubectl, make_namespace):
    namespace = make_namespace("relabel", {MODE_LABEL: "enforce"})
    obj = placed(manifest(TP1), namespace, "llama70b-fp8-tp1")
    assert is_denial(kubectl.apply(obj, "--dry-run=server"))
    assert kubectl("label", "namespace", namespace, f"{MODE_LABEL}=warn", "--overwrite").ok

    def warns() -> Optional[str]:
        result = kubectl.apply(obj, "--dry-run=server")
        return None if result.ok and warnings_of(result) else f"{result.returncode} {result.stderr.strip()}"

    poll("mode=warn to take effect", warns)
    # vllm-fit.io/ignore (the chart's optOutLabel): not sent to the webhook at all.
    assert kubectl("label", "namespace", namespace, f"{MODE_LABEL}=enforce", "vllm-fit.io/ignore=true",
                   "--overwrite").ok

    def ignored() -> Optional[str]:
        result = kubectl.apply(obj, "--dry-run=server", "-o", "json")
        if result.ok and not warnings_of(result) and not vllm_annotations(result.json()):
            return None
        return f"{result.returncode} {result.stderr.strip()}"

    poll("the opt-out label to exempt the namespace", ignored)


def test_cluster_default_mode_warn_with_an_enforce_labelled_namespace(local_webhook, kubectl: Kubectl,
                                                                    namespaces: Namespaces, make_namespace):
    """config.mode=warn (the chart's ConfigMap, the server restarted to read it): unlabelled
    namespaces warn, a namespace labelled enforce still denies."""
    enforced = make_namespace("enforced", {MODE_LABEL: "enforce"})
    with local_webhook.reconfigured(values={"config": {"mode": "warn"}}):
        assert local_webhook.server.config["mode"] == "warn"
        result = kubectl.apply(placed(manifest(TP1), namespaces.enforce, "default-mode-warn"), "--dry-run=server")
        assert result.ok, str(result)
        assert any("-1.44 GiB" in w for w in warnings_of(result)), result.stderr
        assert_denied_with_the_numbers(kubectl.apply(placed(manifest(TP1), enforced, "labelled-enforce")))
    # Back to the chart's default (enforce) afterwards.
    assert_denied_with_the_numbers(kubectl.apply(placed(manifest(TP1), namespaces.enforce, "default-mode-again"),
                                                 "--dry-run=server"))
