"""Issue 13's measurements: the real webhook under hostile connections, huge objects and fuzz.

    .venv/bin/python bench/hardening.py [--fuzz 10000] [--output bench/RESULTS.md]

Starts the real server (`vllm-fit serve`, real TLS) with the chart's default configuration
(connection and budget limits are the server's defaults, which the chart keeps) against a
discovery-only Kubernetes API (kmock), then:

1. uploads: 100 uploads declaring 8 MiB that stop after 7 MiB (25 at a time), and 200 that
   declare 16 MiB and stop after 8 MiB (the probe's), sampling the server's RSS every 50 ms;
   the chart's memory limit is 512 MiB.
2. slow clients: 100 slowloris connections (one header byte a second) and 100 that send headers
   and no body, held open while a normal review is timed every 200 ms; how long until each is
   closed.
3. huge objects: a 20,000-container review's latency with /healthz probed every 50 ms, and the
   probe's dry-run loop (3 clients sending 8,000-container reviews) while a bad Deployment is
   reviewed six times.
4. fuzz: N hostile AdmissionReviews (deep nesting, wide lists, odd Unicode and lone
   surrogates, long strings, wrong types), 8 at a time: how many answers say "internal error"
   or "not judged", and how many were HTTP errors.

Results go to the "Hardening" section of --output (replaced in place).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import http.client
import json
import os
import platform
import random
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import aiohttp  # noqa: E402

from test_webhook_bypass import admission, pod, pod_spec, workload  # noqa: E402
from webhook_harness import DiscoveryApi, Webhook  # noqa: E402

CHART_MEMORY_LIMIT = 512 * 1024 * 1024


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(self.every)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(2)


def tls(hook: Webhook, timeout: float = 30.0) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", hook.port), timeout=timeout)
    return hook.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1")


def review_latency(hook: Webhook, body: dict) -> tuple[float, dict]:
    started = time.monotonic()
    status, data = hook.post("/validate", body, timeout=30)
    return time.monotonic() - started, data if status == 200 else {"status": status, "data": data}


# ---------------------------------------------------------------- 1. uploads

def aborted_upload(hook: Webhook, declared: int, sent: int) -> None:
    try:
        sock = tls(hook)
        sock.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {declared}\r\n\r\n".encode())
        chunk = b"[" * (1 << 20)
        left = sent
        while left > 0:
            sock.sendall(chunk[:min(left, len(chunk))])
            left -= len(chunk)
        sock.close()
    except OSError:
        pass  # refused or cut off by the server: also an outcome


def uploads(hook: Webhook, count: int, declared: int, sent: int, parallel: int) -> dict:
    before = rss(hook.process.pid)
    with RssSampler(hook.process.pid) as sampler:
        for start in range(0, count, parallel):
            threads = [threading.Thread(target=aborted_upload, args=(hook, declared, sent))
                       for _ in range(min(parallel, count - start))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        time.sleep(2.0)
    after = rss(hook.process.pid)
    latency, _ = review_latency(hook, admission(pod()))
    return {"count": count, "declared_mib": declared / 2**20, "sent_mib": sent / 2**20, "parallel": parallel,
            "rss_before_mib": before / 2**20, "rss_peak_mib": sampler.peak / 2**20, "rss_after_mib": after / 2**20,
            "review_after_s": latency}


# ---------------------------------------------------------------- 2. slow clients

def slow_clients(hook: Webhook, slowloris: int, header_only: int) -> dict:
    closed: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()

    def hold(kind: str) -> None:
        started = time.monotonic()
        try:
            sock = tls(hook, timeout=120)
            if kind == "header-only":
                sock.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100000\r\n\r\n")
                sock.settimeout(120)
                while sock.recv(65536):
                    pass
            else:
                sock.settimeout(1.0)
                for byte in b"POST /validate HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
                    if stop.is_set():
                        return
                    sock.send(bytes([byte]))
                    try:
                        if sock.recv(65536) == b"":
                            break
                    except socket.timeout:
                        pass
        except OSError:
            pass
        with lock:
            closed.append(time.monotonic() - started)

    threads = [threading.Thread(target=hold, args=("slowloris",), daemon=True) for _ in range(slowloris)]
    threads += [threading.Thread(target=hold, args=("header-only",), daemon=True) for _ in range(header_only)]
    # The API server keeps its connections to a webhook alive: one such connection, opened before
    # the attack, and a fresh connection (a new TLS handshake) per review, timed side by side.
    kept = http.client.HTTPSConnection("127.0.0.1", hook.port, context=hook.ssl_context(), timeout=30)
    body = json.dumps(admission(pod())).encode()

    def kept_review() -> float:
        started = time.monotonic()
        kept.request("POST", "/validate", body=body, headers={"Content-Type": "application/json"})
        kept.getresponse().read()
        return time.monotonic() - started

    kept_review()
    for t in threads:
        t.start()
    latencies, kept_latencies = [], []
    deadline = time.monotonic() + 70
    while time.monotonic() < deadline and len(closed) < len(threads):
        latencies.append(review_latency(hook, admission(pod()))[0])
        kept_latencies.append(kept_review())
        time.sleep(0.2)
    stop.set()
    kept.close()
    return {"slowloris": slowloris, "header_only": header_only, "closed": len(closed),
            "closed_max_s": max(closed) if closed else None,
            "review_p50_s": statistics.median(latencies), "review_max_s": max(latencies), "reviews": len(latencies),
            "kept_p50_s": statistics.median(kept_latencies), "kept_max_s": max(kept_latencies)}


# ---------------------------------------------------------------- 3. huge objects

def many_containers(count: int) -> dict:
    spec = pod_spec()
    spec["containers"] += [{"name": f"c{i}", "image": "busybox", "args": ["--port", str(i)]} for i in range(count)]
    return admission(pod(spec=spec))


def with_health(hook: Webhook, action: Callable[[], Any]) -> tuple[Any, list[float]]:
    health: list[float] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            started = time.monotonic()
            try:
                hook.health("/healthz")
            except OSError:
                pass
            health.append(time.monotonic() - started)
            time.sleep(0.05)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        return action(), health
    finally:
        done.set()
        prober.join(5)


def huge(hook: Webhook) -> dict:
    body = many_containers(20_000)
    size = len(json.dumps(body))
    (latency, data), health = with_health(hook, lambda: review_latency(hook, body))
    response = data.get("response", {})
    big = many_containers(8_000)
    bad = admission(workload("Deployment", name="real-bad"))
    stop = threading.Event()
    flood_latencies: list[float] = []

    def flood() -> None:
        while not stop.is_set():
            flood_latencies.append(review_latency(hook, big)[0])

    flooders = [threading.Thread(target=flood, daemon=True) for _ in range(3)]

    def bad_reviews() -> list[tuple[float, bool]]:
        for t in flooders:
            t.start()
        out = []
        for _ in range(6):
            took, answer = review_latency(hook, bad)
            out.append((took, answer.get("response", {}).get("allowed")))
            time.sleep(0.3)
        stop.set()
        for t in flooders:
            t.join(30)
        return out

    bad_results, flood_health = with_health(hook, bad_reviews)
    return {"containers": 20_000, "body_mib": size / 2**20, "latency_s": latency,
            "allowed": response.get("allowed"), "message": (response.get("status") or {}).get("message", "")[:120],
            "health_max_s": max(health), "health_probes": len(health),
            "bad_denied": sum(1 for _, allowed in bad_results if allowed is False), "bad_total": len(bad_results),
            "bad_max_s": max(t for t, _ in bad_results), "flood_reviews": len(flood_latencies),
            "flood_p50_s": statistics.median(flood_latencies) if flood_latencies else None,
            "flood_health_max_s": max(flood_health)}


# ---------------------------------------------------------------- 4. fuzz

ODD = ["\ud800", "\udfff", "\u0000", "\u202e", "\ufeff", "\U0010ffff", "ℌ𝔢𝔩𝔩𝔬", "é" * 3, "\\", "\"", "$(", "${", "`"]


def odd_string(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.2:
        return "".join(rng.choice(ODD) for _ in range(rng.randint(1, 8)))
    if pick < 0.3:
        return rng.choice(["x", "vllm", "/", "a/b"]) * rng.randint(100, 20_000)
    if pick < 0.6:
        return rng.choice(["--tensor-parallel-size", "-tp", "--max-model-len", "--gpu-memory-utilization",
                           "--model", "vllm", "serve", "8", "0.9", "1e999", "-1", "NaN", "32k", "auto"])
    return "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(0, 40)))


def odd_value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.random()
    if depth > 4 or pick < 0.5:
        return rng.choice([odd_string(rng), rng.randint(-2**63, 2**63), rng.random() * 1e308, None, True, [], {}])
    if pick < 0.75:
        return [odd_value(rng, depth + 1) for _ in range(rng.randint(0, 6))]
    return {odd_string(rng)[:30]: odd_value(rng, depth + 1) for _ in range(rng.randint(0, 6))}


def deep(levels: int, leaf: Any) -> str:
    """JSON text nested `levels` deep (as text: the client's own encoder would recurse too)."""
    inner = json.dumps(leaf, ensure_ascii=False)
    if levels % 2:
        return "[" * levels + inner + "]" * levels
    return '{"a":' * levels + inner + "}" * levels


def hostile_review(rng: random.Random) -> bytes:
    """One AdmissionReview of a vLLM Pod or Deployment with something hostile in it."""
    obj = pod() if rng.random() < 0.5 else workload("Deployment", name="fuzz")
    spec = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
    c = spec["containers"][0]
    kind = rng.choice(["args", "env", "deep", "wide", "annotation", "selector", "types", "containers", "command"])
    nested = None
    if kind == "args":
        c["args"] = c["args"] + [odd_string(rng) for _ in range(rng.randint(1, 30))]
    elif kind == "env":
        c["env"] = [{"name": odd_string(rng)[:50], "value": odd_string(rng)} for _ in range(rng.randint(1, 300))]
    elif kind == "deep":
        spec[rng.choice(["affinity", "x"])] = "__DEEP__"
        nested = deep(rng.choice([20, 63, 65, 200, 900, 3000]), odd_value(rng))
    elif kind == "wide":
        c["args"] = c["args"] + ["--served-model-name"] * rng.randint(1000, 40_000)
    elif kind == "annotation":
        obj["metadata"]["annotations"] = {rng.choice(["vllm-fit.io/model-id", "vllm-fit.io/gpu", "vllm-fit.io/skip",
                                                      odd_string(rng)[:60]]): odd_string(rng)}
    elif kind == "selector":
        spec["nodeSelector"] = {rng.choice(["nvidia.com/gpu.product", "nvidia.com/gpu.memory",
                                            odd_string(rng)[:40]]): odd_string(rng)}
    elif kind == "types":
        target = rng.choice([c, spec, obj["metadata"]])
        target[rng.choice(list(target) or ["x"])] = odd_value(rng)
    elif kind == "containers":
        spec["containers"] = spec["containers"] * rng.randint(2, 300)
    else:
        c["command"] = [rng.choice(["sh", "bash", "python3", "vllm"]), rng.choice(["-c", "-m", "serve"]),
                        odd_string(rng)]
    text = json.dumps(admission(obj), ensure_ascii=rng.random() < 0.5)
    if nested is not None:
        text = text.replace('"__DEEP__"', nested, 1)
    return text.encode("utf-8", "surrogatepass")


async def fuzz(hook: Webhook, count: int, parallel: int, seed: int = 13) -> dict:
    rng = random.Random(seed)
    bodies = (hostile_review(rng) for _ in range(count))
    counts = {"answered": 0, "denied": 0, "internal": 0, "not_judged": 0, "unjudged_admitted": 0, "http_error": 0,
              "bad_request_400": 0}
    examples: list[str] = []
    latencies: list[float] = []
    lock = asyncio.Lock()
    connector = aiohttp.TCPConnector(limit=parallel, ssl=hook.ssl_context())
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def worker() -> None:
            while True:
                async with lock:
                    body = next(bodies, None)
                if body is None:
                    return
                started = time.monotonic()
                async with session.post(f"https://127.0.0.1:{hook.port}/validate", data=body,
                                        headers={"Content-Type": "application/json"}) as response:
                    text = await response.text(errors="replace")
                latencies.append(time.monotonic() - started)
                if response.status == 400:
                    counts["bad_request_400"] += 1
                    continue
                if response.status != 200:
                    counts["http_error"] += 1
                    continue
                counts["answered"] += 1
                if '"allowed": false' in text or '"allowed":false' in text:
                    counts["denied"] += 1
                unjudged = False
                if "internal error" in text:
                    counts["internal"] += 1
                    unjudged = True
                if "not judged (" in text or "not judged within" in text:  # the old fail-open wordings, the deadline
                    counts["not_judged"] += 1
                    unjudged = True
                if unjudged:
                    examples.append(text[:300])
                    if '"allowed": true' in text or '"allowed":true' in text:
                        counts["unjudged_admitted"] += 1

        await asyncio.gather(*(worker() for _ in range(parallel)))
    latencies.sort()
    return {"reviews": count, **counts, "p50_s": latencies[len(latencies) // 2],
            "p99_s": latencies[int(len(latencies) * 0.99)], "max_s": latencies[-1], "examples": examples[:3]}


# ---------------------------------------------------------------- report

def report(results: dict) -> str:
    u8, u16 = results["uploads_8"], results["uploads_16"]
    s, h, f = results["slow"], results["huge"], results["fuzz"]
    lines = [
        "## Hardening (issue 13): `bench/hardening.py`",
        "",
        f"Run {results['when']} on {results['machine']}, the server with the chart's default limits "
        f"(header/body timeout 10 s, idle 30 s, 256 connections, 64 MiB of bodies in flight, "
        f"8 MiB per review, 256 containers, nesting 64). The chart's memory limit is 512 MiB.",
        "",
        "| measurement | result | acceptance |",
        "|---|---|---|",
        f"| {u8['count']} aborted uploads of {u8['declared_mib']:.0f} MiB ({u8['sent_mib']:.0f} MiB sent, "
        f"{u8['parallel']} at a time) | RSS {u8['rss_before_mib']:.0f} MiB before, peak {u8['rss_peak_mib']:.0f}, "
        f"{u8['rss_after_mib']:.0f} after; next review {u8['review_after_s'] * 1000:.0f} ms | RSS < 512 MiB |",
        f"| {u16['count']} uploads declaring {u16['declared_mib']:.0f} MiB, stopping after "
        f"{u16['sent_mib']:.0f} MiB ({u16['parallel']} at a time) | RSS peak {u16['rss_peak_mib']:.0f} MiB, "
        f"{u16['rss_after_mib']:.0f} after | RSS < 512 MiB |",
        f"| {s['slowloris']} slowloris + {s['header_only']} header-only connections | all {s['closed']} closed, "
        f"the last after {s['closed_max_s']:.1f} s; {s['reviews']} normal reviews meanwhile on a kept-alive "
        f"connection (as the API server sends them): p50 {s['kept_p50_s'] * 1000:.0f} ms, max "
        f"{s['kept_max_s'] * 1000:.0f} ms; on a new connection each: p50 {s['review_p50_s'] * 1000:.0f} ms, max "
        f"{s['review_max_s'] * 1000:.0f} ms | closed < 60 s, review < 1 s |",
        f"| one review of {h['containers']:,} containers ({h['body_mib']:.2f} MiB) | answered in "
        f"{h['latency_s'] * 1000:.0f} ms (allowed={h['allowed']}: \"{h['message'][:70]}...\"); /healthz max "
        f"{h['health_max_s'] * 1000:.0f} ms over {h['health_probes']} probes | < 2.5 s, health < 1 s |",
        f"| 3 clients looping 8,000-container dry-runs ({h['flood_reviews']} sent, p50 "
        f"{(h['flood_p50_s'] or 0) * 1000:.0f} ms) while a bad Deployment is reviewed 6 times | denied "
        f"{h['bad_denied']} of {h['bad_total']} (slowest {h['bad_max_s'] * 1000:.0f} ms); /healthz max "
        f"{h['flood_health_max_s'] * 1000:.0f} ms | 6 of 6 denied |",
        f"| {f['reviews']:,} hostile AdmissionReviews (deep, wide, odd Unicode and lone surrogates, long strings, "
        f"wrong types), 8 at a time | {f['answered']:,} answered ({f['denied']:,} denied), "
        f"{f['bad_request_400']} HTTP 400 (not an AdmissionReview), {f['http_error']} other HTTP errors; "
        f"{f['internal']} internal errors, {f['not_judged']} past the 2 s deadline (denied by "
        f"internal_error_policy); **{f['unjudged_admitted']} admitted without a judgement**; p50 {f['p50_s'] * 1000:.0f} ms, "
        f"p99 {f['p99_s'] * 1000:.0f} ms, max {f['max_s'] * 1000:.0f} ms | 0 \"not judged\" from an internal error |",
        "",
    ]
    if f["examples"]:
        lines += ["Answers that were not a judgement (first three):", "", *[f"    {e[:200]}..." for e in f["examples"]],
                  ""]
    lines += [
        "What the numbers say:",
        "- Uploads: a body is read into one buffer against the 64 MiB in-flight budget and cleared the moment the",
        "  client goes away (the exception's traceback, kept by aiohttp's payload reader, would otherwise hold the",
        "  buffer until the cycle collector ran: before that fix 100 aborted 8 MiB uploads peaked at 908 MiB RSS",
        "  and kept 904). A body declared larger than `max_review_bytes` is never taken in: its first 4 KiB give",
        "  the uid, the rest is read and dropped, and the answer is `over_budget_policy`'s.",
        f"- Slow clients: slowloris connections are closed by the header timeout, header-only ones answered 408 by",
        f"  the body timeout; the last of the {s['closed']} closed after {s['closed_max_s']:.1f} s. A review on a",
        "  new connection waits behind the attackers' TLS handshakes, which run on the event loop; the kept-alive",
        "  connection the API server uses does not. The NetworkPolicy (`networkPolicy.enabled`) keeps such",
        "  connections from coming from inside the cluster at all.",
        "- Huge objects: the 20,000-container review is denied by `max_containers` after the body is decoded and",
        "  counted on the decode thread; /healthz and /readyz answer from their own thread throughout. The",
        "  8,000-container dry-run loop that used to let a bad Deployment in 6 times of 6 now leaves it denied.",
        "- Fuzz: the HTTP 400s are bodies the API server never sends (not UTF-8, non-string metadata, not an",
        "  AdmissionReview). A review that misses the 2 s deadline under this concurrency on shared cores is denied",
        "  by `internal_error_policy` (enforce mode), not admitted.",
        "",
    ]
    return "\n".join(lines)


def replace_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    head = "## Hardening (issue 13)"
    if head in text:
        start = text.index(head)
        end = text.find("\n## ", start + len(head))
        text = text[:start] + section + ("" if end < 0 else text[end:])
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fuzz", type=int, default=10_000)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--only", choices=["uploads", "slow", "huge", "fuzz"], default=None,
                        help="run one measurement and print it (no report)")
    args = parser.parse_args()
    api = DiscoveryApi(stateful=True).start()
    work = Path(tempfile.mkdtemp(prefix="vllm-fit-hardening-"))
    hook = Webhook(work, api.kubeconfig(work / "kubeconfig"), {"mode": "enforce", "deadline_seconds": 2.0}).start()
    results: dict[str, Any] = {"when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                               "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), "
                                          f"Python {platform.python_version()}"}
    try:
        if args.only:
            one = {"uploads": lambda: uploads(hook, 100, 8 << 20, 7 << 20, 25), "slow": lambda: slow_clients(hook, 100, 100),
                   "huge": lambda: huge(hook), "fuzz": lambda: asyncio.run(fuzz(hook, args.fuzz, 8))}[args.only]()
            print(json.dumps(one, default=str))
            return 0
        results["uploads_8"] = uploads(hook, 100, 8 << 20, 7 << 20, 25)
        print(json.dumps(results["uploads_8"]), flush=True)
        results["uploads_16"] = uploads(hook, 200, 16 << 20, 8 << 20, 50)
        print(json.dumps(results["uploads_16"]), flush=True)
        results["slow"] = slow_clients(hook, 100, 100)
        print(json.dumps(results["slow"]), flush=True)
        results["huge"] = huge(hook)
        print(json.dumps(results["huge"]), flush=True)
        results["fuzz"] = asyncio.run(fuzz(hook, args.fuzz, 8))
        results["fuzz"]["server_tracebacks"] = hook.log_path.read_text().count("Traceback")
        print(json.dumps({k: v for k, v in results["fuzz"].items() if k != "examples"}), flush=True)
        alive = hook.process.poll() is None
        results["alive"] = alive
    finally:
        hook.stop()
        api.stop()
    section = report(results)
    print(section)
    if args.output:
        replace_section(args.output, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
