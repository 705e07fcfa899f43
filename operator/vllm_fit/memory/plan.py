"""The per-rank memory plan: what vLLM will log at startup, whether it starts, and what would.

vLLM's identity per rank (v0.11.0 Worker.determine_available_memory):
    available_kv = total x util - weights - activation - non_torch    (- cuda_graph from 0.20)
with `--kv-cache-memory-bytes` replacing the whole right-hand side. The KV cache is then cut
into blocks (kv_cache.py) and the engine refuses to start when nothing is left or one request
of max_model_len does not fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from ..launch.model import VllmLaunch
from .geometry import ModelGeometry
from .gpu import GIB, GpuSpec
from .kv_cache import (
    ChunkedLocalAttentionSpec,
    FullAttentionSpec,
    KvLayout,
    KvSpec,
    MLAAttentionSpec,
    SlidingWindowSpec,
    build_layout,
)
from .model_info import ModelInfo
from .runtime import RuntimeConstants, RuntimeProfiles, runtime_constants
from .settings import InvalidSetting, Settings, resolve_settings
from .versions import DEFAULT_VLLM_VERSION, parse_version
from .weights import WeightsEstimate, estimate_weights, pad_vocab, pp_layer_counts

Severity = Literal["error", "warning"]
DEFAULT_CONCURRENCY_THRESHOLD = 2.0
DEFAULT_GPUS_PER_NODE = 8


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True)
    code: str
    severity: Severity
    message: str  # one line with the numbers and the fix
    summary: str = ""  # the same under ~120 characters, for admission warnings

    def short(self) -> str:
        return self.summary or self.message


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True)
    fits: bool
    reasons: tuple[Reason, ...] = ()

    @property
    def errors(self) -> tuple[Reason, ...]:
        return tuple(r for r in self.reasons if r.severity == "error")

    @property
    def warnings(self) -> tuple[Reason, ...]:
        return tuple(r for r in self.reasons if r.severity == "warning")


class PerGpu(BaseModel):
    model_config = ConfigDict(frozen=True)
    weights_gib: float
    activation_gib: float
    non_torch_gib: float
    cuda_graph_gib: float
    requested_gib: float
    kv_cache_gib: float


class KvCache(BaseModel):
    model_config = ConfigDict(frozen=True)
    bytes_per_token: int
    block_size: int
    blocks: int
    tokens: int
    max_model_len: int
    max_concurrency: float
    kv_cache_dtype: str
    groups: tuple[str, ...] = ()
    bytes_needed_for_max_model_len: int = 0


class Suggestions(BaseModel):
    model_config = ConfigDict(frozen=True)
    tensor_parallel_size: Optional[int] = None
    tensor_parallel_kv_cache_gib: Optional[float] = None
    tensor_parallel_max_concurrency: Optional[float] = None
    max_model_len: Optional[int] = None
    kv_cache_dtype: Optional[str] = None
    multi_node: Optional[dict[str, int]] = None


class MemoryPlan(BaseModel):
    """The result: per-GPU memory, the KV cache, a verdict with reasons, and suggestions."""

    model_config = ConfigDict(frozen=True)
    model: str
    vllm_version: str
    profile_band: str
    gpu: dict[str, object]
    parallel: dict[str, int]
    per_gpu: PerGpu
    kv_cache: KvCache
    verdict: Verdict
    suggestions: Suggestions
    settings: dict[str, object] = Field(default_factory=dict)
    sources: dict[str, str] = Field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_json_dict(self) -> dict[str, object]:
        return self.model_dump(mode="json")


# ---------------------------------------------------------------- validity

def parallelism_problems(g: ModelGeometry, tp: int, pp: int, dp: int = 1, *, expert_parallel: bool = False,
                         block_fp8: Optional[tuple[int, int]] = None) -> list[str]:
    """The checks vLLM makes on TP/PP (ModelConfig.verify_with_parallel_config, QKVParallelLinear,
    VocabParallelEmbedding, divide(), fp8 block shapes)."""
    problems: list[str] = []
    if g.num_attention_heads % tp:
        problems.append(f"Total number of attention heads ({g.num_attention_heads}) must be divisible by tensor "
                        f"parallel size ({tp})")
    if not g.mla:
        kv = g.num_kv_heads
        if (kv >= tp and kv % tp) or (kv < tp and tp % kv):
            problems.append(f"{kv} KV heads can be neither split nor replicated evenly over TP={tp}")
    padded = pad_vocab(g.vocab_size)
    if padded % tp:
        problems.append(f"padded vocab {padded} is not divisible by TP={tp}")
    if (not g.moe or len(g.moe.moe_layers) < g.num_layers) and g.intermediate_size % tp:
        problems.append(f"intermediate_size {g.intermediate_size} is not divisible by TP={tp}")
    if g.moe and not expert_parallel and g.moe.expert_intermediate_size % (tp * dp):
        problems.append(f"expert intermediate size {g.moe.expert_intermediate_size} is not divisible by TPxDP={tp * dp}")
    if block_fp8:
        bn = block_fp8[0]
        if (g.intermediate_size // tp) % bn and (not g.moe or len(g.moe.moe_layers) < g.num_layers):
            problems.append(f"Weight output_partition_size = {g.intermediate_size // tp} is not divisible by weight "
                            f"quantization block_n = {bn}")
        if g.moe and not expert_parallel and (g.moe.expert_intermediate_size // (tp * dp)) % bn:
            problems.append(f"expert intermediate_size_per_partition {g.moe.expert_intermediate_size // (tp * dp)} "
                            f"is not divisible by the fp8 block {bn}")
    if pp > g.num_layers:
        problems.append(f"PP={pp} is more than the {g.num_layers} decoder layers")
    return problems


def valid_tensor_parallel_sizes(model: ModelInfo, up_to: int) -> list[int]:
    g = model.geometry
    block = g.quant.block_size if g.quant and g.quant.method == "fp8" else None
    return [tp for tp in range(1, up_to + 1) if not parallelism_problems(g, tp, 1, block_fp8=block)]


# ---------------------------------------------------------------- evaluation

def _layer_specs(g: ModelGeometry, layers: range, s: Settings) -> dict[KvSpec, int]:
    """The KV spec of each attention layer on this rank, counted by distinct spec."""
    kinds: dict[str, int] = {}
    for i in layers:
        kind = "mla" if g.mla else g.layer_attention[i]
        kinds[kind] = kinds.get(kind, 0) + 1
    counts: dict[KvSpec, int] = {}
    for kind, count in kinds.items():
        spec = _spec_for(g, kind, s)
        counts[spec] = counts.get(spec, 0) + count
    return counts


def _layout(g: ModelGeometry, first: int, count: int, s: Settings) -> Optional[KvLayout]:
    """The KV layout of the layers [first, first+count) on one rank (cached on the geometry)."""
    key = (first, count, s.tensor_parallel_size, s.block_size, s.kv_cache_dtype_bytes, s.disable_sliding_window,
           s.hybrid_kv_cache_manager)
    cache = g.__dict__.setdefault("_layout_cache", {})
    if key not in cache:
        cache[key] = build_layout(_layer_specs(g, range(first, first + count), s), hybrid_manager=s.hybrid_kv_cache_manager)
    return cache[key]


def _spec_for(g: ModelGeometry, kind: str, s: Settings) -> KvSpec:
    common = dict(block_size=s.block_size, dtype_bytes=s.kv_cache_dtype_bytes)
    if g.mla:
        return MLAAttentionSpec(num_kv_heads=1, head_size=g.mla.kv_lora_rank + g.mla.qk_rope_head_dim, **common)
    heads = max(1, g.num_kv_heads // s.tensor_parallel_size)
    if kind == "sliding" and g.sliding_window and not s.disable_sliding_window:
        return SlidingWindowSpec(num_kv_heads=heads, head_size=g.head_dim, sliding_window=g.sliding_window, **common)
    if kind == "chunked" and g.attention_chunk_size:
        return ChunkedLocalAttentionSpec(num_kv_heads=heads, head_size=g.head_dim,
                                         attention_chunk_size=g.attention_chunk_size, **common)
    return FullAttentionSpec(num_kv_heads=heads, head_size=g.head_dim, **common)


@dataclass(frozen=True)
class _Stage:
    weights_bytes: int
    available_bytes: int
    layout: Optional[KvLayout]
    num_blocks: int


@dataclass(frozen=True)
class _Evaluation:
    """Numbers for one setting, before suggestions (cheap enough to run for every TP)."""

    settings: Settings
    weights: WeightsEstimate
    constants: RuntimeConstants
    requested_bytes: float
    stage: _Stage  # the deciding stage (fewest blocks)
    num_blocks: int
    in_flight: int
    problems: tuple[str, ...]
    weights_exceed: bool
    physical_bytes: float
    cuda_graph_subtracted: bool
    offload_bytes: int = 0

    @property
    def available_bytes(self) -> int:
        return self.stage.available_bytes

    @property
    def layout(self) -> Optional[KvLayout]:
        return self.stage.layout

    @property
    def check_bytes(self) -> int:
        """The bytes vLLM's max-model-len check and auto-fit compare against (from 0.29 one block is
        held back for BlockPool's null block)."""
        layout = self.layout
        held = layout.bytes_per_block if layout is not None and self.settings.behaviour.holds_back_null_block else 0
        return self.available_bytes - held

    @property
    def max_len_fits(self) -> bool:
        layout = self.layout
        if layout is None:
            return True
        b = self.settings.behaviour
        return layout.bytes_needed(self.settings.max_model_len, self.in_flight, b) <= self.check_bytes

    @property
    def concurrency(self) -> float:
        if self.layout is None:
            return math.inf
        return self.layout.max_concurrency(self.num_blocks, self.settings.max_model_len, self.in_flight,
                                           self.settings.behaviour)

    @property
    def free_memory_short(self) -> bool:
        """vLLM's first check (Worker.init_device): free memory at start must cover total x util.
        The CUDA context is already allocated by then."""
        return self.requested_bytes > self.physical_bytes

    @property
    def kv_memory_exceeds_gpu(self) -> bool:
        """--kv-cache-memory-bytes is taken as given, without any check against free memory."""
        s, c = self.settings, self.constants
        if s.kv_cache_memory_bytes is None:
            return False
        used = self.stage.weights_bytes + (c.activation_gib + c.non_torch_gib) * GIB + s.kv_cache_memory_bytes
        return used > self.physical_bytes

    @property
    def starts(self) -> bool:
        return (not self.problems and not self.weights_exceed and not self.free_memory_short
                and not self.kv_memory_exceeds_gpu and self.available_bytes > 0 and self.max_len_fits)


