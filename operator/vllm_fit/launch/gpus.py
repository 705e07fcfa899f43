"""The GPUs a container gets, and what decides their type.

Count: `limits` (else `requests`) of `nvidia.com/gpu`, `amd.com/gpu` or a MIG resource
(`nvidia.com/mig-3g.40gb`). Type, first that applies: a nodeSelector on a GPU label (GPU
Feature Discovery `nvidia.com/gpu.product` / `nvidia.com/gpu.memory`, GKE
`cloud.google.com/gke-accelerator`, AMD labels), the same labels in required node affinity
(a single `In` value), a well-known instance type, the MIG resource name, the
`vllm-fit.io/gpu` annotation (unless `vllm-fit.io/gpu-source` says vllm-fit wrote it from
another source), the configured default; else unknown.

The annotation comes after everything the scheduler acts on: it may fill in a GPU the spec
leaves unknown, never contradict the node the pod is pinned to (a workload's author must not
be able to have an H100 launch judged as a B200 one).
"""

from __future__ import annotations

import re
from typing import Any, Optional

from ..errors import VllmFitError
from .model import GpuRequest, Placement

ANNOTATION = "vllm-fit.io/gpu"
# Written by the webhook next to ANNOTATION: the type_source its plan used. When present and
# not "annotation", ANNOTATION is vllm-fit's own output (the GPU it planned with), not the
# user's choice, and must not pin the type when e.g. the nodeSelector changes later.
SOURCE_ANNOTATION = "vllm-fit.io/gpu-source"

# node label -> type_source; checked in this order.
GPU_LABELS: tuple[tuple[str, str], ...] = (
    ("nvidia.com/gpu.product", "node-selector"),
    ("cloud.google.com/gke-accelerator", "gke-accelerator"),
    ("amd.com/gpu.product-name", "amd-label"),
    ("beta.amd.com/gpu.product-name", "amd-label"),
    ("nvidia.com/gpu.memory", "node-selector"),
)
INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")

# A GPU name or size as the catalog spells them ("H100-80GB", "NVIDIA-H100-80GB-HBM3", "79.18GiB").
_ANNOTATION_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+-]{0,63}$")

_MIG = re.compile(r"^nvidia\.com/mig-\d+g\.\d+gb(?:\.[a-z0-9+]+)*$")
_PLAIN = ("nvidia.com/gpu", "amd.com/gpu")


def is_gpu_resource(name: str) -> bool:
    return name in _PLAIN or bool(_MIG.match(name))


