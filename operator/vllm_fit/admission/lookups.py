"""The few API reads a review may make: a namespace's labels and a controller's existence.

With kopf's own login (`kopf.ConnectionInfo`: the pod's service account, else KUBECONFIG),
over one aiohttp session. Every call is bounded by the review's deadline and
cached briefly, so the API server sees about one GET per owner per minute however many Pods a
ReplicaSet makes.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any, Callable, Optional
from urllib.parse import quote

from .kube import KopfApiSession

# (group, kind) -> (api version path, plural) for the kinds a review may look up as owners.
OWNER_PATHS: dict[tuple[str, str], str] = {
    ("", "Pod"): "pods",
    ("", "ReplicationController"): "replicationcontrollers",
    ("apps", "ReplicaSet"): "replicasets",
    ("apps", "Deployment"): "deployments",
    ("apps", "StatefulSet"): "statefulsets",
    ("apps", "DaemonSet"): "daemonsets",
    ("batch", "Job"): "jobs",
    ("batch", "CronJob"): "cronjobs",
    ("leaderworkerset.x-k8s.io", "LeaderWorkerSet"): "leaderworkersets",
    ("serving.kserve.io", "InferenceService"): "inferenceservices",
    ("serving.kserve.io", "LLMInferenceService"): "llminferenceservices",
}
_FOUND_TTL_SECONDS = 60.0
_CACHE_ENTRIES = 2048


class _TtlCache:
    def __init__(self) -> None:
        self._entries: "OrderedDict[Any, tuple[float, Any]]" = OrderedDict()

    def get(self, key: Any) -> tuple[bool, Any]:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, key: Any, value: Any, ttl: float) -> None:
        self._entries[key] = (time.monotonic() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > _CACHE_ENTRIES:
            self._entries.popitem(last=False)


class KubeLookup:
    """`review.ClusterLookup` over the Kubernetes API, with the credentials kopf logged in with
    (`connection()` returns the current kopf.ConnectionInfo; None before login)."""

    def __init__(self, connection: Callable[[], Any]) -> None:
        self._api = KopfApiSession(connection, limit=16)
        self._cache = _TtlCache()
        self._inflight: dict[Any, asyncio.Future] = {}

    async def _get(self, path: str, deadline: float) -> Optional[dict[str, Any]]:
        """GET one object; None on 404; raises on anything else or past the deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise asyncio.TimeoutError
        session, server = self._api.session()
        async with asyncio.timeout(remaining):
            async with session.get(server + path) as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    raise RuntimeError(f"GET {path}: HTTP {response.status}")
                data = await response.json(content_type=None)
        return data if isinstance(data, dict) else None

    async def _cached(self, key: Any, path: str, deadline: float) -> Optional[dict[str, Any]]:
        hit, value = self._cache.get(key)
        if hit:
            return value
        pending = self._inflight.get(key)
        if pending is None:  # one GET per key however many reviews ask at once
            pending = asyncio.ensure_future(self._get(path, deadline + 5.0))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key, None))
        value = await asyncio.wait_for(asyncio.shield(pending), timeout=max(deadline - time.monotonic(), 0.0))
        if value is not None:  # "missing" is never cached: an owner created a moment ago must count
            self._cache.put(key, value, _FOUND_TTL_SECONDS)
        return value

    async def namespace_labels(self, namespace: str, deadline: float) -> Optional[dict[str, str]]:
        found = await self._cached(("ns", namespace), f"/api/v1/namespaces/{quote(namespace, safe='')}", deadline)
        labels = ((found or {}).get("metadata") or {}).get("labels")
        return labels if isinstance(labels, dict) else {}

    async def owner(self, namespace: Optional[str], ref: dict[str, Any], deadline: float) -> Optional[dict[str, Any]]:
        api_version = str(ref.get("apiVersion") or "")
        group = api_version.split("/", 1)[0] if "/" in api_version else ""
        plural = OWNER_PATHS.get((group, str(ref.get("kind"))))
        name, uid = ref.get("name"), ref.get("uid")
        if plural is None or not namespace or not isinstance(name, str) or not name or not isinstance(uid, str):
            return None
        base = f"/apis/{api_version}" if group else f"/api/{api_version or 'v1'}"
        path = f"{base}/namespaces/{quote(namespace, safe='')}/{plural}/{quote(name, safe='')}"
        found = await self._cached(("owner", uid, path), path, deadline)
        if found is None or (found.get("metadata") or {}).get("uid") != uid:
            return None
        return found

    async def close(self) -> None:
        await self._api.close()
