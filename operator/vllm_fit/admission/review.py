"""One admission review, start to finish, without kopf: object -> launches -> plans -> Judgement.

The kopf handlers (handlers.py) only translate a Judgement into kopf's terms: an
AdmissionError (403) to deny, warnings for kubectl, annotations for the mutating patch.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Optional, Protocol, Sequence

from pydantic import BaseModel, ConfigDict, Field

from ..errors import VllmFitError
from ..hub.errors import HubTimeout
from ..hub.resolver import ModelNotFound, ModelResolver
from ..launch import find_launches
from ..launch.find import ConfigMaps, mentions_vllm, text_gate, unreadable_vllm_containers
from ..launch.images import image_matcher as _image_matcher
from ..launch.gpus import ANNOTATION as GPU_ANNOTATION, annotated_gpu, valid_gpu_annotation
from ..gpu_catalog import GpuCatalog, GpuSpec
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
# A namespace label only those with RBAC on namespaces can set: there the skip annotation counts.
ALLOW_SKIP_LABEL = ANNOTATION_PREFIX + "allow-skip"
# A Hugging Face repo id: "org/name" or "name", each part at most 96 characters (the Hub's limit).
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
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
log = logging.getLogger("vllm_fit.admission")


def is_hub_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_HUB_ID.match(value)) and ".." not in value


def _states_model(launch: Any) -> bool:
    """The launch names its model as a Hub id (not a local path, a storage URI or a variable)."""
    return bool(launch.model) and "--model" not in launch.unresolved and is_hub_id(launch.model)


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


def _controller_ref(obj: dict[str, Any]) -> Optional[dict[str, Any]]:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    owners = meta.get("ownerReferences")
    if not isinstance(owners, list):
        return None
    return next((o for o in owners if isinstance(o, dict) and o.get("controller") is True), None)


def _controller_owned(obj: dict[str, Any]) -> bool:
    return _controller_ref(obj) is not None


def owner_group(ref: dict[str, Any]) -> str:
    api_version = str(ref.get("apiVersion") or "")
    return api_version.split("/", 1)[0] if "/" in api_version else ""


# Which reviewed kinds create which: a child is skipped only when its controller is one of these,
# and exists with the uid the child names (anyone who can create a Pod can write ownerReferences).
REVIEWED_OWNERS: dict[str, frozenset[tuple[str, str]]] = {
    "Pod": frozenset({("apps", "ReplicaSet"), ("apps", "StatefulSet"), ("apps", "DaemonSet"), ("batch", "Job"),
                      ("", "ReplicationController")}),
    "ReplicaSet": frozenset({("apps", "Deployment")}),
    "Job": frozenset({("batch", "CronJob")}),
    # LeaderWorkerSet: the leader StatefulSet is the LWS's, each worker StatefulSet its leader Pod's.
    "StatefulSet": frozenset({("leaderworkerset.x-k8s.io", "LeaderWorkerSet"), ("", "Pod")}),
    # KServe raw deployments.
    "Deployment": frozenset({("serving.kserve.io", "InferenceService"), ("serving.kserve.io", "LLMInferenceService")}),
}


# Owners whose template the child's launch is not a copy of (an LWS leader Pod's env, KServe's
# generated Deployment): existence and uid suffice.
_OPAQUE_OWNERS = frozenset({("leaderworkerset.x-k8s.io", "LeaderWorkerSet"), ("", "Pod"),
                            ("serving.kserve.io", "InferenceService"), ("serving.kserve.io", "LLMInferenceService")})


class ClusterLookup(Protocol):
    """What a review may ask the API server, each call bounded by the review's deadline."""

    async def namespace_labels(self, namespace: str, deadline: float) -> Optional[dict[str, str]]: ...

    async def owner(self, namespace: Optional[str], ref: dict[str, Any], deadline: float) -> Optional[dict[str, Any]]:
        """The controller `ref` names, when it exists with that uid; None when it does not."""