def _scaled_activation(c: RuntimeConstants, s: Settings) -> RuntimeConstants:
    """Activation was measured at one dummy batch (profile_run: max_num_batched_tokens tokens, then
    the sampler on min(max_num_seqs, tokens) rows). Its forward part grows with the tokens and its
    sampler part with the rows, so a smaller batch scales it down by the larger of the two ratios
    (an upper bound if both parts are linear). A larger batch keeps the measured value and says so."""
    point = c.activation_measured_at
    rows, measured_rows = min(s.max_num_seqs, s.max_num_batched_tokens), min(point.max_num_seqs,
                                                                             point.max_num_batched_tokens)
    ratio = max(s.max_num_batched_tokens / point.max_num_batched_tokens, rows / measured_rows)
    if ratio == 1:
        return c
    if ratio < 1:
        note = (f"activation scaled by {ratio:.2f} from its measurement at {point.max_num_batched_tokens} batched "
                f"tokens / {point.max_num_seqs} sequences to {s.max_num_batched_tokens} / {s.max_num_seqs}")
        return c.model_copy(update={"activation_gib": round(c.activation_gib * ratio, 4),
                                    "notes": c.notes + (note,)})
    note = (f"activation was measured at {point.max_num_batched_tokens} batched tokens / {point.max_num_seqs} "
            f"sequences; at {s.max_num_batched_tokens} / {s.max_num_seqs} vLLM needs more than shown")
    return c.model_copy(update={"notes": c.notes + (note,)})


