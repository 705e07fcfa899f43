"""Caches, single flight, deadlines and offline mode of the Hub resolver, against the fixture Hub."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from hub_fake import LLAMA, QWEN, fixture_models, hub, make_resolver  # noqa: F401

from vllm_fit.hub import HubModelNotFound, HubOffline, HubTimeout, HubUnavailable


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def test_memory_then_disk_cache_hits(hub, make_resolver):
    first = make_resolver()
    info = first.resolve(QWEN)
    fetched = hub.count("")
    assert first.resolve(QWEN) == info and first.resolve(QWEN.upper()) == info
    assert hub.count("") == fetched and first.stats["memory_hits"] == 2
    second = make_resolver()  # a new process: same cache directory, empty memory
    assert second.resolve(QWEN).params_by_dtype == info.params_by_dtype
    assert second.stats["disk_hits"] == 1 and second.stats["fetches"] == 0
    assert hub.count("") == fetched
    assert second.resolve(QWEN).source.startswith("cache: ")


def test_single_flight(hub, make_resolver):
    hub.faults[LLAMA] = "slow"
    hub.slow_seconds = 0.3
    resolver = make_resolver()
    results, errors = [], []
    start = threading.Barrier(8)

    def review():
        start.wait()
        try:
            results.append(resolver.resolve(LLAMA, timeout=10))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=review) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == [] and len(results) == 8
    assert all(r == results[0] for r in results)
    assert resolver.stats["fetches"] == 1
    assert hub.count(r"^/api/models/") == 1 and hub.count(r"config\.json$") == 1


def test_hanging_hub_answers_within_the_deadline_and_fills_the_cache_later(hub, make_resolver):
    hub.faults[QWEN] = "hang"
    resolver = make_resolver()
    began = time.monotonic()
    with pytest.raises(HubTimeout, match="background"):
        resolver.resolve(QWEN, timeout=0.5)
    assert time.monotonic() - began < 2.0
    began = time.monotonic()
    with pytest.raises(HubTimeout):  # a second review joins the same fetch, and is also bounded
        resolver.resolve(QWEN, timeout=0.3)
    assert time.monotonic() - began < 2.0
    hub.release()  # the Hub answers at last
    assert resolver.wait_idle(10)
    began = time.monotonic()
    info = resolver.resolve(QWEN, timeout=0.5)
    assert time.monotonic() - began < 0.2
    assert info.params_by_dtype == {"BF16": 751_632_384}
    assert resolver.stats["fetches"] == 1 and hub.count(r"^/api/models/") == 1


def test_async_lookup_is_bounded_and_does_not_block_the_loop(hub, make_resolver):
    hub.faults[QWEN] = "hang"
    resolver = make_resolver()

    async def review():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        task = asyncio.create_task(ticker())
        began = time.monotonic()
        with pytest.raises(HubTimeout):
            await resolver.aresolve(QWEN, timeout=0.5)
        elapsed = time.monotonic() - began
        task.cancel()
        return elapsed, ticks

    elapsed, ticks = asyncio.run(review())
    assert elapsed < 2.0 and ticks >= 5  # the loop kept running while the review waited
    hub.release()
    assert resolver.wait_idle(10)

    async def again():
        return await resolver.aresolve(QWEN, timeout=0.5)

    assert asyncio.run(again()).params_by_dtype == {"BF16": 751_632_384}


def test_negative_cache_is_short(hub, make_resolver):
    clock = Clock()
    resolver = make_resolver(negative_ttl=60, transient_ttl=5, clock=clock)
    with pytest.raises(HubModelNotFound):
        resolver.resolve("acme/missing")
    with pytest.raises(HubModelNotFound):
        resolver.resolve("acme/missing")
    assert hub.count("missing") == 1 and resolver.stats["negative_hits"] == 1
    clock.offset += 61
    with pytest.raises(HubModelNotFound):
        resolver.resolve("acme/missing")
    assert hub.count("missing") == 2

    hub.faults[QWEN] = "500"  # transient: remembered for 5 s only
    with pytest.raises(HubUnavailable):
        resolver.resolve(QWEN)
    with pytest.raises(HubUnavailable):
        resolver.resolve(QWEN)
    assert hub.count(r"^/api/models/acme/qwen3-mini") == 1
    clock.offset += 6
    del hub.faults[QWEN]
    assert resolver.resolve(QWEN).params_by_dtype == {"BF16": 751_632_384}


def test_ttl_serves_stale_at_once_and_refreshes_in_the_background(hub, make_resolver):
    clock = Clock()
    resolver = make_resolver(ttl=100, clock=clock)
    info = resolver.resolve(QWEN)
    assert hub.count(r"^/api/models/") == 1
    clock.offset += 50
    resolver.resolve(QWEN)
    assert hub.count(r"^/api/models/") == 1  # still fresh
    clock.offset += 100
    hub.faults[QWEN] = "hang"
    began = time.monotonic()
    assert resolver.resolve(QWEN, timeout=0.5) == info  # stale, served at once
    assert time.monotonic() - began < 0.3 and resolver.stats["stale_served"] == 1
    hub.release()
    assert resolver.wait_idle(10)
    assert hub.count(r"^/api/models/") == 2 and resolver.stats["fetches"] == 2


def test_stale_entry_survives_a_dead_hub(hub, make_resolver):
    resolver = make_resolver(ttl=0.0)
    info = resolver.resolve(LLAMA)
    hub.stop()
    later = make_resolver(ttl=0.0)  # a restarted webhook: only the disk cache, which is stale
    stale = later.resolve(LLAMA, timeout=1)
    assert stale.params_by_dtype == info.params_by_dtype and stale.source.startswith("cache: ")
    assert later.wait_idle(10)
    assert later.stats["failures"] == 1  # the refresh failed ...
    assert later.resolve(LLAMA).params_by_dtype == info.params_by_dtype  # ... and the stale entry is still served


def test_commit_sha_entries_never_expire(hub, make_resolver):
    clock = Clock()
    sha = hub.models[QWEN].sha
    resolver = make_resolver(ttl=1, clock=clock)
    resolver.resolve(QWEN, revision=sha)
    clock.offset += 10 ** 6
    resolver.clear_memory()
    resolver.resolve(QWEN, revision=sha)
    assert resolver.stats["fetches"] == 1 and resolver.stats["disk_hits"] == 1


def test_offline_mode_uses_the_cache_only(hub, make_resolver):
    make_resolver().resolve(QWEN)
    requests = hub.count("")
    offline = make_resolver(offline=True, ttl=0.0)
    assert offline.resolve(QWEN).params_by_dtype == {"BF16": 751_632_384}  # stale, but offline serves it
    with pytest.raises(HubOffline, match="models fetch"):
        offline.resolve(LLAMA)
    assert hub.count("") == requests


def test_offline_mode_from_the_environment(hub, monkeypatch, tmp_path):
    from vllm_fit.hub import HubSettings, default_resolver

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VLLM_FIT_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    assert HubSettings.from_env().offline
    chain = default_resolver()
    with pytest.raises(HubOffline):
        chain.resolve(QWEN)
    assert chain.resolve("Qwen/Qwen3-0.6B").source.startswith("bundled")
    assert hub.requests == []


def test_token_from_a_file(tmp_path):
    from vllm_fit.hub import HubSettings

    token_file = tmp_path / "token"
    token_file.write_text("hf_from_secret\n")
    assert HubSettings.from_env({"VLLM_FIT_HF_TOKEN_FILE": str(token_file), "HF_TOKEN": "hf_env"}).token == "hf_from_secret"
    assert HubSettings.from_env({"HF_TOKEN": "hf_env"}).token == "hf_env"
    settings = HubSettings.from_env({"HF_TOKEN_PATH": str(token_file)})
    assert settings.token == "hf_from_secret" and settings.token_source == "HF_TOKEN_PATH"
    assert "hf_from_secret" not in repr(settings)
