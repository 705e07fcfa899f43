"""Closed-loop load over keep-alive HTTPS: CONCURRENCY workers POST one body for DURATION seconds.

    python bench/loadgen.py URL BODY.json CA.pem CONCURRENCY DURATION  -> one JSON line of stats
"""

import asyncio
import json
import ssl
import statistics
import sys
import time

import aiohttp


async def run(url: str, body: bytes, ca: str, concurrency: int, duration: float) -> dict:
    context = ssl.create_default_context(cafile=ca)
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=context, force_close=False)
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=connector, headers={"Content-Type": "application/json"}) as session:
        # warm the connections (TLS handshakes are not part of the measurement)
        await asyncio.gather(*(session.post(url, data=body) for _ in range(concurrency)))
        end = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < end:
                start = time.perf_counter()
                async with session.post(url, data=body) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
            "mean_ms": statistics.fmean(latencies) * 1000}


def main() -> None:
    url, body_path, ca, concurrency, duration = sys.argv[1:6]
    body = open(body_path, "rb").read()
    print(json.dumps(asyncio.run(run(url, body, ca, int(concurrency), float(duration)))))


if __name__ == "__main__":
    main()
