"""GPU count, resource and type (with the source that decided it)."""

from __future__ import annotations

import pytest

from vllm_fit.check import resolve_gpu
from vllm_fit.errors import VllmFitError
from vllm_fit.launch import find_launches
from vllm_fit.launch.model import GpuRequest


def deployment(resources: dict, annotations: dict | None = None, **pod_spec) -> dict:
    container = {"name": "c", "image": "vllm/vllm-openai:v0.11.0", "args": ["--model", "org/m"],
                 "resources": resources}
    meta = {"name": "d", **({"annotations": annotations} if annotations else {})}
    return {"kind": "Deployment", "metadata": meta,
            "spec": {"template": {"spec": {"containers": [container], **pod_spec}}}}


def gpus(obj: dict, **kw) -> GpuRequest:
    (found,) = find_launches(obj, **kw)
    return found.gpus


@pytest.mark.parametrize("resources, count, resource", [
    ({"limits": {"nvidia.com/gpu": "2"}}, 2, "nvidia.com/gpu"),
    ({"requests": {"nvidia.com/gpu": 4}}, 4, "nvidia.com/gpu"),
    ({"limits": {"amd.com/gpu": "8"}, "requests": {"amd.com/gpu": "8"}}, 8, "amd.com/gpu"),
    ({"limits": {"nvidia.com/mig-3g.40gb": 1}}, 1, "nvidia.com/mig-3g.40gb"),
    ({"limits": {"cpu": "4", "memory": "8Gi"}}, 0, None),
    ({}, 0, None),
])
def test_count_and_resource(resources, count, resource):
    g = gpus(deployment(resources))
    assert (g.count, g.resource) == (count, resource)


def test_bad_gpu_quantity_is_our_error():
    with pytest.raises(VllmFitError, match="whole number of GPUs"):
        find_launches(deployment({"limits": {"nvidia.com/gpu": "1.5"}}))


ONE = {"limits": {"nvidia.com/gpu": 1}}


@pytest.mark.parametrize("kw, expected", [
    # The annotation fills in an unknown GPU; it never overrides what the pod is pinned to.
    ({"annotations": {"vllm-fit.io/gpu": "H200"}, "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"}},
     ("NVIDIA-L4", "node-selector")),
    ({"annotations": {"vllm-fit.io/gpu": "H200"}}, ("H200", "annotation")),
    ({"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}}, ("NVIDIA-H100-80GB-HBM3", "node-selector")),
    ({"nodeSelector": {"nvidia.com/gpu.memory": "81559"}}, ("81559MiB", "node-selector")),
    ({"nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-l4"}}, ("nvidia-l4", "gke-accelerator")),
    ({"nodeSelector": {"amd.com/gpu.product-name": "AMD_Instinct_MI300X"}}, ("AMD_Instinct_MI300X", "amd-label")),
    ({"nodeSelector": {"node.kubernetes.io/instance-type": "p5.48xlarge"}}, ("p5.48xlarge", "instance-type")),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A100-SXM4-80GB"]}]}
    ]}}}}, ("NVIDIA-A100-SXM4-80GB", "node-affinity")),
    ({}, (None, "unknown")),
])
def test_type_source_order(kw, expected):
    annotations = kw.pop("annotations", None)
    g = gpus(deployment(ONE, annotations, **kw))
    assert (g.type, g.type_source) == expected


