"""The per-rank memory plan: what vLLM will log at startup, whether it starts, and what would.

The work is split: `budget.py` evaluates vLLM's identity for one setting, `overheads.py`
derives activation, non-torch and CUDA-graph memory from the launch, `verdict.py` judges,
`suggest.py` looks for what would work. This module ties them together.
"""

from __future__ import annotations

import math
from typing import Optional

from ..launch.model import VllmLaunch
from .budget import _Evaluation, _evaluate, parallelism_problems, valid_tensor_parallel_sizes
from ..gpu_catalog import GpuSpec
from ..units import GIB
from .model_info import ModelInfo
from .result import (
    DEFAULT_CONCURRENCY_THRESHOLD,
    DEFAULT_GPUS_PER_NODE,
    KvCache,
    MemoryPlan,
    PerGpu,
    Reason,
    Severity,
    Suggestions,
    Verdict,
)
from .runtime import RuntimeProfiles
from .settings import InvalidSetting, Settings, resolve_settings
from .suggest import _suggest
from .verdict import _reasons, _short, gpu_count_fix, gpu_count_reason
from .versions import DEFAULT_VLLM_VERSION, NEWEST_MODELLED_VERSION, parse_version

__all__ = ["DEFAULT_CONCURRENCY_THRESHOLD", "DEFAULT_GPUS_PER_NODE", "KvCache", "MemoryPlan", "PerGpu", "Reason",
           "Severity", "Suggestions", "Verdict", "gpu_count_fix", "gpu_count_reason", "parallelism_problems", "plan",
           "valid_tensor_parallel_sizes"]


def plan(
    model: ModelInfo,
    launch: VllmLaunch,
    gpu: GpuSpec,
    profiles: RuntimeProfiles,
    *,
    gpus_given: Optional[int] = None,
    gpus_per_node: int = DEFAULT_GPUS_PER_NODE,
    concurrency_threshold: float = DEFAULT_CONCURRENCY_THRESHOLD,
    default_version: str = DEFAULT_VLLM_VERSION,
    suggest: bool = True,
) -> MemoryPlan:
    """Predict vLLM's startup memory for one launch on one GPU type. Raises VllmFitError on bad input."""
    g = model.geometry
    try:
        s = resolve_settings(launch, g, gpu, default_version=default_version)
    except InvalidSetting as exc:
        return _invalid_plan(model, launch, gpu, profiles, str(exc), default_version)
    ev = _evaluate(model, s, gpu, profiles)
    if s.max_model_len_auto and ev.layout is not None and ev.available_bytes > 0 and not ev.max_len_fits:
        fitted = ev.layout.estimate_max_model_len(ev.check_bytes, s.max_model_len, ev.in_flight, s.behaviour)
        if fitted > 0:
            s = s.model_copy(update={"max_model_len": fitted})
            ev = _evaluate(model, s, gpu, profiles)

    suggestions = _suggest(model, s, gpu, profiles, ev, gpus_per_node, gpus_given) if suggest else Suggestions()
    reasons = _reasons(model, s, gpu, ev, suggestions, gpus_given, concurrency_threshold)
    fits = not any(r.severity == "error" for r in reasons)
    result = _assemble(model, s, gpu, ev, reasons, fits, suggestions)
    result.__dict__["vllm_version_source"] = version_source(launch, default_version)
    # vLLM refuses the launch before it measures memory: the figures are not to be shown.
    result.__dict__["valid"] = not ev.problems and not (gpus_given is not None and gpus_given < s.gpus_per_replica)
    return result


def version_source(launch: VllmLaunch, default_version: str) -> str:
    """How the vLLM version a launch is judged as was decided."""
    if launch.vllm_version:
        return launch.vllm_version_source or "stated"
    if default_version == NEWEST_MODELLED_VERSION:
        return "default: the newest modelled release"
    return "default: configured"