def _template_annotations(obj: dict[str, Any]) -> Optional[dict[str, Any]]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    template = spec.get("template") if isinstance(spec.get("template"), dict) else {}
    meta = template.get("metadata") if isinstance(template.get("metadata"), dict) else {}
    return meta.get("annotations") if isinstance(meta.get("annotations"), dict) else None


_PINNED_SOURCES = frozenset({"node-selector", "node-affinity", "gke-accelerator", "amd-label", "instance-type",
                             "mig-resource"})


def _launch_keys(found: list[Any]) -> list[tuple[str, int, Optional[str]]]:
    """What a launch runs on, without where it sits in the object (a Pod's container "vllm" is its
    ReplicaSet template's "vllm"). A GPU type counts only when the scheduler is bound by it."""
    return [(f.launch.model_dump_json(exclude={"sources"}), f.gpus.count,
             f.gpus.type if f.gpus.type_source in _PINNED_SOURCES else None) for f in found]


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
                 nodes: Optional[NodeStore] = None, cluster: Optional[ClusterLookup] = None) -> None:
        self.metrics = metrics
        # Reads the ConfigMaps a launch takes values from (None: they stay unresolved).
        self.configmaps = configmaps
        self.config = config
        self.cluster = cluster
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vllm-fit-review")
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
        self._may_mention = text_gate(config.image_patterns, config.loose_detection)
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
        return mentions_vllm([obj.get("spec"), (obj.get("metadata") or {}).get("labels")], self.config.image_patterns,
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
        except (TypeError, ValueError, RecursionError):
            key = None
        if key is not None and key in self._found:
            self._found.move_to_end(key)
            return self._found[key]
        found = find_launches(obj, vllm_images=self.config.image_patterns, default_gpu=self.config.default_gpu,
                              catalog=self.catalog, loose=self.config.loose_detection)
        if key is not None:
            self._found[key] = found
            if len(self._found) > self._results_limit:
                self._found.popitem(last=False)
        return found

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

    async def _judge_launch(self, found: Any, named_model: Optional[str], deadline: float) -> LaunchResult:
        launch = found.launch
        if named_model and not _states_model(launch):
            # A local path (PVC weights), a storage URI or a variable, named by its Hub id on the workload.
            launch = launch.model_copy(update={"model": named_model,
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
            if not is_hub_id(launch.model):
                # Never looked up on the webhook's own filesystem: the path is inside the vLLM pod.
                resolver = _Resolved(launch.model, error=ModelNotFound(
                    f"{_trim(repr(launch.model), 80)} is a local path or not a Hugging Face model id; name the "
                    f"model with the {MODEL_ID_ANNOTATION} annotation"))
            else:
                try:
                    resolver = _Resolved(launch.model, info=await self._model(launch.model, launch.revision, deadline))
                except asyncio.TimeoutError:
                    message = (f"vllm-fit: metadata for {launch.model} not ready within "
                               f"{self.config.deadline_seconds:g}s; not checked")
                    timeout = Reason(code="metadata-timeout", severity="warning", message=message,
                                     summary=_trim(message))
                    return self._apply_policy(LaunchResult(found=found, verdict=Verdict(fits=True, reasons=(timeout,))))
                except VllmFitError as exc:
                    resolver = _Resolved(launch.model, error=exc)
                except (OSError, ValueError) as exc:  # e.g. a revision too long for a cache path
                    resolver = _Resolved(launch.model, error=ModelNotFound(
                        f"metadata for {launch.model} could not be read ({type(exc).__name__})"))
        result = self._apply_policy(await self._in_worker(
            check_launch, found, resolver=resolver, catalog=self.catalog, profiles=self.profiles,
            default_vllm_version=self.config.default_vllm_version, gpus_per_node=self.config.gpus_per_node,
            concurrency_threshold=self.config.concurrency_threshold, flag_table=self.flag_table,
            inventory=inventory))
        if key and not any(r.code in _MODEL_CODES for r in result.verdict.reasons):  # never pin a transient miss
            self._results[key] = result
            if len(self._results) > self._results_limit:
                self._results.popitem(last=False)
        return result

    async def _in_worker(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """CPU-bound reading and planning, off the event loop (health, other connections and
        deadlines stay served) on one thread that owns the reader's caches."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, functools.partial(fn, *args, **kwargs))

    async def _skip_allowed(self, namespace: Optional[str], mode: str, deadline: float) -> tuple[bool, str]:
        """Whether an admin allowed the skip annotation here, and what decided it."""
        allowed = self.config.allow_skip_annotation
        if allowed is True:
            return True, "allow_skip_annotation is true"
        if allowed is None and mode != "enforce":
            return True, f"{mode} mode"
        if self.cluster is None or not namespace:
            return False, f"{mode} mode; an admin allows it with the namespace label {ALLOW_SKIP_LABEL}=true"
        try:
            labels = await self.cluster.namespace_labels(namespace, deadline)
        except Exception as exc:  # an unverifiable opt-out is no opt-out
            return False, f"the namespace labels could not be read ({type(exc).__name__})"
        if str((labels or {}).get(ALLOW_SKIP_LABEL, "")).lower() == "true":
            return True, f"namespace label {ALLOW_SKIP_LABEL}=true"
        return False, f"{mode} mode; an admin allows it with the namespace label {ALLOW_SKIP_LABEL}=true"

    def _annotation_notes(self, obj: dict[str, Any], found: list[Any]) -> tuple[Optional[str], list[str]]:
        """The model id the workload's annotation may fill in, and warnings for annotations not used."""
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
        notes: list[str] = []
        named = annotations.get(MODEL_ID_ANNOTATION)
        named_model: Optional[str] = None
        if named:
            if not is_hub_id(named):
                notes.append(f"vllm-fit: {MODEL_ID_ANNOTATION} ignored: {_trim(repr(str(named)), 60)} is not a "
                             f"Hugging Face model id")
            else:
                named_model = str(named)
                stated = sorted({f.launch.model for f in found if _states_model(f.launch) and f.launch.model != named})
                if stated:
                    notes.append(_trim(f"vllm-fit: {MODEL_ID_ANNOTATION}={named} ignored where the launch names its "
                                       f"model ({', '.join(stated)})"))
        template = _template_annotations(obj)
        claimed = annotated_gpu([template, annotations])
        if claimed is not None:
            if not valid_gpu_annotation(claimed):
                notes.append(f"vllm-fit: {GPU_ANNOTATION} ignored: {_trim(repr(claimed), 60)} is not a GPU name or size")
            else:
                pinned = sorted({f"{f.gpus.type} from {f.gpus.type_source}" for f in found
                                 if f.gpus.type_source != "annotation" and f.gpus.type_source not in ("default", "unknown")})
                if pinned:
                    notes.append(_trim(f"vllm-fit: {GPU_ANNOTATION}={claimed} ignored: the pod is pinned to "
                                       f"{', '.join(pinned)}"))
        return named_model, notes

    def _policy_reason(self, code: str, policy: str, message: str, summary: Optional[str] = None) -> Reason:
        return Reason(code=code, severity="error" if policy == "deny" else "warning", message=message,
                      summary=_trim(summary or message))

    def _count_skip(self, why: str) -> None:
        if self.metrics is not None and hasattr(self.metrics, "skips"):
            self.metrics.skips.labels(why).inc()

    async def review(self, obj: dict[str, Any], *, old: Optional[dict[str, Any]] = None, operation: str = "CREATE",
                     namespace: Optional[str] = None, mode: Optional[str] = None,
                     subresource: Optional[str] = None) -> Judgement:
        started = time.monotonic()
        deadline = started + self.config.deadline_seconds * 0.9
        mode = mode or self.config.mode
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        namespace = namespace or meta.get("namespace")
        if operation == "DELETE":
            return Judgement(mode=mode, skipped="delete")
        if namespace in self.config.exempt_namespaces:
            return Judgement(mode=mode, skipped=f"namespace {namespace} is exempt")
        notes: list[str] = []
        annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
        if str(annotations.get(SKIP_ANNOTATION, "")).lower() == "true":
            allowed, why = await self._skip_allowed(namespace, mode, deadline)
            log.info(json.dumps({"event": "skip-annotation", "honoured": allowed, "why": why, "kind": obj.get("kind"),
                                 "namespace": namespace, "name": meta.get("name") or meta.get("generateName")}))
            if allowed:
                self._count_skip("annotation")
                return Judgement(mode=mode, skipped=f"opted out with {SKIP_ANNOTATION} ({why})")
            notes.append(f"vllm-fit: {SKIP_ANNOTATION} is not honoured here ({why}); judged as usual")
        if subresource == "ephemeralcontainers":
            return self._decide(obj, [], mode, False, time.monotonic() - started, self._ephemeral(obj, old), notes)
        if _controller_owned(obj):
            owned, why = await self._judged_as_owner(obj, namespace, deadline)
            if owned:
                self._count_skip("controller-owned")
                return Judgement(mode=mode, skipped=why)
            if why:
                notes.append(f"vllm-fit: {why}")
        found, unread = await self._in_worker(self._read, obj)
        object_reasons: list[Reason] = []
        policy = self.config.unreadable_launch_policy
        for container, why in unread:
            object_reasons.append(self._policy_reason(
                "unreadable-launch", policy,
                f"vllm-fit: container {container} of a vLLM image {why}; its launch cannot be checked (run `vllm "
                f"serve` with the flags in command/args)",
                f"vllm-fit: {container}: launch cannot be checked: it {why}"))
        if not found and not object_reasons:
            return Judgement(mode=mode, verdict="none", warnings=tuple(notes) if mode != "audit" else (),
                             duration_seconds=time.monotonic() - started)
        configmaps: Optional[ConfigMaps] = None
        if found:
            found, configmaps, configmap_problems = await self._with_configmaps(obj, found, namespace, started)
            notes.extend(_trim(f"vllm-fit: {text}") for text in configmap_problems)
        named_model, annotation_notes = self._annotation_notes(obj, found)
        notes.extend(annotation_notes)
        results = list(await asyncio.gather(*(self._judge_launch(f, named_model, deadline) for f in found)))
        unchanged = False
        if operation == "UPDATE" and old is not None:
            unchanged = old.get("spec") == obj.get("spec")
            if not unchanged and found:
                # The old object read with the same ConfigMaps (a scale never looks like a launch change).
                old_found, old_unread = await self._in_worker(self._read, old, configmaps)
                unchanged = _fingerprint(old_found) == _fingerprint(found) and old_unread == unread
        return self._decide(obj, results, mode, unchanged, time.monotonic() - started, object_reasons, notes)

    def _ephemeral(self, obj: dict[str, Any], old: Optional[dict[str, Any]]) -> list[Reason]:
        """`kubectl debug` containers that run vLLM. They cannot request GPUs, so the launch is not
        one the webhook can judge (vLLM images see every GPU of the node through the runtime)."""
        def containers(o: Optional[dict[str, Any]]) -> list[dict[str, Any]]:
            spec = (o or {}).get("spec") if isinstance((o or {}).get("spec"), dict) else {}
            items = spec.get("ephemeralContainers")
            return [c for c in items if isinstance(c, dict)] if isinstance(items, list) else []

        before = {c.get("name") for c in containers(old)}
        is_vllm_image = _image_matcher(self.config.image_patterns)
        reasons = []
        for container in containers(obj)[: self.config.max_containers]:
            if container.get("name") in before:
                continue
            words = [w for w in [container.get("image"), *(container.get("command") or []), *(container.get("args") or [])]
                     if isinstance(w, str)]
            if is_vllm_image(container.get("image")) or any(self._may_mention(w) for w in words):
                reasons.append(self._policy_reason(
                    "unreadable-launch", self.config.unreadable_launch_policy,
                    f"vllm-fit: ephemeral container {_trim(repr(str(container.get('name'))), 60)} runs a vLLM image "
                    f"or command; it cannot request GPUs, so its launch cannot be checked (run vLLM as a workload)"))
        return reasons

    def _read(self, obj: dict[str, Any], configmaps: Optional[ConfigMaps] = None
              ) -> tuple[list[Any], list[tuple[str, str]]]:
        """(launches, unreadable vLLM containers); a manifest the reader rejects is itself unreadable."""
        try:
            found = self.find(obj) if configmaps is None else find_launches(
                obj, vllm_images=self.config.image_patterns, default_gpu=self.config.default_gpu,
                catalog=self.catalog, loose=self.config.loose_detection, configmaps=configmaps)
            unread = unreadable_vllm_containers(obj, vllm_images=self.config.image_patterns)
        except VllmFitError as exc:
            return [], [("-", f"could not be read: {exc}")]
        return found, unread

    async def _judged_as_owner(self, obj: dict[str, Any], namespace: Optional[str], deadline: float
                               ) -> tuple[bool, Optional[str]]:
        """Whether a controller-owned object was judged as its owner: its controller is a kind this
        webhook reviews and creates such objects, exists with the uid named, and its template
        holds the same launches (anyone who may create a Pod may write its ownerReferences)."""
        ref = _controller_ref(obj)
        kind = str(obj.get("kind"))
        if ref is None:
            return False, None
        owner_kind = (owner_group(ref), str(ref.get("kind")))
        label = f"{_trim(str(ref.get('kind')), 40)} {_trim(str(ref.get('name')), 60)}"
        if owner_kind not in REVIEWED_OWNERS.get(kind, frozenset()):
            return False, f"{kind} is controlled by {label}, not a controller this webhook reviews; judged itself"
        if self.cluster is None:
            return False, f"its controller {label} could not be verified; judged itself"
        try:
            owner = await self.cluster.owner(namespace, ref, deadline)
        except Exception as exc:
            return False, f"its controller {label} could not be verified ({type(exc).__name__}); judged itself"
        if owner is None:
            return False, f"its controller {label} does not exist (or has another uid); judged itself"
        if owner_kind not in _OPAQUE_OWNERS:
            mine, _ = await self._in_worker(self._read, obj)
            theirs, _ = await self._in_worker(self._read, owner)
            if not set(_launch_keys(mine)) <= set(_launch_keys(theirs)):
                return False, f"its launch differs from its controller {label}'s template; judged itself"
        return True, f"{kind} of {label} (its controller was judged)"

    def _find_with(self, obj: dict[str, Any], configmaps: Optional[ConfigMaps]) -> list[Any]:
        """The launches as this review reads them (with the ConfigMaps it fetched)."""
        return self._read(obj, configmaps)[0]

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
        return (await self._in_worker(self._find_with, obj, configmaps)) or found, configmaps, problems

    def _decide(self, obj: dict[str, Any], results: list[LaunchResult], mode: str, unchanged: bool,
                duration: float, object_reasons: Sequence[Reason] = (), notes: Sequence[str] = ()) -> Judgement:
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        where = f"{meta.get('namespace') or '-'}/{meta.get('name') or meta.get('generateName') or '?'}"
        errors = [(r.found.container, e) for r in results for e in r.verdict.errors]
        errors += [(None, r) for r in object_reasons if r.severity == "error"]
        verdict = "reject" if errors else ("warn" if any(r.verdict.problems for r in results) or object_reasons
                                           else "fits")
        if all(r.plan is None for r in results) and not errors:
            verdict = "unknown"
        deny = bool(errors) and mode == "enforce" and not unchanged
        message = None
        if deny:
            message = "vllm-fit: " + " | ".join(
                f"{where} container {container}: {_unprefixed(e.message)}" if container else
                f"{where}: {_unprefixed(e.message)}" for container, e in errors)
        warnings: list[str] = []
        if mode != "audit":
            warnings.extend(notes)
            reasons = [*(reason for result in results for reason in result.verdict.reasons), *object_reasons]
            for reason in reasons:
                if reason.severity == "info" or (deny and reason.severity == "error"):
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