def test_affinity_with_several_values_is_not_a_type():
    terms = [{"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In",
                                    "values": ["NVIDIA-L4", "NVIDIA-A10G"]}]}]
    g = gpus(deployment(ONE, affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": terms}}}))
    assert g.type_source == "unknown"


def test_default_gpu_applies_last():
    assert gpus(deployment(ONE), default_gpu="A100-80GB").type_source == "default"
    g = gpus(deployment(ONE, nodeSelector={"cloud.google.com/gke-accelerator": "nvidia-l4"}), default_gpu="A100-80GB")
    assert g.type_source == "gke-accelerator"


def test_mig_resource_type():
    g = gpus(deployment({"limits": {"nvidia.com/mig-3g.40gb": 1}}))
    assert (g.type, g.type_source) == ("nvidia.com/mig-3g.40gb", "mig-resource")


@pytest.mark.parametrize("request_, name", [
    (GpuRequest(count=1, type="nvidia-l4", type_source="gke-accelerator"), "L4"),
    (GpuRequest(count=1, type="NVIDIA-H100-80GB-HBM3", type_source="node-selector"), "H100-80GB"),
    (GpuRequest(count=1, type="g5.8xlarge", type_source="instance-type"), "A10G"),
    (GpuRequest(count=1, type="p5.48xlarge", type_source="instance-type"), "H100-80GB"),
])
def test_resolve_gpu_from_labels(catalog, request_, name):
    assert resolve_gpu(request_, catalog).name == name


def test_resolve_gpu_memory_label_is_a_size(catalog):
    spec = resolve_gpu(GpuRequest(count=1, type="81559MiB", type_source="node-selector"), catalog)
    assert spec.total_bytes == 81559 << 20


def test_unknown_label_resolves_to_none(catalog):
    assert resolve_gpu(GpuRequest(count=1, type="nvidia-quantum-9000", type_source="gke-accelerator"), catalog) is None


def test_mig_profile_picked_by_parent(catalog):
    a100 = catalog.find_mig("nvidia.com/mig-1g.10gb", parent="A100-80GB")
    h100 = catalog.find_mig("nvidia.com/mig-1g.10gb", parent="H100-80GB")
    assert a100.name.startswith("A100-80GB") and h100.name.startswith("H100-80GB")
    via_label = resolve_gpu(GpuRequest(count=1, resource="nvidia.com/mig-1g.10gb", type="NVIDIA-A100-SXM4-80GB",
                                       type_source="node-selector"), catalog)
    assert via_label.name == a100.name


def test_mig_unknown_parent_profile_falls_back_to_name(catalog):
    spec = catalog.find_mig("nvidia.com/mig-3g.40gb", parent="L4")  # L4 has no MIG: never another parent's value
    assert spec.total_bytes == 40 * 10**9


def test_gfd_single_strategy_product(catalog):
    spec = catalog.find("NVIDIA-H100-80GB-HBM3-MIG-3g.40gb")
    assert spec.name == "H100-80GB-MIG-3g.40gb"


# ---------------------------------------------------------------- vllm-fit's own gpu annotation

SELECTOR_L4 = {"nvidia.com/gpu.product": "NVIDIA-L4"}


@pytest.mark.parametrize("source", [None, "annotation"])
def test_gpu_annotation_is_an_input_without_or_with_annotation_source(source):
    annotations = {"vllm-fit.io/gpu": "H200", **({"vllm-fit.io/gpu-source": source} if source else {})}
    g = gpus(deployment(ONE, annotations))
    assert (g.type, g.type_source) == ("H200", "annotation")
    g = gpus(deployment(ONE, annotations), default_gpu="A100-80GB")
    assert (g.type, g.type_source) == ("H200", "annotation")  # the workload's own fact beats the fallback


@pytest.mark.parametrize("pinned", [
    {"nodeSelector": SELECTOR_L4},
    {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-L4"]}]}]}}}},
])
@pytest.mark.parametrize("claimed", ["B200", "1000GiB"])
def test_gpu_annotation_never_overrides_the_node_the_pod_is_pinned_to(pinned, claimed):
    g = gpus(deployment(ONE, {"vllm-fit.io/gpu": claimed}, **pinned))
    assert g.type == "NVIDIA-L4" and g.type_source in ("node-selector", "node-affinity")


@pytest.mark.parametrize("bad", ["x" * 65, "H100\x00", "H100\ud800", "../../etc", "H100;rm", "\uff28100"])
def test_malformed_gpu_annotation_is_ignored(bad):
    g = gpus(deployment(ONE, {"vllm-fit.io/gpu": bad}))
    assert (g.type, g.type_source) == (None, "unknown")


@pytest.mark.parametrize("source", ["node-selector", "default", "gke-accelerator"])
def test_gpu_annotation_written_by_the_webhook_does_not_pin_the_gpu(source):
    # The webhook planned with H100 from the old nodeSelector and recorded it; the selector now says L4.
    annotations = {"vllm-fit.io/gpu": "H100-80GB", "vllm-fit.io/gpu-source": source}
    g = gpus(deployment(ONE, annotations, nodeSelector=SELECTOR_L4))
    assert (g.type, g.type_source) == ("NVIDIA-L4", "node-selector")
    g = gpus(deployment(ONE, annotations), default_gpu="A100-80GB")
    assert (g.type, g.type_source) == ("A100-80GB", "default")
    assert gpus(deployment(ONE, annotations)).type_source == "unknown"