def _invalid_plan(model: ModelInfo, launch: VllmLaunch, gpu: GpuSpec, profiles: RuntimeProfiles, message: str,
                  default_version: str) -> MemoryPlan:
    version = launch.vllm_version or default_version
    reason = Reason(code="invalid-argument", severity="error", message=f"vLLM would refuse to start: {message}",
                    summary=f"{_short(model.model_id)}: vLLM rejects the arguments: {message}"[:160])
    zero = PerGpu(weights_gib=0, activation_gib=0, non_torch_gib=0, cuda_graph_gib=0, requested_gib=0, kv_cache_gib=0)
    return MemoryPlan(
        model=model.model_id, vllm_version=version, profile_band=profiles.band_for(version).name,
        vllm_version_source=version_source(launch, default_version),
        gpu={"name": gpu.name, "total_gib": round(gpu.total_gib, 2), "nominal": gpu.nominal},
        parallel={"tensor_parallel_size": launch.tensor_parallel_size or 1,
                  "pipeline_parallel_size": launch.pipeline_parallel_size or 1,
                  "data_parallel_size": launch.data_parallel_size or 1},
        per_gpu=zero,
        kv_cache=KvCache(bytes_per_token=0, block_size=launch.block_size or 16, blocks=0, tokens=0,
                         max_model_len=launch.max_model_len or 0, max_concurrency=0.0,
                         kv_cache_dtype=launch.kv_cache_dtype or "auto"),
        verdict=Verdict(fits=False, reasons=(reason,)),
        suggestions=Suggestions(),
        valid=False,
    )


def _assemble(model: ModelInfo, s: Settings, gpu: GpuSpec, ev: _Evaluation, reasons: list[Reason], fits: bool,
              sug: Suggestions) -> MemoryPlan:
    c = ev.constants
    layout = ev.layout
    b = s.behaviour
    if layout is not None:
        tokens = layout.logged_tokens(ev.num_blocks, s.max_model_len, ev.in_flight, b) if ev.num_blocks > 0 else 0
        conc = ev.concurrency if ev.num_blocks > 0 else 0.0
        groups = tuple(f"{grp.spec.kind} x{grp.num_layers} layers, {grp.spec.page_size_bytes:,} B/page"
                       for grp in layout.groups)
        per_token, needed = layout.bytes_per_token, layout.bytes_needed(s.max_model_len, ev.in_flight, b)
    else:
        tokens, conc, groups, per_token, needed = 0, math.inf, (), 0, 0
    _, extra_note = model.extra_params()
    notes = [n for n in (extra_note, *ev.weights.notes, *c.notes, *model.caveats) if n]
    if gpu.unified_memory:
        notes.append(f"{gpu.name} has unified memory: its {gpu.total_gib:.2f} GiB is shared with the CPU, so vLLM sees "
                     f"only what the host leaves free at startup (taken as {gpu.host_reserve_bytes / GIB:.1f} GiB kept "
                     f"by the host, measured on an idle node; see the GPU catalog)")
    if gpu.nominal:
        notes.append(f"{gpu.name} total memory is nominal ({gpu.source}), not a torch reading")
    if s.kv_cache_memory_bytes is not None:
        notes.append("--kv-cache-memory-bytes replaces the gpu_memory_utilization budget (vLLM skips the subtraction)")
    if ev.offload_bytes:
        notes.append(f"--cpu-offload-gb {s.cpu_offload_gb:g}: up to that much of the decoder layers lives in CPU memory")
    if s.extensible_kv_cache:
        notes.append(f"vLLM {s.vllm_version} extensible KV cache: sized after warm-up and CUDA-graph capture, keeping "
                     f"the transient peak and a margin free (--gpu-memory-utilization "
                     f"{'unset: 1.0' if 'gpu_memory_utilization' in s.defaults_used else s.gpu_memory_utilization})")
        withheld = _extensible_withheld_bytes(s, gpu, ev)
        if 0.7 < s.gpu_memory_utilization < 1.0 and withheld >= GIB:
            # measure_kv_cache_blocks logs the same warning (budget of all free memory vs this one).
            notes.append(f"vLLM {s.vllm_version} warns: --gpu-memory-utilization {s.gpu_memory_utilization} keeps "
                         f"{withheld / GIB:.2f} GiB of free memory out of the KV cache; with the extensible KV cache "
                         f"it can be left unset unless other processes share the GPU")
    if s.behaviour.startup_plan and s.kv_cache_memory_bytes is None and s.vllm_version and \
            "VLLM_ENABLE_STARTUP_PLAN" in (s.env_flags or ()):
        notes.append("VLLM_ENABLE_STARTUP_PLAN=1: later boots reuse the first boot's KV size as "
                     "kv_cache_memory_bytes while the fingerprint and free memory match")
    if parse_version(s.vllm_version) < (0, 6, 0):
        notes.append(f"vLLM {s.vllm_version} predates the engines modelled here (0.6+); read the numbers as 0.6's")
    graphs = c.cuda_graph_gib if not s.enforce_eager else 0.0
    return MemoryPlan(
        model=model.model_id,
        vllm_version=s.vllm_version,
        profile_band=c.band,
        gpu={"name": gpu.name, "total_gib": round(gpu.total_gib, 2), "nominal": gpu.nominal},
        parallel={"tensor_parallel_size": s.tensor_parallel_size, "pipeline_parallel_size": s.pipeline_parallel_size,
                  "data_parallel_size": s.data_parallel_size},
        per_gpu=PerGpu.model_construct(
            weights_gib=round(ev.stage.weights_bytes / GIB, 4),
            activation_gib=c.activation_gib,
            non_torch_gib=c.non_torch_gib,
            cuda_graph_gib=graphs,
            requested_gib=round(ev.requested_bytes / GIB, 4),
            kv_cache_gib=round(ev.available_bytes / GIB, 4),
        ),
        kv_cache=KvCache.model_construct(
            bytes_per_token=per_token, block_size=s.block_size, blocks=ev.num_blocks, tokens=tokens,
            max_model_len=s.max_model_len, max_concurrency=round(conc, 4) if math.isfinite(conc) else 0.0,
            kv_cache_dtype=s.kv_cache_dtype, groups=groups, bytes_needed_for_max_model_len=needed,
        ),
        verdict=Verdict(fits=fits, reasons=tuple(reasons)),
        suggestions=sug,
        settings={**{k: v for k, v in s.__dict__.items() if k != "defaults_used"},
                  "defaults_used": list(s.defaults_used)},
        derivation=_derivation(s, ev),
        sources={"activation": c.activation.source, "non_torch": c.non_torch.source, "cuda_graph": c.cuda_graph.source,
                 "gpu_total": gpu.source, "weights": model.source or "architecture from config.json"},
        notes=tuple(dict.fromkeys(notes)),
    )


