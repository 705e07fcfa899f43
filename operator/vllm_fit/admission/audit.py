"""Find vLLM workloads that enforce mode would deny now: kopf watch handlers, opt-in.

Workloads admitted while the webhook was down (`failurePolicy: Ignore`), in warn or audit mode,
or under an older version or configuration are re-judged on every watch event (the initial
listing included). One that would be denied gets the annotation `vllm-fit.io/audit` (the
denial, one line), a Warning Event and a place in the `vllm_fit_audit_would_deny` gauge; one
that has since been fixed loses the annotation. Nothing is ever deleted, scaled or otherwise
changed: a running service is the operator's call.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import kopf

from .handlers import RESOURCES
from .metrics import WebhookMetrics
from .review import ANNOTATION_PREFIX, Reviewer

AUDIT_ANNOTATION = ANNOTATION_PREFIX + "audit"
EVENT_REASON = "VllmFitWouldDeny"
_ANNOTATION_LIMIT = 1000

# The kinds users create (controller-owned children are skipped by the review when their
# controller vouches for them, so a bad Deployment is marked once, not with each of its Pods).
# The reviewed kinds (handlers.RESOURCES) less the KServe runtime templates, LLMInferenceServices
# and KAITO Workspaces, which the audit leaves out.
_NOT_AUDITED = frozenset({"servingruntimes", "clusterservingruntimes", "llminferenceservices", "workspaces"})
AUDITED: tuple[tuple[str, str, str], ...] = tuple(r for r in RESOURCES if r[2] not in _NOT_AUDITED)

log = logging.getLogger("vllm_fit.admission")


class AuditState:
    """Which objects are marked, by uid, for the gauge (one process, one watch)."""

    def __init__(self, metrics: WebhookMetrics) -> None:
        self.metrics = metrics
        self.flagged: dict[str, str] = {}

    def set(self, uid: str, kind: str, flagged: bool) -> None:
        if flagged:
            self.flagged[uid] = kind
        else:
            self.flagged.pop(uid, None)
        for each in {kind, *self.flagged.values()}:
            self.metrics.audit_flagged.labels(each).set(sum(1 for k in self.flagged.values() if k == each))


def register_audit(registry: kopf.OperatorRegistry, reviewer: Reviewer, metrics: WebhookMetrics) -> None:
    state = AuditState(metrics)

    async def audit(type: str, body: Any, patch: Any, **_: Any) -> None:  # noqa: A002 - kopf's name
        meta = body.get("metadata") or {}
        uid, kind = str(meta.get("uid") or ""), str(body.get("kind") or "")
        if type == "DELETED":
            state.set(uid, kind, False)
            return
        obj = json.loads(json.dumps(dict(body)))  # a plain copy; kopf's body is a live view
        if not reviewer.needs_review(obj):
            return
        try:
            judgement = await reviewer.review(obj, mode="enforce", operation="CREATE")
        except Exception:  # one object must not stop the watch
            metrics.errors.labels("audit").inc()
            log.exception("audit review failed")
            return
        current = (meta.get("annotations") or {}).get(AUDIT_ANNOTATION)
        metrics.audit_reviews.labels(kind, judgement.decision).inc()
        if judgement.decision == "deny" and judgement.message:
            text = judgement.message[:_ANNOTATION_LIMIT]
            state.set(uid, kind, True)
            if current != text:
                patch.metadata.annotations[AUDIT_ANNOTATION] = text
                kopf.warn(body, reason=EVENT_REASON, message=text)
                log.warning(json.dumps({"event": "audit-would-deny", "kind": kind, "namespace": meta.get("namespace"),
                                        "name": meta.get("name"), "message": text}))
        else:
            state.set(uid, kind, False)
            if current is not None:
                patch.metadata.annotations[AUDIT_ANNOTATION] = None

    for group, version, plural in AUDITED:
        kopf.on.event(group, version, plural, id="vllm-fit-audit", registry=registry)(audit)
