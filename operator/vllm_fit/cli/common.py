"""What the subcommands share: the bundled data, and rendering a plan for people."""

from __future__ import annotations

import math
from typing import AbstractSet, Iterable, Sequence

from ..errors import VllmFitError
from ..memory.plan import MemoryPlan
from ..memory.versions import behaviour_for

GREEN, RED, YELLOW, BOLD, RESET = "\033[32m", "\033[31m", "\033[33m", "\033[1m", "\033[0m"


def split_options(argv: Sequence[str], with_value: AbstractSet[str]) -> tuple[dict[str, str], list[str]]:
    """Our options among `argv` (exact names only: `--gpu` must not swallow vLLM's
    --gpu-memory-utilization), each with its value (`--name VALUE` or `--name=VALUE`, `-o` as
    `--output`), and the rest of `argv` in order."""
    ours: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        name, eq, value = token.partition("=")
        if name in with_value:
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


def paint(text: str, colour: str, enabled: bool) -> str:
    return f"{colour}{text}{RESET}" if enabled else text


def verdict_word(plan: MemoryPlan) -> str:
    if not plan.verdict.fits:
        return "REJECT"
    return "WARN" if plan.verdict.reasons else "FITS"


def render_plan(plan: MemoryPlan, *, colour: bool = False) -> str:
    p, g, kv, s = plan.per_gpu, plan.gpu, plan.kv_cache, plan.settings
    par = plan.parallel
    if not s or not plan.valid:
        # vLLM rejects the arguments before it measures memory: a breakdown would be made up.
        # The reasons say why and what would work.
        head = f"{plan.model} on {g['name']}, vLLM {plan.vllm_version}"
        if s:
            head += (f"\nTP={par['tensor_parallel_size']} PP={par['pipeline_parallel_size']} "
                     f"DP={par['data_parallel_size']}")
        lines = [head, "", paint("REJECT", BOLD + RED, colour) + " - vLLM will not start"]
        lines += [f"  {r.severity}: [{r.code}] {r.message}" for r in plan.verdict.reasons]
        return "\n".join(lines)
    lines = [
        f"{plan.model} on {g['name']} ({g['total_gib']:.2f} GiB{', nominal' if g.get('nominal') else ''}), "
        f"vLLM {plan.vllm_version} (profile {plan.profile_band}"
        + (f"; {plan.vllm_version_source}" if plan.vllm_version_source.startswith("default") else "") + ")",
        f"TP={par['tensor_parallel_size']} PP={par['pipeline_parallel_size']} DP={par['data_parallel_size']}  "
        f"util {s.get('gpu_memory_utilization', 0):.2f}  max-model-len {kv.max_model_len:,}  block {kv.block_size}  "
        f"kv-cache-dtype {kv.kv_cache_dtype}",
        "",
        "  per GPU                GiB",
        f"  weights           {p.weights_gib:8.2f}",
        f"  activation        {p.activation_gib:8.2f}",
        f"  non-torch         {p.non_torch_gib:8.2f}",
        _graphs_line(plan),
        f"  requested         {p.requested_gib:8.2f}  ({s.get('gpu_memory_utilization', 0):.2f} x {g['total_gib']:.2f})",
        f"  KV cache          {p.kv_cache_gib:8.2f}",
        "",
        f"  KV cache: {kv.blocks:,} blocks x {kv.block_size} tokens, {kv.bytes_per_token:,} B/token, "
        f"GPU KV cache size {kv.tokens:,} tokens, max concurrency {kv.max_concurrency:.2f}x at {kv.max_model_len:,} tokens",
    ]
    derived = plan.derivation.get("lines") if plan.derivation else None
    if derived:
        lines.append("")
        lines.append("  how the overheads were derived (computed / fitted / measured):")
        for name, line in zip(("activation", "non_torch", "cuda_graph", "extensible_margin"), derived):
            kind = plan.derivation.get(name, {}).get("kind", "")  # type: ignore[union-attr]
            lines.append(f"    [{kind}] {line}")
    word = verdict_word(plan)
    colour_of = {"FITS": GREEN, "WARN": YELLOW, "REJECT": RED}[word]
    lines.append("")
    lines.append(paint(f"{word}", BOLD + colour_of, colour) + (" - vLLM will start" if plan.verdict.fits else " - vLLM will not start"))
    for reason in plan.verdict.reasons:
        lines.append(f"  {reason.severity}: [{reason.code}] {reason.message}")
    for note in plan.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def _graphs_line(plan: MemoryPlan) -> str:
    """The CUDA-graph row: none under --enforce-eager, never a negative figure."""
    if plan.settings.get("enforce_eager"):
        return f"  CUDA graphs       {'none':>8}  (--enforce-eager: no graphs are captured)"
    gib = max(plan.per_gpu.cuda_graph_gib, 0.0)  # a capture that freed memory needs none
    where = "subtracted from the budget" if _graphs_subtracted(plan) else "captured after the KV cache, in the headroom"
    term = plan.derivation.get("cuda_graph") if plan.derivation else None
    freed = -float((term or {}).get("parts", {}).get("logged_change", 0.0))  # type: ignore[union-attr]
    if freed > 0:
        where = f"capture measured {freed:.2f} GiB freed net: none needed"
    return f"  CUDA graphs       {gib:8.2f}  ({where})"


def _graphs_subtracted(plan: MemoryPlan) -> bool:
    return behaviour_for(plan.vllm_version).subtracts_cuda_graph_estimate and not plan.settings.get("enforce_eager")


def render_tp_table(plans: Iterable[MemoryPlan]) -> str:
    rows = ["  TP  weights GiB  KV cache GiB      tokens  concurrency  verdict"]
    for plan in plans:
        if not plan.valid:
            first = plan.verdict.reasons[0].code if plan.verdict.reasons else ""
            rows.append(f"  {plan.parallel['tensor_parallel_size']:>2}  {'-':>11}  {'-':>12}  {'-':>10}  {'-':>11}  "
                        f"{verdict_word(plan)}{' (' + first + ')' if first else ''}")
            continue
        conc = plan.kv_cache.max_concurrency
        conc_text = f"{conc:10.2f}x" if math.isfinite(conc) else "          -"
        first = plan.verdict.reasons[0].code if plan.verdict.reasons else ""
        rows.append(f"  {plan.parallel['tensor_parallel_size']:>2}  {plan.per_gpu.weights_gib:11.2f}  "
                    f"{plan.per_gpu.kv_cache_gib:12.2f}  {plan.kv_cache.tokens:10,}  {conc_text}  "
                    f"{verdict_word(plan)}{' (' + first + ')' if first else ''}")
    return "\n".join(rows)
