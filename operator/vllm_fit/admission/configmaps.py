"""ConfigMaps a launch reads its values from, fetched from the API server for one review.

The reader (launch/) is pure: it takes `ConfigMaps`. This adapter gets them: one namespaced
`GET /api/v1/namespaces/{ns}/configmaps/{name}` each, only for launches that read one, within
the review's deadline, cached for a short while (the same ConfigMap serves every re-apply, the
validating and the mutating call). A ConfigMap that is missing, forbidden or not answered in
time is left out: its values are then unresolved, never guessed. Secrets are never fetched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Iterable, Optional
from urllib.parse import quote

import aiohttp

from ..launch.find import ConfigMaps
from .kube import KopfApiSession

log = logging.getLogger("vllm_fit.admission")

# (namespace, name, timeout seconds) -> the ConfigMap's data, None when it does not exist.
# Raises on anything else (forbidden, unreachable, timeout).
Fetch = Callable[[str, str, float], Awaitable[Optional[dict[str, str]]]]

_NOT_FOUND = object()


class ConfigMapReader:
    """Cached, single-flight, deadline-bound reads of the ConfigMaps one review needs."""

    def __init__(self, fetch: Fetch, *, ttl_seconds: float = 30.0, max_entries: int = 1024,
                 max_per_review: int = 16, metrics: Optional[Any] = None) -> None:
        self._fetch = fetch
        self.metrics = metrics  # WebhookMetrics: configmap_reads by outcome
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self.max_per_review = max_per_review
        self._cache: "OrderedDict[tuple[str, str], tuple[float, Any]]" = OrderedDict()
        self._inflight: dict[tuple[str, str], asyncio.Future] = {}

    def _cached(self, key: tuple[str, str]) -> Any:
        hit = self._cache.get(key)
        if hit is None:
            return None
        stored_at, value = hit
        if time.monotonic() - stored_at > self.ttl_seconds:
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return value

    def _store(self, key: tuple[str, str], value: Any) -> None:
        self._cache[key] = (time.monotonic(), value)
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)

    async def _one(self, namespace: str, name: str, deadline: float) -> Any:
        key = (namespace, name)
        cached = self._cached(key)
        if cached is not None:
            return cached
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(self._fetch(namespace, name, max(deadline - time.monotonic(), 0.0)))
            self._inflight[key] = future
            future.add_done_callback(lambda f, key=key: self._settle(key, f))
        # Past the deadline the fetch goes on (and fills the cache); this review stops waiting.
        data = await asyncio.wait_for(asyncio.shield(future), timeout=max(deadline - time.monotonic(), 0.0))
        return _NOT_FOUND if data is None else data

    def _settle(self, key: tuple[str, str], future: asyncio.Future) -> None:
        self._inflight.pop(key, None)
        if future.cancelled() or future.exception() is not None:
            return  # errors are not cached: the next review asks again
        data = future.result()
        self._store(key, _NOT_FOUND if data is None else data)

    async def read(self, namespace: Optional[str], names: Iterable[str], deadline: float
                   ) -> tuple[ConfigMaps, list[str]]:
        """The ConfigMaps among `names` that could be read by `deadline` (time.monotonic()), and
        one line per ConfigMap that could not (for the review's warnings)."""
        wanted = list(dict.fromkeys(n for n in names if isinstance(n, str) and n))
        found = ConfigMaps()
        problems: list[str] = []
        if not namespace or not wanted:
            return found, problems
        if len(wanted) > self.max_per_review:
            problems.append(f"only the first {self.max_per_review} of {len(wanted)} ConfigMaps were read")
            wanted = wanted[:self.max_per_review]
        hits = {n for n in wanted if self._cached((namespace, n)) is not None}
        results = await asyncio.gather(*(self._one(namespace, n, deadline) for n in wanted), return_exceptions=True)
        for name, result in zip(wanted, results):
            self._count("cached" if name in hits else "missing" if result is _NOT_FOUND
                        else "timeout" if isinstance(result, asyncio.TimeoutError)
                        else "error" if isinstance(result, BaseException) else "read")
            if result is _NOT_FOUND:
                problems.append(f"ConfigMap {namespace}/{name} does not exist; its values are unresolved")
            elif isinstance(result, asyncio.TimeoutError):
                problems.append(f"ConfigMap {namespace}/{name} not read within the deadline; its values are unresolved")
            elif isinstance(result, BaseException):
                log.warning("configmap read failed: %s/%s: %s", namespace, name, result)
                problems.append(f"ConfigMap {namespace}/{name} could not be read ({_short(result)}); "
                                f"its values are unresolved")
            elif isinstance(result, dict):
                found.add(namespace, name, result)
        return found, problems


    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.configmap_reads.labels(outcome).inc()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:80]


class ConfigMapForbidden(Exception):
    """The webhook's service account may not read ConfigMaps (the chart's rbac.readConfigMaps is off)."""


class ApiConfigMaps:
    """`GET` one ConfigMap with the credentials kopf logged in with (service account or kubeconfig).

    `connection()` returns the current kopf.ConnectionInfo (None before login); the HTTP session is
    made on first use, in the webhook's event loop, and remade when the credentials change.
    """

    def __init__(self, connection: Callable[[], Any]) -> None:
        self._api = KopfApiSession(connection, limit=32)

    async def __call__(self, namespace: str, name: str, timeout: float) -> Optional[dict[str, str]]:
        session, server = self._api.session()
        url = f"{server}/api/v1/namespaces/{quote(namespace, safe='')}/configmaps/{quote(name, safe='')}"
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=max(timeout, 0.001))) as response:
            if response.status == 404:
                return None
            if response.status == 403:
                raise ConfigMapForbidden("forbidden: grant get on configmaps (chart: rbac.readConfigMaps)")
            if response.status != 200:
                raise ConnectionError(f"HTTP {response.status}")
            body = await response.json(content_type=None)
        data = body.get("data") if isinstance(body, dict) else None
        return {str(k): v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}

    async def close(self) -> None:
        await self._api.close()
