"""How much a review pays for the cluster's GPU inventory (inventory.py), by cluster size.

Nodes come in pools of like Nodes (4 GPU products, 3 zones, 10 pools, 20 other labels each, the
GPU operator's taint). Measured: reading the Nodes (the watch handler's work, off the review
path), the snapshot a review takes after a change, the first reachable_gpus after a change
(groups the pools), a new placement on a known snapshot, and a repeated one (remembered).

    .venv/bin/python bench/inventory.py [NODES ...]
"""

from __future__ import annotations

import statistics
import sys
import time

from vllm_fit.inventory import Inventory, read_node, reachable_gpus
from vllm_fit.launch.gpus import placement_of
from vllm_fit.profiles import gpu_catalog

PRODUCTS = ["NVIDIA-H100-80GB-HBM3", "NVIDIA-L4", "NVIDIA-A100-SXM4-80GB", "NVIDIA-H200"]


def nodes(count: int) -> list[dict]:
    out = []
    for i in range(count):
        labels = {"nvidia.com/gpu.product": PRODUCTS[i % 4], "topology.kubernetes.io/zone": f"z{i % 3}",
                  "pool": f"p{i % 10}", "kubernetes.io/hostname": f"n{i}"}
        labels.update({f"example.com/l{j}": str(j) for j in range(20)})
        out.append({"metadata": {"name": f"n{i}", "labels": labels},
                    "spec": {"taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]},
                    "status": {"allocatable": {"nvidia.com/gpu": "8"}}})
    return out


def ms(f, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        f()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main(sizes: list[int]) -> None:
    catalog = gpu_catalog()
    affinity = placement_of({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["p1", "p2"]}]}]}}}})
    print(f"{'nodes':>6}  {'read ms':>8}  {'snapshot ms':>11}  {'first review ms':>15}  {'new placement ms':>16}  "
          f"{'repeat ms':>9}")
    for size in sizes:
        raw = nodes(size)
        read_ms = ms(lambda: [read_node(n, catalog) for n in raw], 1)
        read = [read_node(n, catalog) for n in raw]
        snapshot_ms = ms(lambda: Inventory.of(read))

        def first() -> None:
            reachable_gpus(Inventory.of(read), placement_of({}), "nvidia.com/gpu", 2, catalog)
        first_ms = ms(first) - snapshot_ms
        inv = Inventory.of(read)
        reachable_gpus(inv, placement_of({}), "nvidia.com/gpu", 2, catalog)
        new_ms = ms(lambda: reachable_gpus(inv, affinity, "nvidia.com/gpu", 2, catalog), 1)
        repeat_ms = ms(lambda: reachable_gpus(inv, affinity, "nvidia.com/gpu", 2, catalog))
        print(f"{size:>6}  {read_ms:>8.1f}  {snapshot_ms:>11.2f}  {first_ms:>15.2f}  {new_ms:>16.2f}  {repeat_ms:>9.3f}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100, 1000, 5000])
