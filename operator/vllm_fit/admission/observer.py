"""The observer: vllm-fit checks itself against every vLLM that starts in the cluster (opt-in).

kopf watches Pods (`on.event`). When a vLLM container of a pod becomes Ready, restarts or
terminates, the observer reads its log through `pods/log` (bounded: tail lines and bytes, and a
rate limit), reads it (`logs.read_startup_log`), plans the same launch on the GPU the log names,
and judges the prediction (`logs.observe`). The result goes on the owning workload (annotations
`vllm-fit.io/measured-*`, `prediction-error`), into an Event (`PredictionConfirmed`,
`PredictionDrift`, `AdmittedLaunchFailed`) and into metrics. With calibration on, the measured
overheads are stored in a ConfigMap in the webhook's namespace and used for later launches with
the same key (`logs.calibration`), by this replica at once and by the others on their next read.

Every API call is one of REQUIRED_RBAC; the chart grants exactly these when the feature is on.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import time
from collections import OrderedDict
from typing import Any, Callable, Optional
from urllib.parse import quote, urlencode

import aiohttp
import kopf
from prometheus_client import Counter, Histogram

from ..check import resolve_gpu
from ..errors import VllmFitError
from ..logs import StartupLog, read_startup_log
from ..logs.calibration import CalibrationStore
from ..logs.launch import log_gpu, modelled_version
from ..logs.observe import Observation, observe
from ..logs.profile import measured_profile_entry
from ..memory.plan import plan
from ..memory.result import MemoryPlan
from .kube import KopfApiSession

log = logging.getLogger("vllm_fit.observer")

# (API group, resource, verb) for every call below; charts/vllm-fit/templates/rbac.yaml grants these.
REQUIRED_RBAC: frozenset[tuple[str, str, str]] = frozenset({
    ("", "pods", "list"), ("", "pods", "watch"),  # kopf's watch of Pods
    ("", "pods/log", "get"),  # the container's startup log
    ("", "events", "create"),  # PredictionConfirmed / PredictionDrift / AdmittedLaunchFailed
    ("apps", "replicasets", "get"),  # Pod -> ReplicaSet -> Deployment
    # the owning workload gets the measured annotations (a merge patch of metadata only)
    ("", "pods", "patch"), ("apps", "deployments", "patch"), ("apps", "statefulsets", "patch"),
    ("apps", "daemonsets", "patch"), ("batch", "jobs", "patch"), ("apps", "replicasets", "patch"),
    ("leaderworkerset.x-k8s.io", "leaderworkersets", "patch"),
})
# Namespaced to the webhook's own namespace, and only with calibration on.
CALIBRATION_RBAC: frozenset[tuple[str, str, str]] = frozenset({
    ("", "configmaps", "get"), ("", "configmaps", "create"), ("", "configmaps", "update"),
})

_PLURALS = {
    ("", "Pod"): "pods", ("apps", "ReplicaSet"): "replicasets", ("apps", "Deployment"): "deployments",
    ("apps", "StatefulSet"): "statefulsets", ("apps", "DaemonSet"): "daemonsets", ("batch", "Job"): "jobs",
    ("leaderworkerset.x-k8s.io", "LeaderWorkerSet"): "leaderworkersets",
}
VERDICT_ANNOTATION = "vllm-fit.io/verdict"
_SEEN_LIMIT = 10_000
_CALL_TIMEOUT_SECONDS = 10.0


class ObserverMetrics:
    def __init__(self, registry: Any) -> None:
        self.observations = Counter(
            "vllm_fit_observations_total", "vLLM startups read by the observer, by outcome", ["reason"],
            registry=registry)
        self.kv_error = Histogram(
            "vllm_fit_prediction_kv_error_percent", "Predicted minus measured KV cache, in % of measured",
            buckets=(-50, -20, -10, -5, -3, -1, 0, 1, 3, 5, 10, 20, 50), registry=registry)
        self.log_reads = Counter(
            "vllm_fit_observer_log_reads_total", "pods/log reads by outcome", ["outcome"], registry=registry)


class TokenBucket:
    """At most `per_minute` log reads a minute, in bursts of up to `burst`."""

    def __init__(self, per_minute: float, burst: int = 5) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(max(burst, 1))
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


async def _read_upto(stream: aiohttp.StreamReader, limit_bytes: int) -> bytes:
    """The body up to its end or `limit_bytes` (StreamReader.read(n) returns one chunk, not n bytes)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit_bytes:
        chunk = await stream.read(min(1 << 16, limit_bytes - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class ObserverApi:
    """The observer's API calls, over kopf's login (service account in a pod, else KUBECONFIG)."""

    def __init__(self, connection: Callable[[], Optional[kopf.ConnectionInfo]]) -> None:
        self._api = KopfApiSession(connection, limit=8,
                                   timeout=aiohttp.ClientTimeout(total=_CALL_TIMEOUT_SECONDS))

    async def _call(self, method: str, path: str, *, body: Any = None, content_type: str = "application/json",
                    text: bool = False, limit_bytes: int = 1 << 20) -> tuple[int, Any]:
        session, server = self._api.session()
        data = None if body is None else json.dumps(body)
        async with session.request(method, server + path, data=data,
                                   headers={"Content-Type": content_type} if data else None) as response:
            raw = await _read_upto(response.content, limit_bytes)
            if text:
                return response.status, raw.decode("utf-8", errors="replace")
            try:
                return response.status, json.loads(raw or b"null")
            except ValueError:
                return response.status, None

    async def container_log(self, namespace: str, pod: str, container: str, *, previous: bool,
                            tail_lines: int, limit_bytes: int) -> str:
        query = {"container": container, "tailLines": str(tail_lines), "limitBytes": str(limit_bytes)}
        if previous:
            query["previous"] = "true"
        path = f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/log?{urlencode(query)}"
        status, text = await self._call("GET", path, text=True, limit_bytes=limit_bytes + 4096)
        if status != 200:
            raise VllmFitError(f"pods/log of {namespace}/{pod} [{container}]: HTTP {status}: {str(text)[:200]}")
        return text

    @staticmethod
    def _object_path(namespace: str, api_version: str, kind: str, name: str) -> Optional[str]:
        group = api_version.split("/", 1)[0] if "/" in api_version else ""
        plural = _PLURALS.get((group, kind))
        if plural is None:
            return None
        base = f"/apis/{api_version}" if group else f"/api/{api_version or 'v1'}"
        return f"{base}/namespaces/{quote(namespace)}/{plural}/{quote(name)}"

    async def owning_workload(self, pod: dict[str, Any]) -> dict[str, Any]:
        """The workload a person wrote: Pod -> its controller -> (a ReplicaSet's) Deployment.
        Returns {"apiVersion", "kind", "name", "namespace", "uid", "annotations"}."""
        meta = pod.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        current = {"apiVersion": "v1", "kind": "Pod", "name": meta.get("name"), "namespace": namespace,
                   "uid": meta.get("uid"), "annotations": meta.get("annotations") or {}}
        refs = meta.get("ownerReferences") or []
        for _ in range(2):
            ref = next((r for r in refs if isinstance(r, dict) and r.get("controller")), None)
            if ref is None or (ref.get("apiVersion"), ref.get("kind")) not in (
                    ("apps/v1", "ReplicaSet"), ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"),
                    ("apps/v1", "DaemonSet"), ("batch/v1", "Job"), ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")):
                return current
            candidate = {"apiVersion": ref["apiVersion"], "kind": ref["kind"], "name": ref.get("name"),
                         "namespace": namespace, "uid": ref.get("uid"), "annotations": {}}
            if ref["kind"] != "ReplicaSet":
                return candidate
            path = self._object_path(namespace, "apps/v1", "ReplicaSet", str(ref.get("name")))
            status, rs = await self._call("GET", path or "")
            if status != 200 or not isinstance(rs, dict):
                return candidate
            rs_meta = rs.get("metadata") or {}
            candidate["annotations"] = rs_meta.get("annotations") or {}
            current, refs = candidate, rs_meta.get("ownerReferences") or []
        return current

    async def annotate(self, workload: dict[str, Any], annotations: dict[str, str]) -> None:
        path = self._object_path(workload["namespace"], workload["apiVersion"], workload["kind"], workload["name"])
        if path is None or not annotations:
            return
        status, body = await self._call("PATCH", path, body={"metadata": {"annotations": annotations}},
                                        content_type="application/merge-patch+json")
        if status != 200:
            raise VllmFitError(f"annotating {workload['kind']} {workload['namespace']}/{workload['name']}: "
                               f"HTTP {status}")
        if isinstance(body, dict):
            workload["annotations"] = (body.get("metadata") or {}).get("annotations") or {}

    async def event(self, workload: dict[str, Any], observation: Observation) -> None:
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{workload['name']}.vllm-fit-", "namespace": workload["namespace"]},
            "involvedObject": {"apiVersion": workload["apiVersion"], "kind": workload["kind"],
                               "name": workload["name"], "namespace": workload["namespace"], "uid": workload["uid"]},
            "reason": observation.reason, "type": observation.event_type, "message": observation.message[:1024],
            "source": {"component": "vllm-fit"}, "reportingComponent": "vllm-fit",
            "reportingInstance": "vllm-fit-observer", "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        status, _ = await self._call("POST", f"/api/v1/namespaces/{quote(workload['namespace'])}/events", body=event)
        if status not in (200, 201):
            raise VllmFitError(f"posting the {observation.reason} Event: HTTP {status}")

    async def read_configmap(self, namespace: str, name: str) -> Optional[dict[str, Any]]:
        status, body = await self._call("GET", f"/api/v1/namespaces/{quote(namespace)}/configmaps/{quote(name)}")
        if status == 404:
            return None
        if status != 200 or not isinstance(body, dict):
            raise VllmFitError(f"reading ConfigMap {namespace}/{name}: HTTP {status}")
        return body

    async def write_configmap(self, namespace: str, name: str, data: dict[str, str],
                              resource_version: Optional[str]) -> bool:
        """Create, or update at `resource_version`. False on a conflict (someone wrote first)."""
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": name, "namespace": namespace,
                                             "labels": {"app.kubernetes.io/managed-by": "vllm-fit"}},
                                "data": data}
        base = f"/api/v1/namespaces/{quote(namespace)}/configmaps"
        if resource_version is None:
            status, _ = await self._call("POST", base, body=body)
        else:
            body["metadata"]["resourceVersion"] = resource_version
            status, _ = await self._call("PUT", f"{base}/{quote(name)}", body=body)
        if status == 409:
            return False
        if status not in (200, 201):
            raise VllmFitError(f"writing ConfigMap {namespace}/{name}: HTTP {status}")
        return True

    async def close(self) -> None:
        await self._api.close()


def _container_phase(status: dict[str, Any]) -> Optional[tuple[str, bool]]:
    """(what happened, read the previous instance's log?) for a container status worth reading."""
    state = status.get("state") or {}
    last = status.get("lastState") or {}
    if "terminated" in last and int(status.get("restartCount") or 0) > 0:
        return "restarted", True
    if "terminated" in state:
        return "terminated", False
    if status.get("ready") and "running" in state:
        return "ready", False
    return None


class Observer:
    def __init__(self, config: Any, reviewer: Any, api: ObserverApi, metrics: ObserverMetrics,
                 own_namespace: str) -> None:
        self.config = config
        self.reviewer = reviewer
        self.api = api
        self.metrics = metrics
        self.own_namespace = own_namespace
        self.bucket = TokenBucket(config.observer_log_reads_per_minute)
        self._seen: "OrderedDict[tuple, None]" = OrderedDict()
        self._store_lock = asyncio.Lock()
        self.store = CalibrationStore()

    def interesting(self, body: Any, **_: Any) -> bool:
        """kopf's `when=`: a pod that may hold a vLLM container with something to read."""
        statuses = ((body.get("status") or {}).get("containerStatuses")) or []
        return bool(statuses) and self.reviewer.needs_review(dict(body))

    async def on_pod(self, body: Any) -> None:
        pod = dict(body)
        meta = pod.get("metadata") or {}
        try:
            found = self.reviewer.find(pod)
        except VllmFitError:
            return
        statuses = {s.get("name"): s for s in ((pod.get("status") or {}).get("containerStatuses") or [])
                    if isinstance(s, dict)}
        for launch_found in found:
            container = launch_found.container
            status = statuses.get(container)
            phase = _container_phase(status) if status else None
            if phase is None:
                continue
            what, previous = phase
            key = (meta.get("uid"), container, int(status.get("restartCount") or 0), what)
            if key in self._seen:
                continue
            if not self.bucket.take():
                self.metrics.log_reads.labels("rate-limited").inc()
                continue  # not marked seen: the pod's next status change retries
            self._seen[key] = None
            while len(self._seen) > _SEEN_LIMIT:
                self._seen.popitem(last=False)
            try:
                await self._observe_container(pod, launch_found, previous)
            except (VllmFitError, aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
                self.metrics.log_reads.labels("error").inc()
                log.warning(json.dumps({"event": "observe-failed", "pod": f"{meta.get('namespace')}/{meta.get('name')}",
                                        "container": container, "error": str(exc)[:300]}))

    async def _observe_container(self, pod: dict[str, Any], found: Any, previous: bool) -> None:
        meta = pod.get("metadata") or {}
        namespace, name, container = meta.get("namespace") or "default", meta.get("name"), found.container
        text = await self.api.container_log(namespace, name, container, previous=previous,
                                            tail_lines=self.config.observer_log_tail_lines,
                                            limit_bytes=self.config.observer_log_limit_bytes)
        self.metrics.log_reads.labels("read").inc()
        startup = read_startup_log(text)
        source = f"pod {namespace}/{name} container {container}"
        result, why = await self._plan(found, startup)
        workload = await self.api.owning_workload(pod)
        verdict = (workload.get("annotations") or {}).get(VERDICT_ANNOTATION)
        admitted = verdict in ("fits", "warn") if verdict else (result.verdict.fits if result else False)
        observation = observe(startup, result, admitted=admitted, source=source,
                              drift_threshold_pct=self.config.observer_drift_threshold_pct, unplanned_why=why)
        await self.api.annotate(workload, observation.annotations)
        await self.api.event(workload, observation)
        self.metrics.observations.labels(observation.reason).inc()
        if observation.kv_error_pct is not None:
            self.metrics.kv_error.observe(observation.kv_error_pct)
        log.info(json.dumps({"event": "observed", "workload": f"{workload['namespace']}/{workload['kind']}/"
                             f"{workload['name']}", "source": source, "reason": observation.reason,
                             "kv_error_pct": observation.kv_error_pct, "failure": observation.failure_code}))
        if self.config.calibration_enabled and result is not None and startup.failure is None:
            await self._calibrate(startup, result, source, workload)

    async def _plan(self, found: Any, startup: StartupLog) -> tuple[Optional[MemoryPlan], str]:
        launch = found.launch
        if not launch.model or "--model" in launch.unresolved:
            return None, "the launch's model is not known"
        # The GPU the manifest pins (as admission planned it, so calibration keys match), else
        # the one the log names or whose total it prints, else the configured default.
        gpu = (resolve_gpu(found.gpus, self.reviewer.catalog) or log_gpu(startup, self.reviewer.catalog)
               or self.reviewer.default_gpu)
        if gpu is None:
            return None, "neither the log nor the configuration says which GPU"
        version = modelled_version(startup.vllm_version)
        if version:
            launch = launch.model_copy(update={"vllm_version": version, "vllm_version_source": "log"})
        try:
            info = await self.reviewer.model_info(launch.model, launch.revision,
                                                  time.monotonic() + self.config.deadline_seconds * 5)
            return plan(info, launch, gpu, self.reviewer.profiles, gpus_given=None, suggest=False,
                        default_version=self.config.default_vllm_version), ""
        except (VllmFitError, asyncio.TimeoutError) as exc:
            return None, str(exc) or type(exc).__name__

    async def _calibrate(self, startup: StartupLog, result: MemoryPlan, source: str, workload: dict[str, Any]) -> None:
        try:
            entry = measured_profile_entry(startup, result, source=f"measured in this cluster: {source}")
        except VllmFitError:
            return  # the log prints no overheads (vLLM below 0.9 at INFO level)
        name = self.config.calibration_configmap
        workload_ref = f"{workload['namespace']}/{workload['kind']}/{workload['name']}"
        async with self._store_lock:
            for _ in range(5):  # optimistic concurrency with the other replicas
                current = await self.api.read_configmap(self.own_namespace, name)
                store = (CalibrationStore.from_configmap_data((current or {}).get("data") or {})
                         if current else CalibrationStore())
                store = store.record(entry, workload_ref, self.config.calibration_max_entries)
                version = ((current or {}).get("metadata") or {}).get("resourceVersion")
                if await self.api.write_configmap(self.own_namespace, name, store.to_configmap_data(), version):
                    self._use(store)
                    return
            log.warning(json.dumps({"event": "calibration-conflict", "configmap": f"{self.own_namespace}/{name}"}))

    def _use(self, store: CalibrationStore) -> None:
        if store != self.store:
            self.store = store
            self.reviewer.use_measured(store.entries)

    async def refresh(self) -> None:
        """Pick up what other replicas stored (or a person edited)."""
        current = await self.api.read_configmap(self.own_namespace, self.config.calibration_configmap)
        if current is not None:
            self._use(CalibrationStore.from_configmap_data(current.get("data") or {}))


def register_observer(registry: kopf.OperatorRegistry, observer: Observer) -> None:
    @kopf.on.event("", "v1", "pods", registry=registry, when=observer.interesting)
    async def _pod_changed(body: Any, **_: Any) -> None:
        await observer.on_pod(body)

    if observer.config.calibration_enabled:
        tasks: list[asyncio.Task] = []

        async def refresh_forever() -> None:
            while True:
                try:
                    await observer.refresh()
                except (VllmFitError, aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
                    log.warning(json.dumps({"event": "calibration-refresh-failed", "error": str(exc)[:300]}))
                await asyncio.sleep(observer.config.calibration_refresh_seconds)

        @kopf.on.startup(registry=registry)
        async def _start_refresh(**_: Any) -> None:
            tasks.append(asyncio.get_running_loop().create_task(refresh_forever()))

        @kopf.on.cleanup(registry=registry)
        async def _stop_refresh(**_: Any) -> None:
            for task in tasks:
                task.cancel()
