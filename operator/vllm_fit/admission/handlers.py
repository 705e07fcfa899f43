"""The kopf handlers: each a few lines, the decorator says what it handles.

Validating webhooks, one path per mode so that the chart can route namespaces by their
`vllm-fit.io/mode` label with namespaceSelectors (the API server does the lookup):
  /validate          the cluster default mode
  /validate-enforce  /validate-warn  /validate-audit
Mutating webhook /mutate annotates the workload's own metadata (never its pod template).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import kopf

from .config import MODES
from .metrics import WebhookMetrics
from .review import Judgement, Reviewer

# (group, version, plural) of every kind the manifest reader understands. Handlers for APIs
# the cluster does not serve (LeaderWorkerSet, KServe) are simply never called.
RESOURCES: tuple[tuple[str, str, str], ...] = (
    ("", "v1", "pods"),
    ("", "v1", "replicationcontrollers"),
    ("apps", "v1", "deployments"),
    ("apps", "v1", "statefulsets"),
    ("apps", "v1", "replicasets"),
    ("apps", "v1", "daemonsets"),
    ("batch", "v1", "jobs"),
    ("batch", "v1", "cronjobs"),
    ("leaderworkerset.x-k8s.io", "v1", "leaderworkersets"),
    ("serving.kserve.io", "v1beta1", "inferenceservices"),
    ("serving.kserve.io", "v1alpha1", "servingruntimes"),
    ("serving.kserve.io", "v1alpha1", "clusterservingruntimes"),
    ("serving.kserve.io", "v1alpha1", "llminferenceservices"),
    ("serving.kserve.io", "v1alpha2", "llminferenceservices"),  # KServe 0.16+ serves v1alpha2
    ("kaito.sh", "v1alpha1", "workspaces"),
    ("kaito.sh", "v1beta1", "workspaces"),
)
EPHEMERAL = "ephemeralcontainers"
VALIDATE_PATHS = {"validate": None, **{f"validate-{mode}": mode for mode in MODES}}
MUTATE_PATH = "mutate"

log = logging.getLogger("vllm_fit.admission")


def internal_error_text(what: str) -> str:
    return f"vllm-fit: could not judge this object (internal error: {what})"


def _log_review(webhook: str, body: Any, operation: str, dryrun: bool, judgement: Judgement) -> None:
    meta = body.get("metadata", {}) if hasattr(body, "get") else {}
    log.info(json.dumps({
        "event": "review", "webhook": webhook, "kind": body.get("kind"), "namespace": meta.get("namespace"),
        "name": meta.get("name") or meta.get("generateName"), "operation": operation, "dry_run": dryrun,
        "mode": judgement.mode, "verdict": judgement.verdict, "decision": judgement.decision,
        "skipped": judgement.skipped, "kv_cache_gib": judgement.kv_cache_gib,
        "models": [r.found.launch.model for r in judgement.launches], "warnings": len(judgement.warnings),
        "duration_ms": round(judgement.duration_seconds * 1000, 2),
    }))


def register(registry: kopf.OperatorRegistry, reviewer: Reviewer, metrics: WebhookMetrics) -> None:
    """Attach the validating and mutating handlers for every resource to `registry`."""

    def validator(webhook: str, mode: str | None):
        async def validate(body, old, operation, dryrun, warnings, subresource=None, **_):  # noqa: ANN001
            started = time.perf_counter()
            try:
                judgement = await reviewer.review(dict(body), old=dict(old) if old else None, operation=operation,
                                                  mode=mode, subresource=subresource)
            except Exception as exc:  # one bad object must not fail the API request, nor pass unjudged
                metrics.errors.labels("review").inc()
                log.exception("review failed")
                effective = mode or reviewer.config.mode
                text = internal_error_text(type(exc).__name__)
                if reviewer.config.internal_error_policy == "deny" and effective == "enforce":
                    raise kopf.AdmissionError(text + "; denied (internal_error_policy: deny)", code=403)
                if effective != "audit":
                    warnings.append(text + "; admitted (internal_error_policy: warn)")
                return
            warnings.extend(judgement.warnings)
            metrics.reviews.labels(webhook, body.get("kind", ""), judgement.verdict, judgement.mode,
                                   judgement.decision).inc()
            metrics.review_seconds.labels(webhook, body.get("kind", "")).observe(time.perf_counter() - started)
            if judgement.verdict != "none" or judgement.skipped:
                _log_review(webhook, body, operation, dryrun, judgement)
            if judgement.decision == "deny":
                raise kopf.AdmissionError(judgement.message, code=403)
        return validate

    async def mutate(body, old, operation, patch, **_):  # noqa: ANN001
        started = time.perf_counter()
        try:
            judgement = await reviewer.review(dict(body), old=dict(old) if old else None, operation=operation,
                                              mode="audit")
        except Exception:
            metrics.errors.labels("review").inc()
            log.exception("annotation review failed")
            return
        for key, value in judgement.annotations.items():
            patch.metadata.annotations[key] = value
        metrics.review_seconds.labels(MUTATE_PATH, body.get("kind", "")).observe(time.perf_counter() - started)

    nodes = getattr(reviewer, "nodes", None)
    if nodes is not None:

        # kopf lists the Nodes, then watches them (reconnecting and re-listing on its own); the
        # handler only updates the store the reviews read.
        @kopf.on.event("", "v1", "nodes", registry=registry)
        def node_event(type, body, **_):  # noqa: ANN001, A002
            nodes.apply(type, dict(body))

    for group, version, plural in RESOURCES:
        for webhook, mode in VALIDATE_PATHS.items():
            kopf.on.validate(group, version, plural, id=webhook, operations=["CREATE", "UPDATE"],
                             registry=registry)(validator(webhook, mode))
            if plural == "pods":  # `kubectl debug` adds containers to a running Pod
                kopf.on.validate(group, version, plural, id=webhook, operations=["UPDATE"],
                                 subresource=EPHEMERAL, registry=registry)(validator(webhook, mode))
        kopf.on.mutate(group, version, plural, id=MUTATE_PATH, operations=["CREATE", "UPDATE"],
                       registry=registry)(mutate)
