"""One admission review, start to finish, without kopf: object -> launches -> plans -> Judgement.

The kopf handlers (handlers.py) only translate a Judgement into kopf's terms: an
AdmissionError (403) to deny, warnings for kubectl, annotations for the mutating patch.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from ..errors import VllmFitError
from ..hub.errors import HubTimeout
from ..hub.resolver import ModelNotFound, ModelResolver
from ..launch import find_launches
from ..launch.find import ConfigMaps, mentions_vllm, text_gate
from ..memory.gpu import GpuCatalog, GpuSpec
from ..check import LaunchResult, check_launch
from ..memory.plan import Reason, Verdict
from ..memory.runtime import RuntimeProfiles
from ..launch.flags import FlagTable
from ..profiles import vllm_flag_table
from .config import WebhookConfig
from .configmaps import ConfigMapReader
from .nodes import NodeStore

ANNOTATION_PREFIX = "vllm-fit.io/"
SKIP_ANNOTATION = ANNOTATION_PREFIX + "skip"
MODEL_ID_ANNOTATION = ANNOTATION_PREFIX + "model-id"
RESULT_ANNOTATIONS = tuple(ANNOTATION_PREFIX + key for key in (
    "verdict", "kv-cache-gib", "kv-cache-tokens", "max-concurrency", "weights-gib", "gpu", "gpu-source", "profile",
    "vllm-version", "overheads"))
# The source the observer's calibration gives its entries (logs.observe via admission/observer.py).
MEASURED_IN_CLUSTER = "measured in this cluster: "
# Cache entries are skipped for objects whose judged parts are this large (a flood of big,
# distinct dry-run objects must not fill the webhook's memory).
CACHEABLE_BYTES = 64 * 1024
WARNING_LIMIT = 120

Decision = Literal["allow", "deny"]


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


# Findings of check_launch that mean "not judged", governed by the unknown-model / unknown-GPU policies.
_MODEL_CODES = frozenset({"unknown-model", "unresolved-model", "no-model", "model-metadata", "metadata-timeout",
                          "launch-in-image"})
_GPU_CODES = frozenset({"unknown-gpu"})


# Kinds whose launch is assembled from fields that need not mention vLLM (KServe runtimes, LLMInferenceService).
_ALWAYS_READ = frozenset({"InferenceService", "ServingRuntime", "ClusterServingRuntime", "LLMInferenceService",
                          "Workspace"})  # KAITO


class _Resolved:
    """A resolver that already holds the answer (looked up under the review's deadline)."""

    def __init__(self, model_id: str, info: Any = None, error: Optional[VllmFitError] = None) -> None:
        self.model_id, self.info, self.error = model_id, info, error

    def resolve(self, model_id: str, revision: Optional[str] = None) -> Any:
        if self.error is not None:
            raise self.error
        if model_id != self.model_id:
            raise ModelNotFound(f"model {model_id!r} was not looked up for this review")
        return self.info


def _controller_owned(obj: dict[str, Any]) -> bool:
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(isinstance(o, dict) and o.get("controller") is True for o in owners)


def _fingerprint(found: list[Any]) -> list[tuple[str, Any, Any]]:
    return [(f.container, f.launch.model_dump(exclude={"sources"}), f.gpus.model_dump()) for f in found]


def _unprefixed(message: str) -> str:
    return message.removeprefix("vllm-fit: ")


def _trim(text: str, limit: int = WARNING_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _measured_in_cluster(p: Any) -> Optional[str]:
    """"measured in this cluster (pod ns/name container c)" when the plan used a calibration entry."""
    for note in getattr(p, "notes", ()) or ():
        text = str(note)
        if MEASURED_IN_CLUSTER in text:
            source = text.split(MEASURED_IN_CLUSTER, 1)[1].split(" (vLLM", 1)[0]
            return f"measured in this cluster ({source})"
    return None


class Reviewer:
    """Holds what every review needs; `review()` is safe to call concurrently."""

    def __init__(self, config: WebhookConfig, resolver: ModelResolver, catalog: GpuCatalog,
                 profiles: RuntimeProfiles, metrics: Optional[Any] = None,
                 configmaps: Optional[ConfigMapReader] = None, flag_table: Optional[FlagTable] = None,
                 nodes: Optional[NodeStore] = None) -> None:
        self.metrics = metrics
        # Reads the ConfigMaps a launch takes values from (None: they stay unresolved).
        self.configmaps = configmaps
        self.config = config
        self.resolver = resolver
        self.catalog = catalog
        self.profiles = profiles
        self._configured_measured = profiles.measured  # calibration entries are added beside these
        self.flag_table = flag_table if flag_table is not None else vllm_flag_table()
        # The cluster's GPU Nodes, kept current by a watch (admission/nodes.py); None: not used.
        self.nodes = nodes
        self.default_gpu: Optional[GpuSpec] = catalog.resolve(config.default_gpu) if config.default_gpu else None
        # Planned launches by what decides them; the same launch recurs across Deployments, their
        # ReplicaSets, re-applies and the validating/mutating pair. Bounded LRU.
        self._results: "OrderedDict[str, LaunchResult]" = OrderedDict()
        self._found: "OrderedDict[str, list[Any]]" = OrderedDict()
        self._may_mention = text_gate(config.vllm_images, config.loose_detection)
        self._results_limit = 4096

    def needs_review(self, obj: dict[str, Any], raw_text: Optional[str] = None) -> bool:
        """The cheap gate before any handler runs: could the object hold a vLLM launch at all?

        With the request's JSON text at hand, a substring search stands in for walking the object
        (the API server writes ASCII letters unescaped, so a spec that mentions vllm contains it).
        """
        if not isinstance(obj, dict):
            return False
        if obj.get("kind") in _ALWAYS_READ:
            return True
        if raw_text is not None:
            return self._may_mention(raw_text)
        return mentions_vllm([obj.get("spec"), (obj.get("metadata") or {}).get("labels")], self.config.vllm_images,
                             self.config.loose_detection)

    def find(self, obj: dict[str, Any]) -> list[Any]:
        """find_launches, memoised on what it reads (the same spec arrives for the validating and the
        mutating call, for re-applies and for every ReplicaSet of a Deployment)."""
        meta = obj.get("metadata") or {}
        try:
            material = json.dumps([obj.get("kind"), obj.get("apiVersion"), meta.get("namespace"), meta.get("name"),
                                   meta.get("generateName"), meta.get("annotations"), meta.get("labels"),
                                   obj.get("spec")], separators=(",", ":"), sort_keys=True)
            key = hashlib.sha256(material.encode()).hexdigest() if len(material) <= CACHEABLE_BYTES else None
        except (TypeError, ValueError):
            key = None
        if key is not None and key in self._found:
            self._found.move_to_end(key)
            return self._found[key]
        found = find_launches(obj, vllm_images=self.config.vllm_images, default_gpu=self.config.default_gpu,
                              catalog=self.catalog, loose=self.config.loose_detection)
        if key is not None:
            self._found[key] = found
            if len(self._found) > self._results_limit:
                self._found.popitem(last=False)
        return found

    def _find_or_warn(self, obj: dict[str, Any]) -> tuple[list[Any], Optional[str]]:
        try:
            return self.find(obj), None
        except VllmFitError as exc:
            return [], _trim(f"vllm-fit: could not read the vLLM launches: {exc}")

    def use_measured(self, entries: tuple[Any, ...]) -> None:
        """Plan later launches with these measured profiles (the observer's calibration store)
        beside the configured ones; planned results are dropped since they may change."""
        self.profiles = self.profiles.model_copy(update={"measured": tuple(self._configured_measured) + tuple(entries)})
        self._results.clear()

    async def model_info(self, model_id: str, revision: Optional[str], deadline: float) -> Any:
        """Model metadata through the same cached, deadline-bound lookup as reviews."""
        return await self._model(model_id, revision, deadline)

    async def _model(self, model_id: str, revision: Optional[str], deadline: float) -> Any:
        started = time.perf_counter()
        outcome = "error"
        try:
            info = await self._lookup(model_id, revision, deadline)
            outcome = "found"
            return info
        except asyncio.TimeoutError:
            outcome = "timeout"
            raise
        except ModelNotFound:
            outcome = "not-found"
            raise
        finally:
            if self.metrics is not None:
                self.metrics.lookups.labels(outcome).inc()
                self.metrics.lookup_seconds.observe(time.perf_counter() - started)

    async def _lookup(self, model_id: str, revision: Optional[str], deadline: float) -> Any:
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

    def _apply_policy(self, result: LaunchResult) -> LaunchResult:
        reasons: list[Reason] = []
        for reason in result.verdict.reasons:
            policy = (self.config.unknown_model_policy if reason.code in _MODEL_CODES else
                      self.config.unknown_gpu_policy if reason.code in _GPU_CODES else None)
            if policy == "allow":
                continue
            if policy == "deny":
                reason = reason.model_copy(update={"severity": "error"})
            reasons.append(reason)
        fits = not any(r.severity == "error" for r in reasons)
        return result.model_copy(update={"verdict": Verdict(fits=fits, reasons=tuple(reasons))})

    async def _judge_launch(self, found: Any, obj: dict[str, Any], deadline: float) -> LaunchResult:
        launch = found.launch
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        named = annotations.get(MODEL_ID_ANNOTATION)
        if named:  # a local path (PVC weights) named by its Hub id on the workload
            launch = launch.model_copy(update={"model": named,
                                               "unresolved": tuple(u for u in launch.unresolved if u != "--model")})
            found = found.model_copy(update={"launch": launch})
        inventory = self.nodes.inventory() if self.nodes is not None else None
        material = found.model_dump_json(exclude={"launch": {"sources"}})
        if inventory is not None and found.gpus.type is None:  # judged on the Nodes: their state is part of the key
            material += f"|nodes:{self.nodes.generation}"  # type: ignore[union-attr]
        key = hashlib.sha256(material.encode()).hexdigest() if len(material) <= CACHEABLE_BYTES else None
        cached = self._results.get(key) if key else None
        if cached is not None:
            self._results.move_to_end(key)
            return cached
        resolver: Any = _Resolved(launch.model or "", error=ModelNotFound("no model"))
        if launch.model and "--model" not in launch.unresolved:
            try:
                resolver = _Resolved(launch.model, info=await self._model(launch.model, launch.revision, deadline))
            except asyncio.TimeoutError:
                message = (f"vllm-fit: metadata for {launch.model} not ready within "
                           f"{self.config.deadline_seconds:g}s; not checked")
                timeout = Reason(code="metadata-timeout", severity="warning", message=message, summary=_trim(message))
                return self._apply_policy(LaunchResult(found=found, verdict=Verdict(fits=True, reasons=(timeout,))))
            except VllmFitError as exc:
                resolver = _Resolved(launch.model, error=exc)
        result = self._apply_policy(check_launch(
            found, resolver=resolver, catalog=self.catalog, profiles=self.profiles,
            default_vllm_version=self.config.default_vllm_version, gpus_per_node=self.config.gpus_per_node,
            concurrency_threshold=self.config.concurrency_threshold, flag_table=self.flag_table,
            inventory=inventory))
        if key and not any(r.code in _MODEL_CODES for r in result.verdict.reasons):  # never pin a transient miss
            self._results[key] = result
            if len(self._results) > self._results_limit:
                self._results.popitem(last=False)
        return result

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
        if _controller_owned(obj):
            # ReplicaSets of a Deployment, Pods of a ReplicaSet, Jobs of a CronJob, StatefulSets of a
            # LeaderWorkerSet: their owner was judged when the user applied it. Judging them again
            # would stall rollouts of objects admitted before (or on a lookup timeout).
            return Judgement(mode=mode, skipped=f"{obj.get('kind')} owned by a controller (its owner was judged)")
        found, unreadable = self._find_or_warn(obj)
        if unreadable:
            return Judgement(mode=mode, verdict="unknown", warnings=(unreadable,) if mode != "audit" else (),
                             duration_seconds=time.monotonic() - started)
        if not found:
            return Judgement(mode=mode, verdict="none", duration_seconds=time.monotonic() - started)
        found, configmaps, configmap_problems = await self._with_configmaps(obj, found, namespace, started)
        deadline = started + self.config.deadline_seconds * 0.9
        results = list(await asyncio.gather(*(self._judge_launch(f, obj, deadline) for f in found)))
        unchanged = operation == "UPDATE" and old is not None and (
            old.get("spec") == obj.get("spec")
            or _fingerprint(self._find_with(old, configmaps)) == _fingerprint(found))
        return self._decide(obj, results, mode, unchanged, time.monotonic() - started,
                            extra_warnings=configmap_problems)

    def _find_with(self, obj: dict[str, Any], configmaps: Optional[ConfigMaps]) -> list[Any]:
        """The launches as this review reads them (the old object of an UPDATE with the same ConfigMaps)."""
        if configmaps is None:
            return self._find_or_warn(obj)[0]
        try:
            return find_launches(obj, vllm_images=self.config.vllm_images, default_gpu=self.config.default_gpu,
                                 catalog=self.catalog, loose=self.config.loose_detection, configmaps=configmaps)
        except VllmFitError:
            return []

    async def _with_configmaps(self, obj: dict[str, Any], found: list[Any], namespace: Optional[str],
                               started: float) -> tuple[list[Any], Optional[ConfigMaps], list[str]]:
        """Read again with the ConfigMaps the launches take values from, fetched from the API server
        within the first half of the deadline (the model lookup needs the rest). Only objects whose
        launches read a ConfigMap cost an API call."""
        names = [name for f in found for name in f.config_maps]
        if not names or self.configmaps is None:
            return found, None, []
        configmaps, problems = await self.configmaps.read(namespace, names,
                                                          started + self.config.deadline_seconds * 0.45)
        if not len(configmaps):
            return found, None, problems
        return self._find_with(obj, configmaps) or found, configmaps, problems

    def _decide(self, obj: dict[str, Any], results: list[LaunchResult], mode: str, unchanged: bool,
                duration: float, extra_warnings: list[str] = ()) -> Judgement:  # type: ignore[assignment]
        meta = obj.get("metadata") or {}
        where = f"{meta.get('namespace') or '-'}/{meta.get('name') or meta.get('generateName') or '?'}"
        errors = [(r, e) for r in results for e in r.verdict.errors]
        verdict = "reject" if errors else ("warn" if any(r.verdict.problems for r in results) else "fits")
        if all(r.plan is None for r in results) and not errors:
            verdict = "unknown"
        deny = bool(errors) and mode == "enforce" and not unchanged
        message = None
        if deny:
            message = "vllm-fit: " + " | ".join(f"{where} container {r.found.container}: {_unprefixed(e.message)}"
                                                for r, e in errors)
        warnings: list[str] = []
        if mode != "audit":
            for result in results:
                for reason in result.verdict.reasons:
                    if reason.severity == "info" or (deny and reason.severity == "error"):
                        continue
                    text = reason.short()
                    if not text.startswith("vllm-fit"):
                        text = f"vllm-fit: {text}"
                    warnings.append(_trim(text))
            warnings.extend(_trim(f"vllm-fit: {text}") for text in extra_warnings)
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
        primary = next((r for r in results if r.plan is not None and r.plan.valid), None)
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
                # Says the gpu annotation above is vllm-fit's output (the reader then ignores it)
                # unless the user's own annotation decided.
                ANNOTATION_PREFIX + "gpu-source": primary.found.gpus.type_source,
                ANNOTATION_PREFIX + "profile": f"{p.profile_band} (vLLM {p.vllm_version})",
                ANNOTATION_PREFIX + "vllm-version": f"{p.vllm_version} ({p.vllm_version_source or 'stated'})",
            })
            in_cluster = _measured_in_cluster(p)
            if in_cluster:
                wanted[ANNOTATION_PREFIX + "overheads"] = in_cluster
        elif results and results[0].gpu:
            wanted[ANNOTATION_PREFIX + "gpu"] = results[0].gpu
            wanted[ANNOTATION_PREFIX + "gpu-source"] = results[0].found.gpus.type_source
        return {key: value for key, value in wanted.items()
                if current.get(key) != value and not (value is None and key not in current)}
