"""The per-rank budget: vLLM's available-KV identity evaluated for one setting.

vLLM's identity per rank (v0.11.0 Worker.determine_available_memory):
    available_kv = total x util - weights - activation - non_torch    (- cuda_graph from 0.20)
with `--kv-cache-memory-bytes` replacing the whole right-hand side; from 0.34 the extensible KV
cache sizes it after warm-up instead (overheads.py). The KV cache is then cut into blocks
(kv_cache.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from .geometry import ModelGeometry
from ..gpu_catalog import GpuSpec
from ..units import GIB
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
from .overheads import Overheads, compute_overheads
from .runtime import RuntimeProfiles
from .settings import Settings
from .weights import WeightsEstimate, estimate_weights, pad_vocab, pp_layer_counts


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
    constants: Overheads
    requested_bytes: float
    stage: _Stage  # the deciding stage (fewest blocks)
    num_blocks: int
    in_flight: int
    problems: tuple[str, ...]
    weights_exceed: bool
    physical_bytes: float
    cuda_graph_subtracted: bool
    offload_bytes: int = 0
    unified_memory: bool = False

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
        The CUDA context is already allocated by then. With the 0.34 extensible KV cache the
        budget is only a cap (request_memory skips the check)."""
        return (self.requested_bytes > self.physical_bytes and not self.settings.extensible_kv_cache
                and not self.unified_memory)

    @property
    def unified_free_tight(self) -> bool:
        """On unified memory the free memory at start depends on the host: asking for more than a
        typical idle host leaves is a risk, not a certain failure."""
        return (self.unified_memory and self.requested_bytes > self.physical_bytes
                and not self.settings.extensible_kv_cache)

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
    constants = _overheads(model, s, gpu, profiles)
    total = gpu.total_bytes
    requested = total * s.gpu_memory_utilization
    if b.requested_is_ceiled:
        requested = math.ceil(requested)
    subtract_graphs = constants.cuda_graph_subtracted
    graphs = max(constants.cuda_graph_gib, 0.0) * GIB if subtract_graphs else 0.0
    overhead = (constants.activation_gib + constants.non_torch_gib) * GIB + graphs
    # Memory in use before vLLM's first snapshot: the CUDA context, and on a unified-memory GPU
    # what the host keeps (free memory there is the host's MemAvailable, vLLM 0.29+ reads it so).
    context = profiles.cuda_context_gib.value * GIB + gpu.host_reserve_bytes
    margin = constants.extensible_margin.gib * GIB if constants.extensible_margin is not None else None
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
        elif margin is not None:
            # measure_kv_cache_bytes (0.34): everything resident but the KV cache is the engine's;
            # the cache gets the rest of the budget, capped by what is free less the margin,
            # and the transient peak is kept free on top.
            resident = w + (constants.non_torch_gib * GIB) + graphs
            transient = constants.activation_gib * GIB
            available = int(min(requested - resident, total - context - resident - margin) - transient)
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
    physical = total - context
    return _Evaluation(
        settings=s, weights=weights, constants=constants, requested_bytes=requested, stage=deciding,
        num_blocks=min(st.num_blocks for st in stages), in_flight=in_flight, problems=tuple(problems),
        weights_exceed=weights.load_peak_bytes - min(offload, max(weights.per_stage_layer_bytes)) > physical,
        physical_bytes=physical,
        cuda_graph_subtracted=subtract_graphs,
        offload_bytes=offload,
        unified_memory=gpu.unified_memory,
    )



def _overheads(model: ModelInfo, s: Settings, gpu: GpuSpec, profiles: RuntimeProfiles) -> Overheads:
    """compute_overheads, memoised on the geometry (a TP sweep asks for the same few)."""
    key = (s.vllm_version, s.tensor_parallel_size, s.pipeline_parallel_size, s.data_parallel_size,
           s.max_num_batched_tokens, s.max_num_seqs, s.dtype_bytes, s.enforce_eager, s.enable_expert_parallel,
           s.extensible_kv_cache, s.limit_mm_zero, s.distributed_executor_backend, s.flashinfer_sampler_env, s.v0_engine, gpu.name, gpu.vendor,
           gpu.compute_capability, model.model_id, id(profiles))
    cache = model.geometry.__dict__.setdefault("_overheads_cache", {})
    found = cache.get(key)
    if found is None:
        if len(cache) > 256:
            cache.clear()
        found = cache[key] = compute_overheads(model.geometry, s, gpu, profiles, model.model_id)
    return found
