"""Benchmark the admission webhook against the floor of this stack, in one run.

    .venv/bin/python bench/admission.py [--duration 5] [--concurrency 1 16 64] [--output bench/RESULTS.md]

Starts, on this machine: a discovery-only Kubernetes API (kmock), the real webhook
(`vllm-fit serve`, real TLS), a no-op aiohttp TLS webhook (the floor), and a local Hugging Face
Hub for the cold-model case. A separate process (bench/loadgen.py) sends AdmissionReviews over
keep-alive HTTPS at fixed concurrency for a fixed duration and reports requests/s and
p50/p90/p99 latency; the webhook's numbers are shown beside the floor's, with the ratios.

Targets (issue 5): warm vLLM review at concurrency 1, median <= 1.5x the floor's; at 64,
throughput >= 60 % of the floor's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from hub_fake import FakeHub, bundled_config, single_file_model  # noqa: E402
from webhook_harness import DiscoveryApi, Webhook, free_port, recorded  # noqa: E402


def loadgen(url: str, body: dict, ca: Path, concurrency: int, duration: float, work: Path) -> dict:
    body_path = work / f"body-{uuid.uuid4().hex}.json"
    body_path.write_text(json.dumps(body))
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "loadgen.py"), url, str(body_path), str(ca),
                          str(concurrency), str(duration)], capture_output=True, text=True, timeout=duration + 120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout)


def fitting_create() -> dict:
    """`kubectl apply` of a Deployment that fits (Llama-3.3-70B-FP8 at TP=2 on 2 H100s), as a CREATE."""
    body = recorded("08")
    body["request"]["operation"] = "CREATE"
    body["request"]["oldObject"] = None
    return body


def cold_lookups(webhook: Webhook, hub: FakeHub, count: int) -> list[float]:
    """Each review names a model no cache holds yet: one Hub lookup per review."""
    times = []
    config = bundled_config("meta-llama--Llama-3.1-8B-Instruct")
    for i in range(count):
        model_id = f"bench/cold-{uuid.uuid4().hex[:8]}-{i}"
        hub.add(single_file_model(model_id, config))
        body = json.loads(json.dumps(fitting_create()).replace("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", model_id))
        start = time.perf_counter()
        status, data = webhook.post("/validate", body)
        times.append((time.perf_counter() - start) * 1000)
        assert status == 200 and "warnings" not in data["response"], data
    return sorted(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--output", type=Path, help="write (or replace) the admission section of this Markdown file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vllm-fit-bench-"))
    api = DiscoveryApi().start()
    hub = FakeHub().start()
    config = {"mode": "enforce", "default_gpu": "H100-80GB", "deadline_seconds": 2.0}
    env = {"HF_ENDPOINT": hub.url, "VLLM_FIT_CACHE_DIR": str(work / "cache"), "VLLM_FIT_HUB": "1"}
    webhook = Webhook(work / "webhook", api.kubeconfig(work / "kubeconfig"), config, env=env).start()
    floor_port = free_port()
    floor = subprocess.Popen([sys.executable, str(ROOT / "bench" / "noop_webhook.py"), str(floor_port),
                              str(webhook.tls.cert_path), str(webhook.tls.key_path)])
    time.sleep(1.5)
    cases = [("vLLM Deployment, warm", fitting_create()), ("vLLM Deployment UPDATE", recorded("08")),
             ("non-vLLM Deployment", recorded("32"))]
    rows = []
    try:
        for name, body in cases:
            for concurrency in args.concurrency:
                ours = loadgen(f"https://127.0.0.1:{webhook.port}/validate", body, webhook.tls.ca_path, concurrency,
                               args.duration, work)
                base = loadgen(f"https://127.0.0.1:{floor_port}/validate", body, webhook.tls.ca_path, concurrency,
                               args.duration, work)
                rows.append((name, concurrency, ours, base))
                print(f"{name:<24} c={concurrency:<3} webhook {ours['rps']:8.0f} rps p50 {ours['p50_ms']:6.2f} ms "
                      f"p99 {ours['p99_ms']:6.2f} | floor {base['rps']:8.0f} rps p50 {base['p50_ms']:6.2f} ms "
                      f"p99 {base['p99_ms']:6.2f} | p50 x{ours['p50_ms'] / base['p50_ms']:.2f} "
                      f"throughput {ours['rps'] / base['rps'] * 100:.0f}%", flush=True)
        cold = cold_lookups(webhook, hub, 20)
        print(f"cold model (Hub lookup through the local server), 20 reviews: p50 {cold[len(cold) // 2]:.1f} ms, "
              f"max {cold[-1]:.1f} ms")
    finally:
        floor.terminate()
        floor.wait(10)
        webhook.stop()
        hub.stop()
        api.stop()
    if args.output:
        write_results(args.output, rows, cold, args)


def write_results(path: Path, rows: list, cold: list[float], args: argparse.Namespace) -> None:
    warm1 = next(r for r in rows if r[0] == "vLLM Deployment, warm" and r[1] == 1)
    warm64 = next((r for r in rows if r[0] == "vLLM Deployment, warm" and r[1] == 64), None)
    lines = [
        "## Admission webhook vs. the floor",
        "",
        f"Date {datetime.date.today()}; machine: {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}; command: `.venv/bin/python bench/admission.py --duration {args.duration:g}`.",
        "Server and floor share the certificate; the load generator is a separate process with keep-alive "
        "connections (handshakes excluded).",
        "",
        "| case | concurrency | webhook req/s | p50 ms | p90 ms | p99 ms | floor req/s | p50 ms | p90 ms | p99 ms "
        "| p50 ratio | throughput vs floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, concurrency, ours, base in rows:
        lines.append(f"| {name} | {concurrency} | {ours['rps']:.0f} | {ours['p50_ms']:.2f} | {ours['p90_ms']:.2f} | "
                     f"{ours['p99_ms']:.2f} | {base['rps']:.0f} | {base['p50_ms']:.2f} | {base['p90_ms']:.2f} | "
                     f"{base['p99_ms']:.2f} | {ours['p50_ms'] / base['p50_ms']:.2f}x | "
                     f"{ours['rps'] / base['rps'] * 100:.0f}% |")
    ratio1 = warm1[2]["p50_ms"] / warm1[3]["p50_ms"]
    lines += ["", f"Cold model (one Hub lookup per review through the local Hub server): p50 "
                  f"{cold[len(cold) // 2]:.1f} ms, max {cold[-1]:.1f} ms over {len(cold)} reviews.", "",
              f"Targets: warm review at concurrency 1, p50 <= 1.5x floor: {ratio1:.2f}x "
              f"({'met' if ratio1 <= 1.5 else 'MISSED'})."]
    if warm64:
        share = warm64[2]["rps"] / warm64[3]["rps"]
        lines.append(f"At 64 concurrent, throughput >= 60% of floor: {share * 100:.0f}% ({'met' if share >= 0.6 else 'MISSED'}).")
    text = "\n".join(lines) + "\n"
    path.write_text(path.read_text().split("## Admission webhook vs. the floor")[0] + text if path.exists() else text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
