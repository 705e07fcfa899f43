"""Kubernetes objects -> the pod templates in them, and the kubelet's `$(VAR)` expansion.

No client calls: everything comes from the object as the API server (or a YAML file) gives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

# Kinds whose pod template sits at a known place.
_TEMPLATE_AT: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "PodTemplate": ("template",),
}
KSERVE_KINDS = frozenset({"InferenceService", "ServingRuntime", "ClusterServingRuntime", "LLMInferenceService"})
# Objects that never hold a pod template: skip them without walking.
_NO_TEMPLATES = frozenset({
    "Service", "ConfigMap", "Secret", "Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole",
    "ClusterRoleBinding", "Ingress", "PersistentVolumeClaim", "PersistentVolume", "StorageClass", "RuntimeClass",
    "Scale", "NetworkPolicy", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Endpoints", "EndpointSlice",
    "CustomResourceDefinition", "Event", "Lease", "Node", "PriorityClass", "LimitRange", "ResourceQuota",
})
MAX_DEPTH = 48


@dataclass
class PodTemplate:
    """One pod spec inside an object, with what the launch reader needs around it."""

    path: str  # "" for a Pod or a single-template workload; "leader", "worker", "template", ...
    spec: dict
    annotations: list[Optional[dict]] = field(default_factory=list)  # most specific first
    extra_env: dict[str, Optional[str]] = field(default_factory=dict)  # injected by a controller (LWS)
    group: Optional[dict[str, Any]] = None  # how many pods/GPUs a launch in this template drives


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _template(obj: Any) -> tuple[Optional[dict], Optional[dict]]:
    """(pod spec, template annotations) of a `{metadata, spec}` pod template."""
    if not isinstance(obj, dict):
        return None, None
    spec = obj.get("spec")
    annotations = _get(obj, "metadata", "annotations")
    return (spec if isinstance(spec, dict) else None), (annotations if isinstance(annotations, dict) else None)


def pod_templates(obj: dict) -> Iterator[PodTemplate]:
    """Every pod template in one object (not Lists: the caller expands those)."""
    kind = obj.get("kind")
    top = _get(obj, "metadata", "annotations")
    top = top if isinstance(top, dict) else None
    if kind == "Pod":
        spec = obj.get("spec")
        if isinstance(spec, dict):
            yield PodTemplate("", spec, [top])
        return
    if kind in _TEMPLATE_AT:
        spec, ann = _template(_get(obj, *_TEMPLATE_AT[kind]))
        if spec is not None:
            yield PodTemplate("", spec, [ann, top])
        return
    if kind == "CronJob":
        spec, ann = _template(_get(obj, "spec", "jobTemplate", "spec", "template"))
        if spec is not None:
            yield PodTemplate("", spec, [ann, top])
        return
    if kind == "LeaderWorkerSet":
        yield from _lws(obj, top)
        return
    if kind in ("ServingRuntime", "ClusterServingRuntime"):
        spec = obj.get("spec")
        if isinstance(spec, dict):
            yield PodTemplate("", spec, [top], group={"runtime_template": True})
        return
    if kind in _NO_TEMPLATES or kind in KSERVE_KINDS:
        return  # KServe InferenceService / LLMInferenceService are read by the KServe reader
    yield from generic_templates(obj, top)


def _lws(obj: dict, top: Optional[dict]) -> Iterator[PodTemplate]:
    lwt = _get(obj, "spec", "leaderWorkerTemplate")
    if not isinstance(lwt, dict):
        return
    size = lwt.get("size", 1)
    size = size if isinstance(size, int) and not isinstance(size, bool) and size >= 1 else 1
    injected: dict[str, Optional[str]] = {
        "LWS_GROUP_SIZE": str(size), "LWS_LEADER_ADDRESS": None, "LWS_WORKER_INDEX": None, "LWS_NAME": None,
    }
    leader_spec, leader_ann = _template(lwt.get("leaderTemplate"))
    worker_spec, worker_ann = _template(lwt.get("workerTemplate"))
    group = {"lws_size": size, "worker_spec": worker_spec, "has_leader": leader_spec is not None}
    if leader_spec is not None:
        yield PodTemplate("leader", leader_spec, [leader_ann, top], dict(injected), dict(group, role="leader"))
    if worker_spec is not None:
        yield PodTemplate("worker", worker_spec, [worker_ann, top], dict(injected), dict(group, role="worker"))


def _looks_like_pod_spec(node: dict) -> bool:
    containers = node.get("containers")
    return isinstance(containers, list) and any(isinstance(c, dict) and ("image" in c or "name" in c)
                                                for c in containers)


def generic_templates(obj: dict, top: Optional[dict]) -> Iterator[PodTemplate]:
    """Pod specs embedded anywhere in an unknown kind (AppWrapper, DisaggregatedSet, CRDs)."""
    stack: list[tuple[Any, str, int, Optional[dict]]] = [(obj.get("spec"), "spec", 0, None)]
    found: list[PodTemplate] = []
    while stack:
        node, path, depth, ann = stack.pop()
        if depth > MAX_DEPTH:
            continue
        if isinstance(node, dict):
            if _looks_like_pod_spec(node):
                found.append(PodTemplate(path, node, [ann, top]))
                continue
            meta_ann = _get(node, "metadata", "annotations")
            child_ann = meta_ann if isinstance(meta_ann, dict) else None
            for key, value in node.items():
                if key in ("metadata", "status") or not isinstance(value, (dict, list)):
                    continue
                stack.append((value, f"{path}.{key}", depth + 1, child_ann if key == "spec" else None))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                if isinstance(value, (dict, list)):
                    stack.append((value, f"{path}[{index}]", depth + 1, None))
    found.sort(key=lambda t: t.path)
    for template in found:
        template.path = template.path.removesuffix(".spec").removeprefix("spec.") if template.path != "spec" else ""
        yield template


# ---------------------------------------------------------------- $(VAR) expansion

def kubelet_expand(text: str, variables: dict[str, Optional[str]]) -> tuple[str, bool]:
    """Expand `$(NAME)` the way the kubelet does for command, args and env values.

    `$$` is an escaped `$`; a reference to a name that is not defined is left unchanged.
    Returns (text, unknown): unknown is True when a referenced value cannot be known here
    (valueFrom, envFrom, injected by a controller, or not defined in the manifest).
    """
    if "$" not in text:
        return text, False
    out: list[str] = []
    unknown = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "$" or i + 1 >= n:
            j = text.find("$", i + 1)
            j = n if j < 0 else j
            if c == "$":
                out.append(c)
                i += 1
                continue
            out.append(text[i:j])
            i = j
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt == "(":
            end = text.find(")", i + 2)
            if end < 0:
                out.append(text[i:])
                break
            name = text[i + 2:end]
            if name in variables:
                value = variables[name]
                if value is None:
                    out.append(text[i:end + 1])
                    unknown = True
                else:
                    out.append(value)
            else:
                # Left unchanged by the kubelet; something (envFrom, a mutating webhook) may
                # define it, and vLLM would otherwise get the literal text: unknowable here.
                out.append(text[i:end + 1])
                unknown = True
            i = end + 1
            continue
        out.append("$")
        i += 1
    return "".join(out), unknown


@dataclass
class ContainerEnv:
    values: dict[str, Optional[str]]  # literal (expanded) values; None = unknowable
    has_env_from: bool


def container_env(container: dict, injected: Optional[dict[str, Optional[str]]] = None) -> ContainerEnv:
    """The container's environment as far as the manifest tells it, in kubelet order."""
    values: dict[str, Optional[str]] = dict(injected or {})
    env = container.get("env")
    if isinstance(env, list):
        for entry in env:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                continue
            name = entry["name"]
            if "valueFrom" in entry and entry.get("value") in (None, ""):
                values[name] = None
                continue
            raw = entry.get("value")
            raw = "" if raw is None else raw if isinstance(raw, str) else str(raw)
            text, unknown = kubelet_expand(raw, values)
            values[name] = None if unknown else text
    env_from = container.get("envFrom")
    return ContainerEnv(values, isinstance(env_from, list) and len(env_from) > 0)