def _evaluate(model: ModelInfo, s: Settings, gpu: GpuSpec, profiles: RuntimeProfiles) -> _Evaluation:
    g = model.geometry
    b = s.behaviour
    tp, pp, dp = s.tensor_parallel_size, s.pipeline_parallel_size, s.data_parallel_size
    block = g.quant.block_size if g.quant and g.quant.method == "fp8" else None
    problems = parallelism_problems(g, tp, pp, dp, expert_parallel=s.enable_expert_parallel, block_fp8=block)
    extra, _ = model.extra_params()
    # MXFP4's resident layout depends on the kernel vLLM picks: Hopper's Triton swizzle is modelled;
    # a GPU given only by its size is taken to be the Hopper the layout was measured on.
    hopper = gpu.compute_capability is None or gpu.compute_capability.startswith("9.")
    weights = estimate_weights(g, tp=tp, pp=pp, dp=dp, expert_parallel=s.enable_expert_parallel,
                               model_dtype_bytes=s.dtype_bytes, runtime_quant=s.runtime_quant, extra_params=extra,
                               hopper=hopper)
    constants = _scaled_activation(runtime_constants(
        profiles, s.vllm_version, model_id=model.model_id, architecture=g.architecture, is_moe=g.moe is not None,
        is_multimodal=g.is_multimodal, tp=tp, pp=pp, enforce_eager=s.enforce_eager), s)
    total = gpu.total_bytes
    requested = total * s.gpu_memory_utilization
    if b.requested_is_ceiled:
        requested = math.ceil(requested)
    subtract_graphs = b.subtracts_cuda_graph_estimate and not s.enforce_eager
    overhead = (constants.activation_gib + constants.non_torch_gib
                + (max(constants.cuda_graph_gib, 0.0) if subtract_graphs else 0.0)) * GIB
    # Sliding-window layers reserve the tokens of the batches in flight: one batch before 0.26,
    # then two with async scheduling (PP=1) or one per PP stage.
    in_flight = s.max_num_batched_tokens
    if b.sliding_window_in_flight_factor > 1:
        in_flight *= b.sliding_window_in_flight_factor if pp == 1 else pp
    offload = int((s.cpu_offload_gb or 0) * GIB)
    stages: list[_Stage] = []
    first = 0
    for stage_index, count in enumerate(pp_layer_counts(g.num_layers, pp)):
        # --cpu-offload-gb moves decoder-layer parameters to pinned CPU memory (maybe_offload_to_cpu).
        w = weights.per_stage_bytes[stage_index] - min(offload, weights.per_stage_layer_bytes[stage_index])
        if s.kv_cache_memory_bytes is not None:
            available = s.kv_cache_memory_bytes
        else:
            available = int(requested - w - overhead)
        layout = _layout(g, first, count, s)
        first += count
        if layout is None:
            blocks = 1
        else:
            usable = available - (layout.bytes_per_block if b.holds_back_null_block else 0)
            blocks = layout.num_blocks(usable)
        if s.num_gpu_blocks_override is not None:
            blocks = s.num_gpu_blocks_override
        stages.append(_Stage(weights_bytes=w, available_bytes=available, layout=layout, num_blocks=blocks))
    deciding = min(stages, key=lambda st: (st.num_blocks, st.available_bytes))
    context = profiles.cuda_context_gib.value * GIB
    physical = total - context
    return _Evaluation(
        settings=s, weights=weights, constants=constants, requested_bytes=requested, stage=deciding,
        num_blocks=min(st.num_blocks for st in stages), in_flight=in_flight, problems=tuple(problems),
        weights_exceed=weights.load_peak_bytes - min(offload, max(weights.per_stage_layer_bytes)) > physical,
        physical_bytes=physical,
        cuda_graph_subtracted=subtract_graphs,
        offload_bytes=offload,
    )


