"""`vllm-fit plan MODEL [vLLM flags] [--gpu NAME|SIZE] [--vllm-version X.Y.Z] [-o table|json]`."""

from __future__ import annotations

import json
import os
import sys
from typing import Optional, Sequence

from ..errors import VllmFitError
from ..hub import default_resolver
from ..launch.argv import parse_vllm_args
from ..memory.plan import (DEFAULT_CONCURRENCY_THRESHOLD, DEFAULT_GPUS_PER_NODE, MemoryPlan, plan,
                           valid_tensor_parallel_sizes)
from ..memory.versions import DEFAULT_VLLM_VERSION, parse_version
from ..profiles import gpu_catalog, runtime_profiles_with, vllm_flag_table
from . import EXIT_BAD_INPUT, EXIT_FITS, EXIT_REJECTED
from .common import render_plan, render_tp_table, split_options

# vLLM's own flags that change memory, as `plan --help` explains them. A flag the argument
# reader learns later and this table lacks is still listed (by `_vllm_flag_lines`).
_VLLM_FLAG_HELP: dict[str, tuple[str, str]] = {
    "model": ("MODEL", "the model, instead of the positional MODEL"),
    "revision": ("REV", "branch, tag or commit of the model on the Hub (default: the default branch)"),
    "tensor-parallel-size": ("N", "GPUs per pipeline stage (default 1; without it a table over every valid TP follows)"),
    "pipeline-parallel-size": ("N", "pipeline stages (default 1)"),
    "data-parallel-size": ("N", "data-parallel replicas (default 1)"),
    "data-parallel-size-local": ("N", "data-parallel ranks on this node (multi-node data parallel)"),
    "gpu-memory-utilization": ("U", "fraction of GPU memory vLLM may use, in (0, 1] (default 0.9; 0.92 from vLLM 0.20)"),
    "max-model-len": ("L", "context length: 4096, 16k (=16000), 16K (=16384), auto (vLLM 0.14+) (default: the model's)"),
    "block-size": ("B", "KV cache block in tokens, one of the version's choices (default 16; MLA 64, 128 on Blackwell)"),
    "kv-cache-dtype": ("DTYPE", "auto, fp8, fp8_e4m3, fp8_e5m2, fp8_inc, int8, bfloat16, half, float16, float (default auto)"),
    "dtype": ("DTYPE", "auto, half, float16, bfloat16, float, float32 (default auto)"),
    "quantization": ("METHOD", "must match the checkpoint, or fp8 to quantize a plain checkpoint at load time"),
    "enforce-eager": ("", "no CUDA graphs"),
    "max-num-seqs": ("N", "most sequences per batch (default: vLLM's choice for the GPU, 1024 on H100)"),
    "max-num-batched-tokens": ("N", "most tokens per batch (default: vLLM's choice for the GPU, 8192 on H100)"),
    "kv-cache-memory-bytes": ("BYTES", "KV cache size per GPU, replacing the --gpu-memory-utilization budget"),
    "enable-expert-parallel": ("", "experts over TPxDP ranks instead of sharding each expert (MoE models)"),
    "cpu-offload-gb": ("GB", "decoder-layer weights kept in CPU memory per GPU"),
    "num-gpu-blocks-override": ("N", "KV cache blocks to allocate, whatever the memory says"),
    "disable-sliding-window": ("", "full attention on sliding-window layers (caps max-model-len at the window)"),
    "disable-hybrid-kv-cache-manager": ("", "one KV cache group for every layer kind"),
    "kv-transfer-config": ("JSON", "disaggregated prefill (turns the hybrid KV cache manager off)"),
    "kv-events-config": ("JSON", "KV cache events (turns the hybrid KV cache manager off)"),
    "config": ("FILE", "vLLM's YAML config file: not read; its values are reported as unresolved"),
}


def _vllm_flag_lines() -> list[str]:
    from ..launch import argv as vllm_argv

    aliases: dict[str, list[str]] = {}
    for short, long in vllm_argv._ALIASES.items():
        aliases.setdefault(long, []).append(short)
    lines = []
    for flag, spec in vllm_argv._MEMORY_FLAGS.items():
        metavar, text = _VLLM_FLAG_HELP.get(flag, ("VALUE" if spec.takes_value else "", "as vLLM defines it"))
        names = ", ".join([*aliases.get(flag, []), f"--{flag}"])
        left = f"  {names}{' ' + metavar if metavar else ''}"
        lines.append(f"{left:<38} {text}" if len(left) < 38 else f"{left}\n{'':<38} {text}")
    return lines


def help_text() -> str:
    return f"""usage: vllm-fit plan MODEL [vLLM flags] [--gpu NAME|SIZE] [--vllm-version X.Y.Z] [-o table|json]

Predict, per GPU, what `vllm serve MODEL ...` will log at startup (weights, activation,
non-torch, CUDA graphs, KV cache, blocks, tokens, concurrency), whether it starts, and what
would: the smallest TP that fits, the longest max-model-len, or an fp8 KV cache.

MODEL   a Hugging Face id (bundled, cached, or looked up on the Hub - see `vllm-fit models
        --help` for HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE), or a local directory with config.json

vLLM flags (vLLM's names; unambiguous prefixes, --x_y spellings and --x=y work as in vLLM; other
vLLM flags are accepted and ignored, with a note, because they do not change memory):
{chr(10).join(_vllm_flag_lines())}

vllm-fit flags:
  --gpu NAME|SIZE                      a GPU from `vllm-fit gpus` (name, alias, GFD or GKE label) or a
                                       total such as 79.18GiB (default H100-80GB)
  --vllm-version X.Y.Z                 the vLLM release to model (default {DEFAULT_VLLM_VERSION}, the newest modelled)
  --gpus-per-node N                    GPUs per node, how far suggestions search TP (default {DEFAULT_GPUS_PER_NODE})
  --concurrency-threshold X            warn below this many concurrent max-length requests (default {DEFAULT_CONCURRENCY_THRESHOLD:g})
  --profiles DIR                       measured profiles (files `vllm-fit logs --write-profile` writes) to plan
                                       with (default: the bundled profiles only)
  -o, --output table|json              output format (default table)
  -h, --help                           this help

VLLM_* variables in the environment (e.g. VLLM_ALLOW_LONG_MAX_MODEL_LEN=1) are read as vLLM reads them.

Exit status: 0 fits, 1 vLLM would fail to start, 2 bad input: a value vLLM would refuse
(--max-model-len -5, -tp 3 for 64 heads, ...), an unknown model or GPU, a bad option.
"""


