"""The Validating/MutatingWebhookConfiguration objects, as the Helm chart renders them.

`serve --dev` registers exactly these (with URL client configs); a test renders the chart
and compares, so the two cannot drift apart.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Sequence

from ..launch import DEFAULT_VLLM_IMAGES
from .config import MODES
from .handlers import EPHEMERAL, MUTATE_PATH, RESOURCES, VALIDATE_PATHS

MODE_LABEL = "vllm-fit.io/mode"
DEFAULT_OPT_OUT_LABEL = "vllm-fit.io/ignore"

# Only objects that may hold a vLLM launch reach the webhook (API server side, CEL): a container
# whose image is a configured vLLM image or whose image, name, command or args mention vllm,
# args that name a vLLM engine flag, a vllm label (launch.find's loose rules), or a kind whose
# launch lives elsewhere. Controller-owned objects are sent too: only the server can check that
# their controller exists (anyone may write ownerReferences).
_ENGINE_FLAG_TEXT = ("tensor-parallel-size", "tensor_parallel_size", "gpu-memory-utilization",
                     "gpu_memory_utilization", "max-model-len", "max_model_len")
_ARG = " || ".join(["x.contains('vllm')", *(f"x.contains('{f}')" for f in _ENGINE_FLAG_TEXT)])
_MENTIONS = ("c.name.contains('vllm') || (has(c.command) && c.command.exists(x, x.contains('vllm'))) || "
             f"(has(c.args) && c.args.exists(x, {_ARG}))")
_POD_SPEC = "({s}.containers.exists(c, {c}) || (has({s}.initContainers) && {s}.initContainers.exists(c, {c})))"
_EPHEMERAL = "(has(object.spec.ephemeralContainers) && object.spec.ephemeralContainers.exists(c, {c}))"
_LABELS = ("(has({m}.labels) && (('app' in {m}.labels && {m}.labels['app'] == 'vllm') || "
           "('app.kubernetes.io/name' in {m}.labels && {m}.labels['app.kubernetes.io/name'] == 'vllm')))")
# The literal runs of a shell-style pattern (the chart splits with the same expression).
_PATTERN_SPECIALS = re.compile(r"[*?]|\[[^\]]*\]")


def image_condition(image_patterns: Sequence[str] = DEFAULT_VLLM_IMAGES) -> str:
    """CEL on a container `c`: its image may be a vLLM image. Every pattern that does not mention
    vllm adds "all its literal parts are in the image" (a pattern of wildcards only: any image)."""
    parts = ["c.image.contains('vllm')"]
    for pattern in image_patterns:
        pattern = pattern.lower()
        if "vllm" in pattern:
            continue
        fragments = [f for f in _PATTERN_SPECIALS.split(pattern) if f]
        part = "(" + " && ".join(f"c.image.contains('{f}')" for f in fragments) + ")" if fragments else "true"
        if part not in parts:
            parts.append(part)
    return " || ".join(parts)


def build_match_conditions(image_patterns: Sequence[str] = DEFAULT_VLLM_IMAGES) -> list[dict[str, str]]:
    container = f"{image_condition(image_patterns)} || {_MENTIONS}"
    pod = _POD_SPEC.format(s="object.spec", c=container) + " || " + _EPHEMERAL.format(c=container)
    return [{
        "name": "looks-like-vllm",
        "expression": " || ".join([
            "object.kind in ['LeaderWorkerSet', 'InferenceService', 'ServingRuntime', 'ClusterServingRuntime', "
            "'LLMInferenceService', 'Workspace']",
            _LABELS.format(m="object.metadata"),
            f"(object.kind == 'Pod' && ({pod}))",
            f"(object.kind in ['Deployment', 'StatefulSet', 'ReplicaSet', 'DaemonSet', 'Job', 'ReplicationController'] "
            f"&& ((has(object.spec.template.metadata) && {_LABELS.format(m='object.spec.template.metadata')}) || "
            f"{_POD_SPEC.format(s='object.spec.template.spec', c=container)}))",
            f"(object.kind == 'CronJob' && {_POD_SPEC.format(s='object.spec.jobTemplate.spec.template.spec', c=container)})",
        ]),
    }]


MATCH_CONDITIONS = build_match_conditions()


def rules() -> list[dict[str, Any]]:
    grouped: dict[tuple[str, str], list[str]] = {}
    for group, version, plural in RESOURCES:
        grouped.setdefault((group, version), []).append(plural)
        if plural == "pods":
            grouped[(group, version)].append(f"pods/{EPHEMERAL}")  # kubectl debug
    return [{"apiGroups": [group], "apiVersions": [version], "resources": plurals,
             "operations": ["CREATE", "UPDATE"], "scope": "*"}
            for (group, version), plurals in grouped.items()]


def namespace_selector(exempt_namespaces: Iterable[str], opt_out_label: str, mode: str | None) -> dict[str, Any]:
    expressions: list[dict[str, Any]] = [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": sorted(set(exempt_namespaces))},
        {"key": opt_out_label, "operator": "DoesNotExist"},
    ]
    if mode is None:
        expressions.append({"key": MODE_LABEL, "operator": "NotIn", "values": list(MODES)})
    else:
        expressions.append({"key": MODE_LABEL, "operator": "In", "values": [mode]})
    return {"matchExpressions": expressions}


def webhook_configurations(
    *,
    name: str,
    client_config: Callable[[str], dict[str, Any]],
    exempt_namespaces: Iterable[str],
    opt_out_label: str = DEFAULT_OPT_OUT_LABEL,
    failure_policy: str = "Ignore",
    timeout_seconds: int = 5,
    match_conditions: bool = True,
    image_patterns: Sequence[str] = DEFAULT_VLLM_IMAGES,
) -> tuple[dict[str, Any], dict[str, Any]]:
    exempt = list(exempt_namespaces)
    common = {
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": failure_policy,
        "matchPolicy": "Equivalent",
        "timeoutSeconds": timeout_seconds,
        "rules": rules(),
    }
    if match_conditions:
        common["matchConditions"] = build_match_conditions(image_patterns)
    validating = []
    for path, mode in VALIDATE_PATHS.items():
        validating.append({
            "name": f"{path}.vllm-fit.io",
            "clientConfig": client_config(f"/{path}"),
            "namespaceSelector": namespace_selector(exempt, opt_out_label, mode),
            **common,
        })
    mutating = [{
        "name": f"{MUTATE_PATH}.vllm-fit.io",
        "clientConfig": client_config(f"/{MUTATE_PATH}"),
        "namespaceSelector": {"matchExpressions": namespace_selector(exempt, opt_out_label, None)["matchExpressions"][:2]},
        "reinvocationPolicy": "Never",
        **common,
    }]
    meta = {"name": name, "labels": {"app.kubernetes.io/name": "vllm-fit"}}
    return (
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": meta, "webhooks": validating},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "metadata": meta, "webhooks": mutating},
    )
