"""Kubernetes objects -> the pod templates in them, and the kubelet's `$(VAR)` expansion.

No client calls: everything comes from the object as the API server (or a YAML file) gives it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional

from .shell import OPAQUE_ENV

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
    labels: list[Optional[dict]] = field(default_factory=list)  # pod template's, then the object's


def _labels(obj: Any) -> Optional[dict]:
    labels = _get(obj, "metadata", "labels")
    return labels if isinstance(labels, dict) else None


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
    own = _labels(obj)
    if kind == "Pod":
        spec = obj.get("spec")
        if isinstance(spec, dict):
            yield PodTemplate("", spec, [top], labels=[own])
        return
    if kind in _TEMPLATE_AT:
        template = _get(obj, *_TEMPLATE_AT[kind])
        spec, ann = _template(template)
        if spec is not None:
            yield PodTemplate("", spec, [ann, top], labels=[_labels(template), own])
        return
    if kind == "CronJob":
        template = _get(obj, "spec", "jobTemplate", "spec", "template")
        spec, ann = _template(template)
        if spec is not None:
            yield PodTemplate("", spec, [ann, top], labels=[_labels(template), own])
        return
    if kind == "LeaderWorkerSet":
        yield from _lws(obj, top)
        return
    if kind in ("ServingRuntime", "ClusterServingRuntime"):
        spec = obj.get("spec")
        if isinstance(spec, dict):
            yield PodTemplate("", spec, [top], group={"runtime_template": True}, labels=[own])
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
    own = _labels(obj)
    if leader_spec is not None:
        yield PodTemplate("leader", leader_spec, [leader_ann, top], dict(injected), dict(group, role="leader"),
                          labels=[_labels(lwt.get("leaderTemplate")), own])
    if worker_spec is not None:
        yield PodTemplate("worker", worker_spec, [worker_ann, top], dict(injected), dict(group, role="worker"),
                          labels=[_labels(lwt.get("workerTemplate")), own])


def _looks_like_pod_spec(node: dict) -> bool:
    containers = node.get("containers")
    return isinstance(containers, list) and any(isinstance(c, dict) and ("image" in c or "name" in c)
                                                for c in containers)


def generic_templates(obj: dict, top: Optional[dict]) -> Iterator[PodTemplate]:
    """Pod specs embedded anywhere in an unknown kind (AppWrapper, DisaggregatedSet, CRDs)."""
    stack: list[tuple[Any, str, int, Optional[tuple[Optional[dict], Optional[dict]]]]] = [
        (obj.get("spec"), "spec", 0, None)]
    found: list[PodTemplate] = []
    while stack:
        node, path, depth, ann = stack.pop()
        if depth > MAX_DEPTH:
            continue
        if isinstance(node, dict):
            if _looks_like_pod_spec(node):
                found.append(PodTemplate(path, node, [ann[0] if ann else None, top], labels=[ann[1] if ann else None, _labels(obj)]))
                continue
            meta_ann = _get(node, "metadata", "annotations")
            child = (meta_ann if isinstance(meta_ann, dict) else None, _labels(node))
            for key, value in node.items():
                if key in ("metadata", "status") or not isinstance(value, (dict, list)):
                    continue
                stack.append((value, f"{path}.{key}", depth + 1, child if key == "spec" else None))
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


# What the kubelet accepts as an environment variable name from envFrom (others are skipped).
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

# A ConfigMap's data by name, in the object's namespace; None when it cannot be read here.
ConfigMapLookup = Callable[[str], Optional[Mapping[str, str]]]


@dataclass
class ContainerEnv:
    values: dict[str, Optional[str]]  # literal (expanded) values; None = unknowable
    has_env_from: bool
    config_maps: tuple[str, ...] = ()  # ConfigMaps the environment reads, by name (known or not)
    secrets: tuple[str, ...] = ()  # Secrets it reads: their values are never read
    opaque: tuple[str, ...] = ()  # envFrom sources whose names cannot be known ("configMap x", "secret y")


def _ref_name(ref: Any) -> Optional[str]:
    name = ref.get("name") if isinstance(ref, dict) else None
    return name if isinstance(name, str) and name else None


def container_env(container: dict, injected: Optional[dict[str, Optional[str]]] = None,
                  configmap: Optional[ConfigMapLookup] = None) -> ContainerEnv:
    """The container's environment as far as the manifest (and the ConfigMaps given) tell it.

    Kubelet order: `envFrom` sources first, a later one overriding an earlier one (each key
    under the source's `prefix`), then `env` entries, whose `$(VAR)` see everything before them.
    A ConfigMap value is read when `configmap` knows the ConfigMap; a Secret's never is.
    """
    values: dict[str, Optional[str]] = dict(injected or {})
    config_maps: dict[str, None] = {}
    secrets: dict[str, None] = {}
    opaque: list[str] = []
    env_from = container.get("envFrom")
    if isinstance(env_from, list):
        for source in env_from[:1000]:
            if not isinstance(source, dict):
                continue
            prefix = source.get("prefix") if isinstance(source.get("prefix"), str) else ""
            cm_name, secret_name = _ref_name(source.get("configMapRef")), _ref_name(source.get("secretRef"))
            if cm_name:
                config_maps[cm_name] = None
                data = configmap(cm_name) if configmap is not None else None
                if data is None:
                    opaque.append(f"configMap {cm_name}")
                    continue
                for key, value in list(data.items())[:10_000]:
                    name = f"{prefix}{key}"
                    if isinstance(key, str) and _ENV_NAME.match(name):
                        values[name] = value if isinstance(value, str) else str(value)
            elif secret_name:
                secrets[secret_name] = None
                opaque.append(f"secret {secret_name}")
    env = container.get("env")
    if isinstance(env, list):
        for entry in env:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                continue
            name = entry["name"]
            if "valueFrom" in entry and entry.get("value") in (None, ""):
                values[name] = _value_from(entry.get("valueFrom"), configmap, config_maps, secrets)
                continue
            raw = entry.get("value")
            raw = "" if raw is None else raw if isinstance(raw, str) else str(raw)
            text, unknown = kubelet_expand(raw, values)
            values[name] = None if unknown else text
    if opaque:
        values[OPAQUE_ENV] = None
    return ContainerEnv(values, isinstance(env_from, list) and len(env_from) > 0, tuple(config_maps), tuple(secrets),
                        tuple(opaque))


def _value_from(source: Any, configmap: Optional[ConfigMapLookup], config_maps: dict[str, None],
                secrets: dict[str, None]) -> Optional[str]:
    """A `valueFrom` value: a ConfigMap key when the ConfigMap is known; everything else unknowable
    (Secrets by design; fieldRef and resourceFieldRef depend on the running pod)."""
    if not isinstance(source, dict):
        return None
    ref = source.get("configMapKeyRef")
    if isinstance(ref, dict):
        name, key = _ref_name(ref), ref.get("key")
        if name:
            config_maps[name] = None
            data = configmap(name) if configmap is not None else None
            if data is not None and isinstance(key, str) and key in data:
                value = data[key]
                return value if isinstance(value, str) else str(value)
        return None
    secret = _ref_name(source.get("secretKeyRef"))
    if secret:
        secrets[secret] = None
    return None
