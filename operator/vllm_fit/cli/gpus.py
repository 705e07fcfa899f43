"""`vllm-fit gpus [NAME] [-o table|json]`: the GPU catalog, the names each GPU answers to, its total
memory as torch reports it, and where that figure comes from."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional, Sequence

from ..errors import VllmFitError
from ..gpu_catalog import GpuSpec
from ..units import GIB
from ..profiles import gpu_catalog
from . import EXIT_BAD_INPUT, EXIT_FITS

DESCRIPTION = """List the GPU catalog (profiles/gpus.yaml): each GPU's name, the aliases and Kubernetes labels
it is recognised by (GPU Feature Discovery nvidia.com/gpu.product, GKE accelerator, instance
types), its total memory as torch reports it (the figure vLLM multiplies by
--gpu-memory-utilization), whether that figure was measured or is nominal, and its source.

Any name or alias works for `plan --gpu`, `check --gpu`, the webhook's default_gpu and the
vllm-fit.io/gpu annotation. A GPU that is not listed can be given by its total, e.g. 79.18GiB.

  vllm-fit gpus                 every GPU and MIG slice
  vllm-fit gpus NAME            one GPU, with every name it answers to
  vllm-fit gpus -o json         the catalog for scripts

Exit status: 0 listed, 2 unknown GPU or bad usage."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vllm-fit gpus", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", metavar="NAME", help="show one GPU (a name, alias or label)")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table",
                        help="output format (default: table)")
    return parser


def _entry(gpu: GpuSpec) -> dict[str, Any]:
    return {"name": gpu.name, "device_name": gpu.device_name, "vendor": gpu.vendor,
            "total_gib": round(gpu.total_bytes / GIB, 2), "total_bytes": gpu.total_bytes,
            "figure": "nominal" if gpu.nominal else "measured", "compute_capability": gpu.compute_capability,
            "aliases": list(gpu.aliases), "gfd_products": list(gpu.gfd_products),
            "gke_accelerators": list(gpu.gke_accelerators), "instance_types": dict(gpu.instance_types),
            "source": gpu.source}


def _names(gpu: GpuSpec) -> list[str]:
    return list(dict.fromkeys(n for n in (*gpu.aliases, *gpu.gfd_products, *gpu.gke_accelerators) if n != gpu.name))


def _detail(gpu: GpuSpec) -> str:
    lines = [f"{gpu.name}: {gpu.total_bytes / GIB:,.2f} GiB ({gpu.total_bytes:,} bytes, "
             f"{'nominal' if gpu.nominal else 'measured'})",
             f"  device name         {gpu.device_name or '-'}",
             f"  vendor              {gpu.vendor}" + (f", compute capability {gpu.compute_capability}"
                                                      if gpu.compute_capability else ""),
             f"  aliases             {', '.join(gpu.aliases) or '-'}",
             f"  GFD gpu.product     {', '.join(gpu.gfd_products) or '-'}",
             f"  GKE accelerator     {', '.join(gpu.gke_accelerators) or '-'}",
             f"  instance types      " + (", ".join(f"{k} ({v} GPUs)" for k, v in gpu.instance_types.items()) or "-"),
             f"  source              {gpu.source or '-'}"]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help is 0, bad usage 2
        return EXIT_FITS if exc.code == 0 else EXIT_BAD_INPUT
    catalog = gpu_catalog()
    if args.name:
        gpu = catalog.find(args.name)
        if gpu is None:
            try:
                gpu = catalog.resolve(args.name)  # a size, or the unknown-GPU message with close names
            except VllmFitError as exc:
                sys.stderr.write(f"vllm-fit gpus: {exc}\n")
                return EXIT_BAD_INPUT
        if args.output == "json":
            print(json.dumps(_entry(gpu), indent=2))
        else:
            print(_detail(gpu))
        return EXIT_FITS
    if args.output == "json":
        print(json.dumps({
            "gpus": [_entry(g) for g in catalog.gpus],
            "mig_profiles": [{"resource": m.resource, "parent": m.parent, "total_gib": round(m.total_bytes / GIB, 2),
                              "total_bytes": m.total_bytes, "figure": "nominal" if m.nominal else "measured",
                              "source": m.source} for m in catalog.mig_profiles]}, indent=2))
        return EXIT_FITS
    width = max(len(g.name) for g in catalog.gpus)
    print(f"{'NAME':<{width}}  {'TOTAL GiB':>9}  {'FIGURE':<8}  ALSO KNOWN AS")
    for gpu in catalog.gpus:
        print(f"{gpu.name:<{width}}  {gpu.total_bytes / GIB:>9,.2f}  {'nominal' if gpu.nominal else 'measured':<8}  "
              f"{', '.join(_names(gpu)) or '-'}")
        print(f"{'':<{width}}  {'':>9}  {'':<8}  source: {gpu.source or '-'}")
    if catalog.mig_profiles:
        mig_width = max(len(m.resource) for m in catalog.mig_profiles)
        print(f"\n{'MIG RESOURCE':<{mig_width}}  {'ON':<14}  {'TOTAL GiB':>9}  FIGURE")
        for m in catalog.mig_profiles:
            print(f"{m.resource:<{mig_width}}  {m.parent:<14}  {m.total_bytes / GIB:>9,.2f}  "
                  f"{'nominal' if m.nominal else 'measured'}")
    print("\nA GPU that is not listed: give its total as torch reports it, e.g. --gpu 79.18GiB. "
          "`vllm-fit gpus NAME` shows one GPU in full.")
    return EXIT_FITS