# ---------------------------------------------------------------- the public entry point

def _short(model_id: str) -> str:
    return model_id.rsplit("/", 1)[-1]


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

    suggestions = _suggest(model, s, gpu, profiles, ev, gpus_per_node) if suggest else Suggestions()
    reasons = _reasons(model, s, gpu, ev, suggestions, gpus_given, concurrency_threshold)
    fits = not any(r.severity == "error" for r in reasons)
    return _assemble(model, s, gpu, ev, reasons, fits, suggestions)


def _invalid_plan(model: ModelInfo, launch: VllmLaunch, gpu: GpuSpec, profiles: RuntimeProfiles, message: str,
                  default_version: str) -> MemoryPlan:
    version = launch.vllm_version or default_version
    reason = Reason(code="invalid-argument", severity="error", message=f"vLLM would refuse to start: {message}",
                    summary=f"{_short(model.model_id)}: vLLM rejects the arguments: {message}"[:160])
    zero = PerGpu(weights_gib=0, activation_gib=0, non_torch_gib=0, cuda_graph_gib=0, requested_gib=0, kv_cache_gib=0)
    return MemoryPlan(
        model=model.model_id, vllm_version=version, profile_band=profiles.band_for(version).name,
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
    )


def _with_tp(s: Settings, tp: int, **extra) -> Settings:  # noqa: ANN003
    return s.model_copy(update={"tensor_parallel_size": tp, **extra})