def _derivation(s: Settings, ev: _Evaluation) -> dict[str, object]:
    """How each overhead and the KV budget were obtained (the plan JSON's `derivation`)."""
    c = ev.constants
    out = c.derivation()
    budget = f"requested {ev.requested_bytes / GIB:.2f} GiB = {s.gpu_memory_utilization:g} x total"
    if s.kv_cache_memory_bytes is not None:
        kv = f"KV cache {s.kv_cache_memory_bytes / GIB:.2f} GiB = --kv-cache-memory-bytes (no subtraction)"
    elif c.extensible_margin is not None:
        kv = ("KV cache = min(requested - resident, free after warm-up - margin) - transient peak "
              "(resident: weights, non-torch, CUDA graphs; transient: activation)")
    else:
        kv = "KV cache = requested - weights - activation - non-torch" + (
            " - CUDA-graph estimate" if c.cuda_graph_subtracted else "")
    out["budget"] = {"requested": budget, "kv_cache": kv, "band": c.band}
    out["lines"] = [c.activation.derivation, c.non_torch.derivation, c.cuda_graph.derivation] + (
        [c.extensible_margin.derivation] if c.extensible_margin is not None else [])
    return out


def _extensible_withheld_bytes(s: Settings, gpu: GpuSpec, ev: _Evaluation) -> float:
    """What an explicit utilization keeps out of the extensible KV cache: the size with a budget of
    all memory free at start, less the size with this one (extensible_kv_cache.py)."""
    margin = ev.constants.extensible_margin
    if margin is None or s.kv_cache_memory_bytes is not None:
        return 0.0
    device_bound = ev.physical_bytes - ev.stage.weights_bytes - ev.constants.non_torch_gib * GIB - (
        max(ev.constants.cuda_graph_gib, 0.0) * GIB) - margin.gib * GIB - ev.constants.activation_gib * GIB
    return max(0.0, device_bound - ev.available_bytes)
