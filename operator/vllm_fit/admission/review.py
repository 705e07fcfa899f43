"""One admission review, start to finish, without kopf: object -> launches -> plans -> Judgement.

The kopf handlers (handlers.py) only translate a Judgement into kopf's terms: an
AdmissionError (403) to deny, warnings for kubectl, annotations for the mutating patch.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from ..errors import VllmFitError
from ..hub.errors import HubTimeout
from ..hub.resolver import ModelNotFound, ModelResolver
from ..launch import find_launches
from ..memory.gpu import GpuCatalog, GpuSpec
from ..memory.plan import MemoryPlan, Reason, plan
from ..memory.runtime import RuntimeProfiles
from .config import WebhookConfig

ANNOTATION_PREFIX = "vllm-fit.io/"
SKIP_ANNOTATION = ANNOTATION_PREFIX + "skip"
MODEL_ID_ANNOTATION = ANNOTATION_PREFIX + "model-id"
RESULT_ANNOTATIONS = tuple(ANNOTATION_PREFIX + key for key in (
    "verdict", "kv-cache-gib", "kv-cache-tokens", "max-concurrency", "weights-gib", "gpu", "profile"))
WARNING_LIMIT = 120

Decision = Literal["allow", "deny"]


class LaunchResult(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    container: str
    model: Optional[str]
    gpu: Optional[str]
    plan: Optional[MemoryPlan] = None
    reasons: tuple[Reason, ...] = ()

    @property
    def errors(self) -> tuple[Reason, ...]:
        return tuple(r for r in self.reasons if r.severity == "error")


class Judgement(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    decision: Decision = "allow"
    mode: str
    skipped: Optional[str] = None  # why the object was not judged
    message: Optional[str] = None  # the denial, one line
    warnings: tuple[str, ...] = ()
    launches: tuple[LaunchResult, ...] = ()
    annotations: dict[str, Optional[str]] = Field(default_factory=dict)  # None removes a stale one
    verdict: str = "none"  # fits | warn | reject | unknown | none (no vLLM)
    duration_seconds: float = 0.0

    @property
    def kv_cache_gib(self) -> Optional[float]:
        for result in self.launches:
            if result.plan is not None:
                return result.plan.per_gpu.kv_cache_gib
        return None


def _policy_reason(code: str, policy: str, message: str) -> Optional[Reason]:
    if policy == "allow":
        return None
    return Reason(code=code, severity="error" if policy == "deny" else "warning", message=message, summary=message)


def _controller_owned(obj: dict[str, Any]) -> bool:
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(isinstance(o, dict) and o.get("controller") is True for o in owners)


def _fingerprint(found: list[Any]) -> list[tuple[str, Any, Any]]:
    return [(f.container, f.launch.model_dump(exclude={"sources"}), f.gpus.model_dump()) for f in found]


def _trim(text: str, limit: int = WARNING_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Reviewer:
    """Holds what every review needs; `review()` is safe to call concurrently."""

    def __init__(self, config: WebhookConfig, resolver: ModelResolver, catalog: GpuCatalog,
                 profiles: RuntimeProfiles) -> None:
        self.config = config
        self.resolver = resolver
        self.catalog = catalog
        self.profiles = profiles
        self.default_gpu: Optional[GpuSpec] = catalog.resolve(config.default_gpu) if config.default_gpu else None

    def find(self, obj: dict[str, Any]) -> list[Any]:
        return find_launches(obj, vllm_images=self.config.vllm_images, default_gpu=self.config.default_gpu,
                             catalog=self.catalog)

    def _find_or_warn(self, obj: dict[str, Any]) -> tuple[list[Any], Optional[str]]:
        try:
            return self.find(obj), None
        except VllmFitError as exc:
            return [], _trim(f"vllm-fit: could not read the vLLM launches: {exc}")

    async def _model(self, model_id: str, revision: Optional[str], deadline: float) -> Any:
        remaining = max(deadline - time.monotonic(), 0.0)
        aresolve = getattr(self.resolver, "aresolve", None)
        if aresolve is None:
            return await asyncio.wait_for(asyncio.to_thread(self.resolver.resolve, model_id, revision), timeout=remaining)
        # The Hub resolver waits on its own fetch thread without holding an executor thread; past the
        # deadline it raises HubTimeout while the fetch goes on and fills the cache for the next review.
        try:
            return await aresolve(model_id, revision, timeout=remaining)
        except HubTimeout:
            raise asyncio.TimeoutError from None

    async def _judge_launch(self, found: Any, obj: dict[str, Any], deadline: float) -> LaunchResult:
        launch = found.launch
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        model_id = annotations.get(MODEL_ID_ANNOTATION) or launch.model
        gpu_name = found.gpus.type
        reasons: list[Reason] = []
        for problem in getattr(found, "problems", ()) or ():
            reasons.append(Reason(code="invalid-argument", severity="error",
                                  message=f"vLLM would refuse to start: {problem}", summary=_trim(f"vLLM rejects: {problem}")))
        if reasons:
            return LaunchResult(container=found.container, model=model_id, gpu=gpu_name, reasons=tuple(reasons))
        gpu = self.catalog.find(gpu_name) if gpu_name else None
        if gpu is None and gpu_name:
            try:
                gpu = self.catalog.resolve(gpu_name)
            except VllmFitError:
                gpu = None
        if gpu is None:
            why = f"GPU type {gpu_name!r} is not in the catalog" if gpu_name else "no GPU type is known for this pod"
            reason = _policy_reason("unknown-gpu", self.config.unknown_gpu_policy,
                                    f"vllm-fit: {why}; set the vllm-fit.io/gpu annotation or a default GPU")
            return LaunchResult(container=found.container, model=model_id, gpu=gpu_name,
                                reasons=(reason,) if reason else ())
        if not model_id:
            why = "the model comes from " + ", ".join(launch.unresolved) if launch.unresolved else "no model is given"
            reason = _policy_reason("unknown-model", self.config.unknown_model_policy,
                                    _trim(f"vllm-fit: {why}; not checked"))
            return LaunchResult(container=found.container, model=None, gpu=gpu.name, reasons=(reason,) if reason else ())
        try:
            info = await self._model(model_id, launch.revision, deadline)
        except asyncio.TimeoutError:
            reason = _policy_reason("metadata-timeout", self.config.unknown_model_policy,
                                    _trim(f"vllm-fit: metadata for {model_id} not ready within "
                                          f"{self.config.deadline_seconds:g}s; not checked"))
            return LaunchResult(container=found.container, model=model_id, gpu=gpu.name, reasons=(reason,) if reason else ())
        except ModelNotFound as exc:
            reason = _policy_reason("unknown-model", self.config.unknown_model_policy,
                                    _trim(f"vllm-fit: model {model_id} unknown ({str(exc).split(':')[0]}); not checked"))
            return LaunchResult(container=found.container, model=model_id, gpu=gpu.name, reasons=(reason,) if reason else ())
        except VllmFitError as exc:
            reason = _policy_reason("unknown-model", self.config.unknown_model_policy,
                                    _trim(f"vllm-fit: model {model_id}: {exc}; not checked"))
            return LaunchResult(container=found.container, model=model_id, gpu=gpu.name, reasons=(reason,) if reason else ())
        if launch.model != model_id:
            launch = launch.model_copy(update={"model": model_id})
        try:
            result = plan(info, launch, gpu, self.profiles, gpus_given=found.gpus.count,
                          gpus_per_node=self.config.gpus_per_node,
                          concurrency_threshold=self.config.concurrency_threshold,
                          default_version=self.config.default_vllm_version)
        except VllmFitError as exc:
            reason = _policy_reason("unknown-model", self.config.unknown_model_policy,
                                    _trim(f"vllm-fit: cannot model {model_id}: {exc}"))
            return LaunchResult(container=found.container, model=model_id, gpu=gpu.name, reasons=(reason,) if reason else ())
        unresolved = tuple(
            Reason(code="unresolved", severity="warning", message=f"vllm-fit: {flag} is not known at admission time",
                   summary=f"vllm-fit: {flag} not known at admission; defaults assumed")
            for flag in launch.unresolved if flag != "--model")
        return LaunchResult(container=found.container, model=model_id, gpu=gpu.name, plan=result,
                            reasons=tuple(result.verdict.reasons) + unresolved)

    async def review(self, obj: dict[str, Any], *, old: Optional[dict[str, Any]] = None, operation: str = "CREATE",
                     namespace: Optional[str] = None, mode: Optional[str] = None) -> Judgement:
        started = time.monotonic()
        mode = mode or self.config.mode
        meta = obj.get("metadata") or {}
        namespace = namespace or meta.get("namespace")
        if operation == "DELETE":
            return Judgement(mode=mode, skipped="delete")
        if namespace in self.config.exempt_namespaces:
            return Judgement(mode=mode, skipped=f"namespace {namespace} is exempt")
        if str((meta.get("annotations") or {}).get(SKIP_ANNOTATION, "")).lower() == "true":
            return Judgement(mode=mode, skipped=f"opted out with {SKIP_ANNOTATION}")
        if obj.get("kind") == "Pod" and _controller_owned(obj):
            return Judgement(mode=mode, skipped="pod owned by a controller (its workload was judged)")
        found, unreadable = self._find_or_warn(obj)
        if unreadable:
            return Judgement(mode=mode, verdict="unknown", warnings=(unreadable,) if mode != "audit" else (),
                             duration_seconds=time.monotonic() - started)
        if not found:
            return Judgement(mode=mode, verdict="none", duration_seconds=time.monotonic() - started)
        deadline = started + self.config.deadline_seconds * 0.9
        results = list(await asyncio.gather(*(self._judge_launch(f, obj, deadline) for f in found)))
        unchanged = operation == "UPDATE" and old is not None and _fingerprint(self._find_or_warn(old)[0]) == _fingerprint(found)
        return self._decide(obj, results, mode, unchanged, time.monotonic() - started)

    def _decide(self, obj: dict[str, Any], results: list[LaunchResult], mode: str, unchanged: bool,
                duration: float) -> Judgement:
        meta = obj.get("metadata") or {}
        where = f"{meta.get('namespace') or '-'}/{meta.get('name') or meta.get('generateName') or '?'}"
        errors = [(r, e) for r in results for e in r.errors]
        verdict = "reject" if errors else ("warn" if any(r.reasons for r in results) else "fits")
        if all(r.plan is None for r in results) and not errors:
            verdict = "unknown"
        deny = bool(errors) and mode == "enforce" and not unchanged
        message = None
        if deny:
            message = "vllm-fit: " + " | ".join(f"{where} container {r.container}: {e.message}" for r, e in errors)
        warnings: list[str] = []
        if mode != "audit":
            for result in results:
                for reason in result.reasons:
                    if deny and reason.severity == "error":
                        continue
                    text = reason.short()
                    if not text.startswith("vllm-fit"):
                        text = f"vllm-fit: {text}"
                    warnings.append(_trim(text))
            if unchanged and errors:
                warnings.insert(0, "vllm-fit: launch unchanged by this update; not blocking an existing object")
        return Judgement(
            decision="deny" if deny else "allow", mode=mode, message=message, warnings=tuple(dict.fromkeys(warnings)),
            launches=tuple(results), annotations=self.annotations(obj, results, verdict), verdict=verdict,
            duration_seconds=duration,
        )

    @staticmethod
    def annotations(obj: dict[str, Any], results: list[LaunchResult], verdict: str) -> dict[str, Optional[str]]:
        """The result annotations that differ from what the object already carries (None removes one)."""
        current = (obj.get("metadata") or {}).get("annotations") or {}
        primary = next((r for r in results if r.plan is not None), None)
        wanted: dict[str, Optional[str]] = {key: None for key in RESULT_ANNOTATIONS}
        wanted[ANNOTATION_PREFIX + "verdict"] = verdict
        if primary is not None and primary.plan is not None:
            p = primary.plan
            wanted.update({
                ANNOTATION_PREFIX + "kv-cache-gib": f"{p.per_gpu.kv_cache_gib:.2f}",
                ANNOTATION_PREFIX + "kv-cache-tokens": str(p.kv_cache.tokens),
                ANNOTATION_PREFIX + "max-concurrency": f"{p.kv_cache.max_concurrency:.2f}",
                ANNOTATION_PREFIX + "weights-gib": f"{p.per_gpu.weights_gib:.2f}",
                ANNOTATION_PREFIX + "gpu": str(p.gpu["name"]),
                ANNOTATION_PREFIX + "profile": f"{p.profile_band} (vLLM {p.vllm_version})",
            })
        elif primary is None and results and results[0].gpu:
            wanted[ANNOTATION_PREFIX + "gpu"] = results[0].gpu
        return {key: value for key, value in wanted.items()
                if current.get(key) != value and not (value is None and key not in current)}