def _suggest(model: ModelInfo, s: Settings, gpu: GpuSpec, profiles: RuntimeProfiles, ev: _Evaluation,
             gpus_per_node: int) -> Suggestions:
    if ev.starts:
        return Suggestions()
    out: dict[str, object] = {}
    # The smallest valid TP at the same settings that starts.
    for tp in valid_tensor_parallel_sizes(model, gpus_per_node):
        if tp == s.tensor_parallel_size:
            continue
        candidate = _evaluate(model, _with_tp(s, tp), gpu, profiles)
        if candidate.starts:
            out["tensor_parallel_size"] = tp
            out["tensor_parallel_kv_cache_gib"] = round(candidate.available_bytes / GIB, 2)
            out["tensor_parallel_max_concurrency"] = round(candidate.concurrency, 2)
            break
    # The longest max-model-len that fits at this TP.
    if not ev.problems and not ev.weights_exceed and ev.available_bytes > 0 and not ev.max_len_fits and ev.layout:
        longest = ev.layout.estimate_max_model_len(ev.check_bytes, s.max_model_len, ev.in_flight, s.behaviour)
        if longest > 0:
            out["max_model_len"] = longest
        if s.kv_cache_dtype_bytes > 1:
            fp8 = _evaluate(model, s.model_copy(update={"kv_cache_dtype": "fp8", "kv_cache_dtype_bytes": 1}), gpu, profiles)
            if fp8.starts:
                out["kv_cache_dtype"] = "fp8"
    # Nothing on one node: the smallest multi-node TP x PP layout.
    if "tensor_parallel_size" not in out and (ev.weights_exceed or ev.available_bytes <= 0):
        tp = max(valid_tensor_parallel_sizes(model, gpus_per_node) or [1])
        for pp in range(2, 17):
            if pp > model.geometry.num_layers:
                break
            candidate = _evaluate(model, s.model_copy(update={"tensor_parallel_size": tp, "pipeline_parallel_size": pp}),
                                  gpu, profiles)
            if candidate.starts:
                out["multi_node"] = {"tensor_parallel_size": tp, "pipeline_parallel_size": pp,
                                     "nodes": math.ceil(tp * pp / gpus_per_node)}
                break
    return Suggestions(**out)


def _fix_text(s: Settings, sug: Suggestions, gpus_per_node: int = DEFAULT_GPUS_PER_NODE) -> str:
    fixes: list[str] = []
    if sug.tensor_parallel_size:
        fixes.append(f"TP={sug.tensor_parallel_size} gives {sug.tensor_parallel_kv_cache_gib:.2f} GiB "
                     f"({sug.tensor_parallel_max_concurrency:.2f}x concurrency at {s.max_model_len:,} tokens)")
    if sug.max_model_len:
        fixes.append(f"--max-model-len {sug.max_model_len} fits at TP={s.tensor_parallel_size}")
    if sug.kv_cache_dtype:
        fixes.append(f"--kv-cache-dtype {sug.kv_cache_dtype} fits")
    if not fixes and sug.multi_node:
        m = sug.multi_node
        fixes.append(f"no TP on one {gpus_per_node}-GPU node fits; try TP={m['tensor_parallel_size']} x "
                     f"PP={m['pipeline_parallel_size']} over {m['nodes']} nodes (e.g. a LeaderWorkerSet)")
    return "; ".join(fixes)


