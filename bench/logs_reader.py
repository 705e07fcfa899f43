"""Benchmark the startup-log reader: throughput on the real-log corpus and on one large log.

    .venv/bin/python bench/logs_reader.py [--repeat N] [--copies N]

The in-cluster observer reads a bounded tail of each vLLM pod's log when it becomes Ready, so
the reader must stay linear and fast: the goal is >= 1 MiB/s on real logs (a whole startup log
of a multi-rank launch is tens of KiB) and no input that takes super-linear time.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

from vllm_fit.logs import read_startup_log

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "vllm_logs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--copies", type=int, default=20, help="corpus copies in the large log")
    args = parser.parse_args()
    logs = {p.stem: p.read_text(errors="replace") for p in sorted(CORPUS.glob("*.log"))}
    print(f"# vllm-fit log reader benchmark  python {platform.python_version()}  {platform.machine()}")
    print(f"{'log':<48} {'KiB':>7} {'ms':>8} {'MiB/s':>7}")
    total_bytes, total_s = 0, 0.0
    for name, text in logs.items():
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            read_startup_log(text)
            times.append(time.perf_counter() - start)
        t = statistics.median(times)
        total_bytes += len(text)
        total_s += t
        print(f"{name:<48} {len(text) / 1024:7.1f} {t * 1000:8.2f} {len(text) / t / (1 << 20):7.2f}")
    print(f"{'corpus (' + str(len(logs)) + ' logs)':<48} {total_bytes / 1024:7.1f} {total_s * 1000:8.2f} "
          f"{total_bytes / total_s / (1 << 20):7.2f}")
    big = "".join(logs.values()) * args.copies
    start = time.perf_counter()
    read_startup_log(big)
    t = time.perf_counter() - start
    print(f"{'one log of ' + str(args.copies) + ' corpus copies':<48} {len(big) / 1024:7.1f} {t * 1000:8.2f} "
          f"{len(big) / t / (1 << 20):7.2f}")


if __name__ == "__main__":
    main()
