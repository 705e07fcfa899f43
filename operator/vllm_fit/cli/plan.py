"""`vllm-fit plan MODEL [vLLM flags] [--gpu NAME|SIZE] [--vllm-version X.Y.Z] [-o table|json]`."""

from __future__ import annotations

import json
import os
import sys
from typing import Sequence

from ..errors import VllmFitError
from ..hub import default_resolver
from ..launch.argv import parse_vllm_args
from ..memory.plan import DEFAULT_CONCURRENCY_THRESHOLD, DEFAULT_GPUS_PER_NODE, plan, valid_tensor_parallel_sizes
from ..memory.versions import DEFAULT_VLLM_VERSION
from ..profiles import gpu_catalog, runtime_profiles_with
from . import EXIT_BAD_INPUT, EXIT_FITS, EXIT_REJECTED
from .common import render_plan, render_tp_table

HELP = f"""usage: vllm-fit plan MODEL [vLLM flags] [--gpu NAME|SIZE] [--vllm-version X.Y.Z] [-o table|json]

Predict, per GPU, what `vllm serve MODEL ...` will log at startup (weights, activation,
non-torch, CUDA graphs, KV cache, blocks, tokens, concurrency), whether it starts, and what
would: the smallest TP that fits, the longest max-model-len, or an fp8 KV cache.

MODEL        a Hugging Face id (bundled, cached, or looked up on the Hub - see `vllm-fit models
             --help` for HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE), or a local directory with config.json
vLLM flags   as for vllm serve: -tp/--tensor-parallel-size, -pp, -dp, --gpu-memory-utilization,
             --max-model-len (16k = 16000, 16K = 16384, auto), --block-size, --kv-cache-dtype,
             --dtype, -q/--quantization, --enforce-eager, --max-num-seqs,
             --max-num-batched-tokens, --kv-cache-memory-bytes, ... (prefixes work as in vLLM)
--gpu        a GPU catalog name or alias (H100-80GB, H200, A100-80GB, L4, ...) or a total such as
             79.18GiB (default H100-80GB)
--vllm-version  the vLLM release to model (default {DEFAULT_VLLM_VERSION})
--gpus-per-node N  how far suggestions search TP (default {DEFAULT_GPUS_PER_NODE})
--concurrency-threshold X  warn below this many concurrent max-length requests (default {DEFAULT_CONCURRENCY_THRESHOLD:g})
--profiles DIR  measured profiles (files `vllm-fit logs --write-profile` writes) to plan with
-o table|json   output format (default table)

Exit status: 0 fits, 1 vLLM would fail, 2 bad input.
"""

_OURS_WITH_VALUE = {"--gpu", "--vllm-version", "-o", "--output", "--gpus-per-node", "--concurrency-threshold",
                    "--profiles"}


def _split_args(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Our options (exact names only: `--gpu` must not swallow vLLM's --gpu-memory-utilization)."""
    ours: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        name, eq, value = token.partition("=")
        if name in _OURS_WITH_VALUE:
            if not eq:
                if i + 1 >= len(argv):
                    raise VllmFitError(f"{name} needs a value")
                value = argv[i + 1]
                i += 1
            ours[{"-o": "--output"}.get(name, name)] = value
        else:
            rest.append(token)
        i += 1
    return ours, rest


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or "--help" in argv:
        sys.stdout.write(HELP)
        return EXIT_FITS if argv else EXIT_BAD_INPUT
    try:
        ours, rest = _split_args(argv)
        output = ours.get("--output", "table")
        if output not in ("table", "json"):
            raise VllmFitError(f"-o must be table or json, not {output!r}")
        version = ours.get("--vllm-version")
        # vLLM reads VLLM_* variables (e.g. VLLM_ALLOW_LONG_MAX_MODEL_LEN); so does the plan.
        env = {k: v for k, v in os.environ.items() if k.startswith("VLLM_") and not k.startswith("VLLM_FIT_")}
        parsed = parse_vllm_args(rest, vllm_version=version, env=env)
        launch = parsed.launch
        if not launch.model:
            raise VllmFitError("give a MODEL (a Hugging Face id or a directory with config.json)")
        if parsed.ignored:
            sys.stderr.write(f"vllm-fit plan: ignoring options that do not change memory: {' '.join(parsed.ignored)}\n")
        catalog = gpu_catalog()
        gpu = catalog.resolve(ours.get("--gpu", "H100-80GB"))
        gpus_per_node = int(ours.get("--gpus-per-node", DEFAULT_GPUS_PER_NODE))
        threshold = float(ours.get("--concurrency-threshold", DEFAULT_CONCURRENCY_THRESHOLD))
        model = default_resolver().resolve(launch.model, launch.revision)
        profiles = runtime_profiles_with(ours.get("--profiles"))
        result = plan(model, launch, gpu, profiles, gpus_per_node=gpus_per_node, concurrency_threshold=threshold)
        sweep = []
        if launch.tensor_parallel_size is None and result.settings:  # no sweep when vLLM rejects the arguments
            for tp in valid_tensor_parallel_sizes(model, gpus_per_node):
                sweep.append(plan(model, launch.model_copy(update={"tensor_parallel_size": tp}), gpu, profiles,
                                  gpus_per_node=gpus_per_node, concurrency_threshold=threshold, suggest=False))
    except VllmFitError as exc:
        sys.stderr.write(f"vllm-fit plan: {exc}\n")
        return EXIT_BAD_INPUT
    except ValueError as exc:
        sys.stderr.write(f"vllm-fit plan: {exc}\n")
        return EXIT_BAD_INPUT
    if output == "json":
        payload = result.to_json_dict()
        if sweep:
            payload["tensor_parallel_sweep"] = [
                {"tensor_parallel_size": p.parallel["tensor_parallel_size"], "fits": p.verdict.fits,
                 "weights_gib": p.per_gpu.weights_gib, "kv_cache_gib": p.per_gpu.kv_cache_gib,
                 "tokens": p.kv_cache.tokens, "max_concurrency": p.kv_cache.max_concurrency,
                 "reasons": [r.code for r in p.verdict.reasons]}
                for p in sweep
            ]
        print(json.dumps(payload, indent=2))
    else:
        colour = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None
        print(render_plan(result, colour=colour))
        if sweep:
            print("\nEvery valid tensor-parallel size (no -tp given):")
            print(render_tp_table(sweep))
    return EXIT_FITS if result.verdict.fits else EXIT_REJECTED