def _short_fix(sug: Suggestions) -> str:
    if sug.tensor_parallel_size:
        return f"; TP={sug.tensor_parallel_size} gives {sug.tensor_parallel_kv_cache_gib:.1f} GiB"
    if sug.max_model_len:
        return f"; max-model-len {sug.max_model_len} fits"
    if sug.multi_node:
        m = sug.multi_node
        return f"; try TP={m['tensor_parallel_size']}xPP={m['pipeline_parallel_size']}"
    return ""


def _reasons(model: ModelInfo, s: Settings, gpu: GpuSpec, ev: _Evaluation, sug: Suggestions,
             gpus_given: Optional[int], threshold: float) -> list[Reason]:
    reasons: list[Reason] = []
    name = _short(model.model_id)
    where = f"{name} at TP={s.tensor_parallel_size}" + (f" PP={s.pipeline_parallel_size}" if s.pipeline_parallel_size > 1 else "")
    where += f" on {gpu.name}"
    fix = _fix_text(s, sug)
    then = f"; {fix}" if fix else ""
    if ev.problems:
        valid = valid_tensor_parallel_sizes(model, max(DEFAULT_GPUS_PER_NODE, s.tensor_parallel_size))
        reasons.append(Reason(code="invalid-parallelism", severity="error",
                              message=f"{where}: {ev.problems[0]}; valid TP sizes: {', '.join(map(str, valid))}",
                              summary=f"{name}: TP={s.tensor_parallel_size} is invalid; valid TP: {', '.join(map(str, valid))}"))
    if gpus_given is not None and gpus_given != s.gpus_per_replica:
        need = s.gpus_per_replica
        if gpus_given < need:
            reasons.append(Reason(code="gpu-count-mismatch", severity="error",
                                  message=f"{where}: TPxPPxDP needs {need} GPUs but the pod gets {gpus_given}",
                                  summary=f"{name}: needs {need} GPUs (TPxPPxDP), pod gets {gpus_given}"))
        else:
            reasons.append(Reason(code="gpu-count-mismatch", severity="warning",
                                  message=f"{name}: the pod gets {gpus_given} GPUs but TPxPPxDP uses {need}; "
                                          f"{gpus_given - need} sit idle",
                                  summary=f"{name}: {gpus_given} GPUs requested, TPxPPxDP uses {need}"))
    if ev.free_memory_short:
        reasons.append(Reason(
            code="insufficient-free-memory", severity="error",
            message=f"{where}: --gpu-memory-utilization {s.gpu_memory_utilization} asks for "
                    f"{ev.requested_bytes / GIB:.2f} GiB but only {ev.physical_bytes / GIB:.2f} GiB is free after the "
                    f"CUDA context (vLLM: Free memory on device ... is less than desired GPU memory utilization)",
            summary=f"{name}: util {s.gpu_memory_utilization} asks more than the free "
                    f"{ev.physical_bytes / GIB:.2f} GiB of {gpu.name}"))
    if ev.kv_memory_exceeds_gpu:
        reasons.append(Reason(
            code="kv-cache-memory-exceeds-gpu", severity="error",
            message=f"{where}: --kv-cache-memory-bytes {s.kv_cache_memory_bytes / GIB:.2f} GiB on top of "
                    f"{ev.stage.weights_bytes / GIB:.2f} GiB weights and {ev.constants.activation_gib:.2f} GiB activation "
                    f"exceeds the {ev.physical_bytes / GIB:.2f} GiB free (vLLM allocates it unchecked and runs out of "
                    f"memory)",
            summary=f"{name}: --kv-cache-memory-bytes does not fit beside the weights on {gpu.name}"))
    w_gib = ev.weights.load_peak_bytes / GIB
    if ev.weights_exceed:
        reasons.append(Reason(code="weights-exceed-gpu", severity="error",
                              message=f"{where}: weights need {w_gib:.2f} GiB per GPU but only "
                                      f"{ev.physical_bytes / GIB:.2f} GiB is free after the CUDA context; "
                                      f"OOM while loading{then}",
                              summary=f"{name}: {w_gib:.1f} GiB weights/GPU exceed {gpu.name} at TP={s.tensor_parallel_size}"
                                      + _short_fix(sug)))
    elif ev.available_bytes <= 0 and not ev.problems and not ev.free_memory_short:
        c = ev.constants
        reasons.append(Reason(code="no-kv-cache-memory", severity="error",
                              message=f"{where}: {ev.stage.weights_bytes / GIB:.2f} GiB weights + {c.activation_gib:.2f} "
                                      f"activation + {c.non_torch_gib:.2f} non-torch leave "
                                      f"{ev.available_bytes / GIB:.2f} GiB of the {ev.requested_bytes / GIB:.2f} GiB budget "
                                      f"for the KV cache (vLLM: No available memory for the cache blocks){then}",
                              summary=f"{name}: no KV cache memory at TP={s.tensor_parallel_size} "
                                      f"({ev.available_bytes / GIB:.2f} GiB)" + _short_fix(sug)))
    elif not ev.max_len_fits and not ev.problems and ev.layout is not None:
        need = ev.layout.bytes_needed(s.max_model_len, ev.in_flight, s.behaviour)
        longest = ev.layout.estimate_max_model_len(ev.check_bytes, s.max_model_len, ev.in_flight, s.behaviour)
        reasons.append(Reason(code="max-model-len-exceeds-kv-cache", severity="error",
                              message=f"{where}: one {s.max_model_len:,}-token request needs {need / GIB:.2f} GiB of KV "
                                      f"cache but only {ev.available_bytes / GIB:.2f} GiB is available; vLLM's estimated "
                                      f"maximum model length is {longest}{then}",
                              summary=f"{name}: max-model-len {s.max_model_len} needs {need / GIB:.2f} GiB KV, "
                                      f"{ev.available_bytes / GIB:.2f} available" + _short_fix(sug)))
    fits_so_far = not any(r.severity == "error" for r in reasons)
    if fits_so_far and not ev.cuda_graph_subtracted and not s.enforce_eager and not ev.free_memory_short:
        headroom = gpu.total_bytes * (1 - s.gpu_memory_utilization) - (gpu.total_bytes - ev.physical_bytes)
        sampler = min(s.max_num_seqs, s.max_num_batched_tokens) * pad_vocab(model.geometry.vocab_size) * 4
        graphs = max(ev.constants.cuda_graph_gib, 0.0) * GIB
        if graphs + sampler > headroom:
            reasons.append(Reason(code="cuda-graph-headroom", severity="warning",
                                  message=f"{name}: CUDA graphs (~{graphs / GIB:.2f} GiB) + sampler warm-up "
                                          f"({sampler / GIB:.2f} GiB) may not fit the {headroom / GIB:.2f} GiB left by "
                                          f"--gpu-memory-utilization {s.gpu_memory_utilization}",
                                  summary=f"{name}: CUDA graphs + sampler may not fit the "
                                          f"{headroom / GIB:.2f} GiB left by util {s.gpu_memory_utilization}"))
    if fits_so_far and ev.layout is not None and ev.concurrency < threshold:
        reasons.append(Reason(code="low-concurrency", severity="warning",
                              message=f"{name}: only {ev.concurrency:.2f}x concurrency at {s.max_model_len:,} tokens "
                                      f"({ev.available_bytes / GIB:.2f} GiB KV cache); threshold {threshold:g}x",
                              summary=f"{name}: only {ev.concurrency:.2f}x concurrency at {s.max_model_len} tokens "
                                      f"({ev.available_bytes / GIB:.2f} GiB KV)"))
    return reasons


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
    if gpu.nominal:
        notes.append(f"{gpu.name} total memory is nominal ({gpu.source}), not a torch reading")
    if s.kv_cache_memory_bytes is not None:
        notes.append("--kv-cache-memory-bytes replaces the gpu_memory_utilization budget (vLLM skips the subtraction)")
    if ev.offload_bytes:
        notes.append(f"--cpu-offload-gb {s.cpu_offload_gb:g}: up to that much of the decoder layers lives in CPU memory")
    if parse_version(s.vllm_version) < (0, 11, 0):
        notes.append(f"vLLM {s.vllm_version} predates the V1 engine modelled here (0.11+); read the numbers as 0.11's")
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
        sources={"activation": c.activation_source, "non_torch": c.non_torch_source, "cuda_graph": c.cuda_graph_source,
                 "gpu_total": gpu.source, "weights": model.source or "architecture from config.json"},
        notes=tuple(dict.fromkeys(notes)),
    )
