"""The Validating/MutatingWebhookConfiguration objects, as the Helm chart renders them.

`serve --dev` registers exactly these (with URL client configs); a test renders the chart
and compares, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from .config import MODES
from .handlers import MUTATE_PATH, RESOURCES, VALIDATE_PATHS

MODE_LABEL = "vllm-fit.io/mode"
DEFAULT_OPT_OUT_LABEL = "vllm-fit.io/ignore"

# Only objects that may hold a vLLM launch reach the webhook (API server side, CEL): a container
# whose image, name, command or args mention vllm, args that name a vLLM engine flag, a vllm
# label (launch.find's loose rules), or a kind whose launch lives elsewhere.
_ENGINE_FLAG_TEXT = ("tensor-parallel-size", "tensor_parallel_size", "gpu-memory-utilization",
                     "gpu_memory_utilization", "max-model-len", "max_model_len")
_ARG = " || ".join(["x.contains('vllm')", *(f"x.contains('{f}')" for f in _ENGINE_FLAG_TEXT)])
_CONTAINER = ("c.image.contains('vllm') || c.name.contains('vllm') || "
              "(has(c.command) && c.command.exists(x, x.contains('vllm'))) || "
              f"(has(c.args) && c.args.exists(x, {_ARG}))")
_POD_SPEC = "({s}.containers.exists(c, {c}) || (has({s}.initContainers) && {s}.initContainers.exists(c, {c})))"
_LABELS = ("(has({m}.labels) && (('app' in {m}.labels && {m}.labels['app'] == 'vllm') || "
           "('app.kubernetes.io/name' in {m}.labels && {m}.labels['app.kubernetes.io/name'] == 'vllm')))")


def _pod(spec: str) -> str:
    return _POD_SPEC.format(s=spec, c=_CONTAINER)


MATCH_CONDITIONS: list[dict[str, str]] = [
    {
        "name": "looks-like-vllm",
        "expression": " || ".join([
            "object.kind in ['LeaderWorkerSet', 'InferenceService', 'ServingRuntime', 'ClusterServingRuntime', "
            "'LLMInferenceService', 'Workspace']",
            _LABELS.format(m="object.metadata"),
            f"(object.kind == 'Pod' && {_pod('object.spec')})",
            f"(object.kind in ['Deployment', 'StatefulSet', 'ReplicaSet', 'DaemonSet', 'Job'] && "
            f"((has(object.spec.template.metadata) && {_LABELS.format(m='object.spec.template.metadata')}) || "
            f"{_pod('object.spec.template.spec')}))",
            f"(object.kind == 'CronJob' && {_pod('object.spec.jobTemplate.spec.template.spec')})",
        ]),
    },
    {
        # Objects a controller made (ReplicaSets, Pods, Jobs of CronJobs) were judged as their owner.
        "name": "not-controller-owned",
        "expression": "!has(object.metadata.ownerReferences) || "
                      "!object.metadata.ownerReferences.exists(o, has(o.controller) && o.controller)",
    },
]


def rules() -> list[dict[str, Any]]:
    grouped: dict[tuple[str, str], list[str]] = {}
    for group, version, plural in RESOURCES:
        grouped.setdefault((group, version), []).append(plural)
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
        common["matchConditions"] = MATCH_CONDITIONS
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