def _check_options(options: Sequence[str], version: str) -> None:
    """An option the modelled vLLM release does not have is a usage error, as in vLLM
    ("unrecognized arguments"), naming the nearest one (profiles/vllm-flags.yaml)."""
    table = vllm_flag_table()
    for option in options:
        if option.startswith("-O") and not option.startswith("--"):
            continue
        verdict = table.judge(option, version)
        if verdict.status == "ambiguous":
            raise VllmFitError(f"{verdict.option} is ambiguous in vLLM {version} ({', '.join(verdict.matches)}); "
                               f"vLLM would refuse to start")
        if verdict.status == "unknown":
            hint = f" (did you mean {verdict.nearest}?)" if verdict.nearest else ""
            since = f"; it exists in {verdict.releases[0]}-{verdict.releases[1]}" if verdict.releases else ""
            said = (f"vLLM {version} has no option {verdict.option}" if verdict.version_known else
                    f"no vLLM release {table.first_version()}-{table.last_version()} has the option {verdict.option}")
            raise VllmFitError(f"{said}{hint}{since}; vLLM exits with \"unrecognized arguments\"")


_OURS_WITH_VALUE = {"--gpu", "--vllm-version", "-o", "--output", "--gpus-per-node", "--concurrency-threshold",
                    "--profiles"}
# Reasons that mean vLLM refuses the typed values themselves: a usage error of `plan`, not a verdict.
_USAGE_CODES = frozenset({"invalid-argument", "invalid-parallelism"})
_REFUSED_PREFIX = "vLLM would refuse to start: "



def _positive_int(flag: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise VllmFitError(f"{flag} takes a whole number of GPUs (1 or more), not {raw!r}") from None
    if value < 1:
        raise VllmFitError(f"{flag} takes a whole number of GPUs (1 or more), not {value}")
    return value


def _threshold(flag: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise VllmFitError(f"{flag} takes a number of concurrent requests such as 2 or 0.5, not {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise VllmFitError(f"{flag} takes a number of concurrent requests, 0 or more, not {raw!r}")
    return value


def _usage_error(result: MemoryPlan) -> Optional[str]:
    """The one line for values vLLM would refuse before it touches memory, else None."""
    for reason in result.verdict.reasons:
        if reason.code in _USAGE_CODES:
            return reason.message.removeprefix(_REFUSED_PREFIX) + " (vLLM would refuse to start)"
    return None


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or "--help" in argv or "-h" in argv:
        sys.stdout.write(help_text())
        return EXIT_FITS if argv else EXIT_BAD_INPUT
    try:
        ours, rest = split_options(argv, _OURS_WITH_VALUE)
        output = ours.get("--output", "table")
        if output not in ("table", "json"):
            raise VllmFitError(f"-o must be table or json, not {output!r}")
        gpus_per_node = _positive_int("--gpus-per-node", ours.get("--gpus-per-node", str(DEFAULT_GPUS_PER_NODE)))
        threshold = _threshold("--concurrency-threshold",
                               ours.get("--concurrency-threshold", str(DEFAULT_CONCURRENCY_THRESHOLD)))
        version = ours.get("--vllm-version")
        if version is not None:
            parse_version(version)
        # vLLM reads VLLM_* variables (e.g. VLLM_ALLOW_LONG_MAX_MODEL_LEN); so does the plan.
        env = {k: v for k, v in os.environ.items() if k.startswith("VLLM_") and not k.startswith("VLLM_FIT_")}
        parsed = parse_vllm_args(rest, vllm_version=version, env=env)
        _check_options(parsed.options, version or DEFAULT_VLLM_VERSION)
        launch = parsed.launch
        if version:
            launch = launch.model_copy(update={"vllm_version_source": "--vllm-version"})
        if not launch.model:
            raise VllmFitError("give a MODEL (a Hugging Face id or a directory with config.json)")
        catalog = gpu_catalog()
        gpu = catalog.resolve(ours.get("--gpu", "H100-80GB"))
        model = default_resolver().resolve(launch.model, launch.revision)
        profiles = runtime_profiles_with(ours.get("--profiles"))
        result = plan(model, launch, gpu, profiles, gpus_per_node=gpus_per_node, concurrency_threshold=threshold)
        refused = _usage_error(result)
        if refused:
            raise VllmFitError(refused)
        if parsed.ignored:
            sys.stderr.write(f"vllm-fit plan: ignoring options that do not change memory: {' '.join(parsed.ignored)}\n")
        sweep = []
        if launch.tensor_parallel_size is None:
            for tp in valid_tensor_parallel_sizes(model, gpus_per_node):
                sweep.append(plan(model, launch.model_copy(update={"tensor_parallel_size": tp}), gpu, profiles,
                                  gpus_per_node=gpus_per_node, concurrency_threshold=threshold, suggest=False))
    except VllmFitError as exc:
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
