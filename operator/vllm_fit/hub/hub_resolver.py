"""Model metadata from the Hub, behind caches, with a deadline per lookup.

    resolver = HubResolver()                       # settings from the environment
    info = resolver.resolve("org/model", revision=None, timeout=2.0)     # blocking, bounded
    info = await resolver.aresolve("org/model", timeout=2.0)             # the same, for asyncio

Order of a lookup: in-memory LRU (fresh) -> remembered failure (negative cache) -> disk cache
(fresh; or any age when offline) -> the Hub. One fetch per (model, revision) runs at a time:
concurrent lookups wait for the same one. The fetch runs in a daemon thread; a caller whose
deadline passes gets HubTimeout and stops waiting, while the fetch goes on and fills both
caches for the next lookup. A stale cached entry is served at once while a refresh runs in
the background (if the refresh fails, the stale entry keeps being served).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..memory.model_info import ModelInfo
from .cache import DiskCache, HubRecord, cache_key
from .errors import BUNDLE_HINT, HubError, HubModelNotFound, HubOffline, HubTimeout, HubUnavailable
from .settings import HubSettings

log = logging.getLogger("vllm_fit.hub")

Fetcher = Callable[[HubSettings, str, Optional[str]], HubRecord]


def _default_fetcher(settings: HubSettings, model_id: str, revision: Optional[str]) -> HubRecord:
    from .hub_client import fetch_from_hub  # imports huggingface_hub only when the Hub is really asked

    return fetch_from_hub(settings, model_id, revision)


def looks_like_hub_id(model_id: str) -> bool:
    text = model_id.strip()
    if not text or text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1 or "://" in text:
        return False
    return all(part and not part.startswith((".", "-")) for part in text.split("/"))


@dataclass
class _Failure:
    error: HubError
    expires: float


def _done(value: Optional[ModelInfo] = None, error: Optional[BaseException] = None) -> concurrent.futures.Future:
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_running_or_notify_cancel()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
    return future


class HubResolver:
    """A ModelResolver over the Hub with an in-memory LRU and an on-disk cache (see the module doc)."""

    def __init__(self, settings: Optional[HubSettings] = None, *, fetcher: Optional[Fetcher] = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings or HubSettings.from_env()
        self.disk = DiskCache(self.settings.cache_dir)
        self._fetcher = fetcher or _default_fetcher
        self._clock = clock
        self._lock = threading.Lock()
        self._memory: "OrderedDict[tuple[str, str], HubRecord]" = OrderedDict()
        self._failures: dict[tuple[str, str], _Failure] = {}
        self._inflight: dict[tuple[str, str], concurrent.futures.Future] = {}
        self.stats: Counter = Counter()  # memory_hits, disk_hits, negative_hits, stale_served, fetches, ...

    # -- the lookup ------------------------------------------------------------------------
    def lookup(self, model_id: str, revision: Optional[str] = None) -> concurrent.futures.Future:
        """A future of the ModelInfo; already done for cache hits. Never blocks on the network."""
        if not looks_like_hub_id(model_id):
            return _done(error=HubModelNotFound(f"{model_id!r} is not a Hugging Face model id (org/name)"))
        key = cache_key(model_id, revision)
        now = self._clock()
        stale: Optional[HubRecord] = None
        with self._lock:
            record = self._memory.get(key)
            if record is not None:
                if record.fresh(self._ttl(record), now) or self.settings.offline:
                    self._memory.move_to_end(key)
                    self.stats["memory_hits"] += 1
                    return _done(record.info)
                stale = record
            failure = self._failures.get(key)
            if failure is not None:
                if failure.expires > now:
                    if stale is not None:  # the refresh failed a moment ago: keep serving what we had
                        self.stats["stale_served"] += 1
                        return _done(stale.info)
                    self.stats["negative_hits"] += 1
                    return _done(error=failure.error)
                del self._failures[key]
            if stale is None and key in self._inflight:
                self.stats["joined"] += 1
                return self._inflight[key]
        if stale is None:
            disk = self.disk.load(model_id, revision)
            if disk is not None:
                with self._lock:
                    self._remember(key, disk)
                if disk.fresh(self.settings.ttl, now) or self.settings.offline:
                    self.stats["disk_hits"] += 1
                    return _done(disk.info)
                stale = disk
        if self.settings.offline:
            self.stats["offline_misses"] += 1
            return _done(error=HubOffline(
                f"{model_id!r} (revision {key[1]}) is neither bundled nor cached, and the Hub is off "
                f"(HF_HUB_OFFLINE / VLLM_FIT_HUB=0): {BUNDLE_HINT}"))
        future = self._start(key, model_id, revision)
        if stale is not None:
            self.stats["stale_served"] += 1
            return _done(stale.info)
        return future

    def resolve(self, model_id: str, revision: Optional[str] = None, timeout: Optional[float] = None) -> ModelInfo:
        """Blocking lookup that returns or raises within `timeout` seconds (default settings.timeout)."""
        deadline = self.settings.timeout if timeout is None else timeout
        future = self.lookup(model_id, revision)
        try:
            return future.result(timeout=max(0.0, deadline))
        except concurrent.futures.TimeoutError:
            if future.done():  # the fetch itself raised a TimeoutError (it should not)
                raise
            self.stats["timeouts"] += 1
            raise self._timeout(model_id, revision, deadline) from None

    async def aresolve(self, model_id: str, revision: Optional[str] = None, timeout: Optional[float] = None) -> ModelInfo:
        """resolve() for asyncio: waits without blocking the loop; the fetch survives a cancelled waiter."""
        deadline = self.settings.timeout if timeout is None else timeout
        future = self.lookup(model_id, revision)
        if future.done():
            return future.result()
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), max(0.0, deadline))
        except asyncio.TimeoutError:
            self.stats["timeouts"] += 1
            raise self._timeout(model_id, revision, deadline) from None

    def refresh(self, model_id: str, revision: Optional[str] = None, timeout: Optional[float] = None) -> HubRecord:
        """Ask the Hub now, whatever the caches hold (`vllm-fit models fetch`); fills both caches."""
        if not looks_like_hub_id(model_id):
            raise HubModelNotFound(f"{model_id!r} is not a Hugging Face model id (org/name)")
        if self.settings.offline:
            raise HubOffline(f"{model_id!r}: the Hub is off (HF_HUB_OFFLINE / VLLM_FIT_HUB=0)")
        key = cache_key(model_id, revision)
        with self._lock:
            self._failures.pop(key, None)
        future = self._start(key, model_id, revision)
        deadline = self.settings.timeout if timeout is None else timeout
        try:
            future.result(timeout=max(0.0, deadline))
        except concurrent.futures.TimeoutError:
            raise self._timeout(model_id, revision, deadline) from None
        with self._lock:
            record = self._memory.get(key)
        if record is None:  # pragma: no cover - evicted in between
            raise HubUnavailable(f"{model_id!r}: the fetched entry was evicted before it could be read")
        return record

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait for background fetches to finish (tests, `models fetch`). True when none is left."""
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                pending = list(self._inflight.values())
            if not pending:
                return True
            remaining = end - time.monotonic()
            if remaining <= 0:
                return False
            concurrent.futures.wait(pending, timeout=remaining)

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()
            self._failures.clear()

    # -- internals -------------------------------------------------------------------------
    def _ttl(self, record: HubRecord) -> float:
        return self.settings.ttl if record.durable else self.settings.transient_ttl

    def _timeout(self, model_id: str, revision: Optional[str], deadline: float) -> HubTimeout:
        return HubTimeout(f"{model_id!r} (revision {revision or 'main'}): the Hub did not answer within "
                          f"{deadline:g} s; the lookup goes on in the background and fills the cache for the next try")

    def _remember(self, key: tuple[str, str], record: HubRecord) -> None:
        self._memory[key] = record
        self._memory.move_to_end(key)
        while len(self._memory) > max(1, self.settings.memory_entries):
            self._memory.popitem(last=False)

    def _bound_failures(self) -> None:
        """Remembered failures are few and short-lived, but a flood of bogus model names must not
        grow them without bound: drop the expired, then the oldest, past memory_entries."""
        limit = max(1, self.settings.memory_entries)
        if len(self._failures) <= limit:
            return
        now = self._clock()
        for stale_key in [k for k, f in self._failures.items() if f.expires <= now]:
            del self._failures[stale_key]
        while len(self._failures) > limit:
            del self._failures[next(iter(self._failures))]

    def _start(self, key: tuple[str, str], model_id: str, revision: Optional[str]) -> concurrent.futures.Future:
        with self._lock:
            existing = self._inflight.get(key)
            if existing is not None:
                self.stats["joined"] += 1
                return existing
            if len(self._inflight) >= self.settings.max_inflight:
                return _done(error=HubUnavailable(
                    f"{model_id!r}: {len(self._inflight)} Hub lookups are already running; try again shortly"))
            future: concurrent.futures.Future = concurrent.futures.Future()
            future.set_running_or_notify_cancel()  # nobody can cancel it under the other waiters
            self._inflight[key] = future
            self.stats["fetches"] += 1
        thread = threading.Thread(target=self._run, args=(key, model_id, revision, future), daemon=True,
                                  name=f"vllm-fit-hub:{model_id}@{key[1]}")
        thread.start()
        return future

    def _run(self, key: tuple[str, str], model_id: str, revision: Optional[str],
             future: concurrent.futures.Future) -> None:
        record: Optional[HubRecord] = None
        error: Optional[BaseException] = None
        try:
            record = self._fetcher(self.settings, model_id, revision)
        except HubError as exc:
            error = exc
        except BaseException as exc:  # noqa: BLE001 - a bug must not leave waiters hanging
            log.exception("Hub lookup of %s failed unexpectedly", model_id)
            error = HubError(f"{model_id!r}: unexpected failure of the Hub lookup ({type(exc).__name__}: {exc})")
        if record is not None and record.durable:
            try:
                self.disk.store(record)
            except OSError as exc:
                log.warning("cannot write the model cache in %s: %s", self.disk.directory, exc)
        with self._lock:
            if record is not None:
                self._remember(key, record)
                self._failures.pop(key, None)
            elif isinstance(error, HubError):
                ttl = self.settings.transient_ttl if error.transient else self.settings.negative_ttl
                if ttl > 0:
                    self._failures[key] = _Failure(error, self._clock() + ttl)
                    self._bound_failures()
            self._inflight.pop(key, None)
        if record is not None:
            future.set_result(record.info)
        else:
            self.stats["failures"] += 1
            future.set_exception(error)

    def cached(self) -> list[HubRecord]:
        return list(self.disk.entries())

    @property
    def cache_dir(self) -> Path:
        return self.disk.directory
