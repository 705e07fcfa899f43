"""Benchmark the memory model: plans per second over every bundled model x valid TP.

    .venv/bin/python bench/plan.py [--repeat N]

Target (issue 5): a full TP sweep (every valid TP up to 8) for one model in <= 1 ms.
Reports, per model, the median time of one full sweep (suggestions off, as `plan`'s TP table
and the webhook's suggestion search run it) and of one plan with suggestions.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from vllm_fit.hub.resolver import BundledResolver
from vllm_fit.launch.model import VllmLaunch
from vllm_fit.memory.plan import plan, valid_tensor_parallel_sizes
from vllm_fit.profiles import gpu_catalog, runtime_profiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    resolver = BundledResolver()
    gpu = gpu_catalog().resolve("H100-80GB")
    profiles = runtime_profiles()
    print(f"# vllm-fit plan benchmark  python {platform.python_version()}  {platform.machine()}  repeat {args.repeat}")
    print(f"{'model':<48} {'TPs':<12} {'sweep ms':>9} {'plans/s':>9} {'1 plan+suggest ms':>18}")
    total_plans, total_time, worst = 0, 0.0, 0.0
    for model_id in resolver.known():
        model = resolver.resolve(model_id)
        tps = valid_tensor_parallel_sizes(model, 8)
        launches = [VllmLaunch(model=model_id, tensor_parallel_size=tp, max_model_len=16000) for tp in tps]
        for launch in launches:  # warm the per-model caches, as a long-running webhook has them
            plan(model, launch, gpu, profiles, suggest=False)
        sweeps = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            for launch in launches:
                plan(model, launch, gpu, profiles, suggest=False)
            sweeps.append(time.perf_counter() - start)
        singles = []
        for _ in range(max(args.repeat // 4, 10)):
            start = time.perf_counter()
            plan(model, VllmLaunch(model=model_id, max_model_len=16000), gpu, profiles)
            singles.append(time.perf_counter() - start)
        sweep = statistics.median(sweeps)
        worst = max(worst, sweep)
        total_plans += len(launches) * args.repeat
        total_time += sum(sweeps)
        print(f"{model_id:<48} {','.join(map(str, tps)):<12} {sweep * 1000:>9.3f} {len(launches) / sweep:>9.0f} "
              f"{statistics.median(singles) * 1000:>18.3f}")
    print(f"\nall models: {total_plans / total_time:,.0f} plans/s; slowest full sweep {worst * 1000:.3f} ms "
          f"(target <= 1 ms: {'met' if worst <= 0.001 else 'MISSED'})")


if __name__ == "__main__":
    main()