def _quantity(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise VllmFitError(f"{where}: {value!r} is not a GPU count")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    if re.fullmatch(r"\d{1,9}", text):
        return int(text)
    raise VllmFitError(f"{where}: {value!r} is not a whole number of GPUs")


def container_gpus(container: dict, where: str = "resources") -> tuple[int, Optional[str]]:
    """(count, resource) for one container: limits win over requests (extended resources must match)."""
    resources = container.get("resources")
    if not isinstance(resources, dict):
        return 0, None
    for section in ("limits", "requests"):
        table = resources.get(section)
        if not isinstance(table, dict):
            continue
        for name, value in table.items():
            key = str(name).strip()
            if is_gpu_resource(key):
                return _quantity(value, f"{where}.{section}[{key}]"), key
    return 0, None


_NOT_ACCELERATORS = frozenset({"cpu", "memory", "ephemeral-storage", "storage", "pods"})


def requests_accelerator(container: dict) -> bool:
    """Whether the container asks for any extended resource (a GPU, a MIG slice, Gaudi, TPU,
    Neuron, ...): what makes a command-less vendor image worth reading as a vLLM server."""
    resources = container.get("resources")
    if not isinstance(resources, dict):
        return False
    for section in ("limits", "requests"):
        table = resources.get(section)
        if isinstance(table, dict):
            for name, value in table.items():
                key = str(name).strip()
                if key in _NOT_ACCELERATORS or key.startswith("hugepages-") or str(value).strip() in ("0", ""):
                    continue
                return True
    return False


def _affinity_values(pod_spec: dict, label: str) -> Optional[str]:
    """The single value a required node-affinity term pins `label` to, if any."""
    try:
        terms = pod_spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"]
    except (KeyError, TypeError):
        return None
    if not isinstance(terms, list):
        return None
    found: set[str] = set()
    for term in terms:
        exprs = term.get("matchExpressions") if isinstance(term, dict) else None
        if not isinstance(exprs, list):
            continue
        for expr in exprs:
            if not isinstance(expr, dict) or expr.get("key") != label or expr.get("operator") != "In":
                continue
            values = expr.get("values")
            if isinstance(values, list):
                found.update(str(v) for v in values)
    return next(iter(found)) if len(found) == 1 else None


def _is_user_gpu(table: dict) -> bool:
    """The GPU annotation is an input unless the webhook recorded it came from another source."""
    source = table.get(SOURCE_ANNOTATION)
    return source is None or str(source).strip() in ("", "annotation")


def valid_gpu_annotation(value: Any) -> bool:
    return isinstance(value, str) and bool(_ANNOTATION_VALUE.match(value))


def annotated_gpu(annotations: list[Optional[dict]]) -> Optional[str]:
    """The user's own `vllm-fit.io/gpu` value (first table that has one), well-formed or not."""
    for table in annotations:
        if isinstance(table, dict) and table.get(ANNOTATION) and _is_user_gpu(table):
            return str(table[ANNOTATION])
    return None


def gpu_type(annotations: list[Optional[dict]], pod_spec: dict, resource: Optional[str],
             default_gpu: Optional[str]) -> tuple[Optional[str], str]:
    """(type, type_source) for a pod template."""
    selector = pod_spec.get("nodeSelector")
    selector = selector if isinstance(selector, dict) else {}
    for label, source in GPU_LABELS:
        if selector.get(label):
            value = str(selector[label])
            return (f"{value}MiB" if label.endswith("gpu.memory") else value), source
    for label, source in GPU_LABELS:
        value = _affinity_values(pod_spec, label)
        if value:
            return (f"{value}MiB" if label.endswith("gpu.memory") else value), "node-affinity"
    for label in INSTANCE_TYPE_LABELS:
        value = selector.get(label) or _affinity_values(pod_spec, label)
        if value:
            return str(value), "instance-type"
    if resource and _MIG.match(resource):
        return resource, "mig-resource"
    annotated = annotated_gpu(annotations)
    if annotated is not None and valid_gpu_annotation(annotated):
        return annotated, "annotation"
    if default_gpu:
        return default_gpu, "default"
    return None, "unknown"


def gpu_request(count: int, resource: Optional[str], gpu_type_and_source: tuple[Optional[str], str]) -> GpuRequest:
    kind, source = gpu_type_and_source
    return GpuRequest(count=count, resource=resource, type=kind, type_source=source)  # type: ignore[arg-type]


def placement_of(pod_spec: Any) -> Placement:
    """The pod's nodeSelector, required node affinity and tolerations (malformed parts ignored)."""
    if not isinstance(pod_spec, dict):
        return Placement()
    selector = pod_spec.get("nodeSelector")
    selector = {str(k): str(v) for k, v in selector.items()} if isinstance(selector, dict) else {}
    terms = None
    try:
        raw = pod_spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        if isinstance(raw, list):
            terms = tuple(t if isinstance(t, dict) else {} for t in raw[:64])
    except (KeyError, TypeError):
        pass
    tolerations = pod_spec.get("tolerations")
    tolerations = tuple(t for t in tolerations[:64] if isinstance(t, dict)) if isinstance(tolerations, list) else ()
    node_name = pod_spec.get("nodeName")
    return Placement(node_selector=selector, node_affinity_terms=terms, tolerations=tolerations,
                     node_name=node_name if isinstance(node_name, str) and node_name else None)


# Device-plugin resources of accelerators the memory model does not cover, by name prefix.
OTHER_ACCELERATOR_RESOURCES: tuple[tuple[str, str], ...] = (
    ("google.com/tpu", "TPU"),
    ("habana.ai/gaudi", "Intel Gaudi"),
    ("huawei.com/ascend", "Huawei Ascend"),
    ("aws.amazon.com/neuron", "AWS Neuron"),
    ("gpu.intel.com/", "Intel GPU"),
)
# vLLM's --device values (before 0.10) and VLLM_TARGET_DEVICE, and words in image names of
# vLLM's non-CUDA builds (vllm-cpu, vllm-tpu, vllm-gaudi/hpu, vllm-neuron, vllm-ascend, vllm-xpu).
_DEVICE_WORDS = {"cpu": "CPU", "tpu": "TPU", "hpu": "Intel Gaudi", "gaudi": "Intel Gaudi", "habana": "Intel Gaudi",
                 "neuron": "AWS Neuron", "ascend": "Huawei Ascend", "npu": "Huawei Ascend", "xpu": "Intel GPU",
                 "openvino": "OpenVINO"}
_CPU_ENV = ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND")


def other_accelerator(container: Any, image: Optional[str], argv: Any, env: Any) -> Optional[str]:
    """What a container without a GPU resource runs vLLM on, when that is not a CUDA/ROCm GPU:
    "TPU (google.com/tpu)", "CPU (--device cpu)", ... None for a GPU launch or when nothing says."""
    resources = container.get("resources") if isinstance(container, dict) else None
    if isinstance(resources, dict):
        names: list[str] = []
        for section in ("limits", "requests"):
            table = resources.get(section)
            if isinstance(table, dict):
                names += [str(k).strip() for k in table]
        if any(is_gpu_resource(n) for n in names):
            return None
        for name in names:
            for prefix, label in OTHER_ACCELERATOR_RESOURCES:
                if name.lower().startswith(prefix):
                    return f"{label} ({name})"
    words = [str(w) for w in argv or ()]
    for i, word in enumerate(words):
        value = None
        if word.startswith("--device="):
            value = word.split("=", 1)[1]
        elif word == "--device" and i + 1 < len(words):
            value = words[i + 1]
        if value and value.strip().lower() in _DEVICE_WORDS:
            return f"{_DEVICE_WORDS[value.strip().lower()]} (--device {value.strip()})"
    env = env if isinstance(env, dict) else {}
    target = str(env.get("VLLM_TARGET_DEVICE") or "").strip().lower()
    if target in _DEVICE_WORDS:
        return f"{_DEVICE_WORDS[target]} (VLLM_TARGET_DEVICE={target})"
    for name in _CPU_ENV:
        if env.get(name) is not None:
            return f"CPU ({name})"
    if image:
        name_and_tag = image.split("@", 1)[0].rsplit("/", 1)[-1]  # not the registry or organisation
        for word in re.split(r"[:._-]+", name_and_tag.lower()):
            if word in _DEVICE_WORDS and word != "openvino":
                return f"{_DEVICE_WORDS[word]} (image {image})"
    return None
