"""Weights per GPU, as vLLM shards and stores them ("Model loading took X GiB").

Each tensor family of the architecture is placed the way vLLM's layers place it (v0.11.0):
- `VocabParallelEmbedding`/`ParallelLMHead`: vocab padded to a multiple of 64
  (`pad_vocab_size`, DEFAULT_VOCAB_PADDING_SIZE), rows split over TP; a tied lm_head shares
  the embedding, except on the last PP stage when PP > 1.
- `QKVParallelLinear`: query heads split over TP; KV heads split, or replicated one per rank
  when TP >= KV heads (`num_kv_head_replicas`).
- `MergedColumnParallelLinear`/`RowParallelLinear`: output/input dim split over TP.
- `ReplicatedLinear`, norms, MoE routers, MLA down-projections: whole on every rank.
- `FusedMoE`: experts split over the flattened TP x DP group (`FusedMoEParallelConfig.make`),
  by intermediate size, or by whole experts with --enable-expert-parallel.
- PP: decoder layers split by `get_pp_indices` (remainder to the later stages); embedding on
  the first stage, final norm and lm_head on the last.
- RoPE: one cos/sin cache per rank, `positions x rotary_dim` in the model dtype
  (`RotaryEmbedding._compute_cos_sin_cache`, cast to the model dtype in __init__).
Quantized linear layers are priced with the storage vLLM allocates for the scheme
(`create_weights` of the quantization method): see `_linear_allocs`.

"Model loading took" is torch's `max_memory_allocated()` after `empty_cache()`, so it counts
allocator blocks, not tensor bytes: see `allocator_block_bytes`. vLLM fuses q/k/v into one
tensor and gate/up into one, so each is one allocation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict

from .geometry import ModelGeometry, QuantConfig

Parallel = Literal["column", "row", "kv", "replicated", "experts_in", "experts_out"]
Placement = Literal["layer", "first", "last", "every"]

VOCAB_PADDING = 64  # vllm/model_executor/layers/vocab_parallel_embedding.py DEFAULT_VOCAB_PADDING_SIZE

# PyTorch CUDACachingAllocator (c10/cuda/CUDACachingAllocator.cpp) constants.
_MIB = 1 << 20
_SMALL_SIZE = _MIB  # kSmallSize: requests up to 1 MiB come from the small pool
_MIN_LARGE_ALLOC = 10 * _MIB  # kMinLargeAlloc: below this a new large segment is 20 MiB (kLargeBuffer)
_LARGE_BUFFER = 20 * _MIB
_ROUND_LARGE = 2 * _MIB  # kRoundLarge: larger segments are rounded up to 2 MiB
_MIN_BLOCK = 512  # kMinBlockSize


def allocator_block_bytes(size: float) -> int:
    """Bytes torch counts as allocated for one tensor of `size` bytes in a fresh segment.

    A large-pool segment is split only when more than kSmallSize (1 MiB) would remain
    (`should_split`); otherwise the whole segment is the block. This is why a 125 MiB tensor
    counts as 126 MiB.
    """
    size = int(math.ceil(size))
    rounded = -(-size // _MIN_BLOCK) * _MIN_BLOCK
    if size <= _SMALL_SIZE:
        return rounded
    segment = _LARGE_BUFFER if size < _MIN_LARGE_ALLOC else -(-size // _ROUND_LARGE) * _ROUND_LARGE
    return segment if segment - rounded <= _SMALL_SIZE else rounded


def pad_vocab(vocab: int) -> int:
    return -(-vocab // VOCAB_PADDING) * VOCAB_PADDING


def pp_layer_counts(num_layers: int, pp: int) -> list[int]:
    """vllm/distributed/utils.py get_pp_indices: the remainder goes to stages pp-2, pp-3, ..."""
    base = num_layers // pp
    counts = [base] * pp
    remainder = num_layers % pp
    for i in range(2, remainder + 2):
        counts[-i] += 1
    return counts


@dataclass(frozen=True)
class _Tensor:
    name: str  # tensor family, for the breakdown
    rows: int  # output features (N)
    cols: int  # input features (K)
    parallel: Parallel
    quantizable: bool
    copies: int = 1  # experts
    alloc: str = ""  # tensors with the same alloc key in a layer are one fused vLLM parameter


class WeightsEstimate(BaseModel):
    model_config = ConfigDict(frozen=True)

    per_rank_bytes: int  # the largest PP stage (the rank that decides)
    per_stage_bytes: tuple[int, ...]
    per_stage_layer_bytes: tuple[int, ...]  # the decoder layers' share (what --cpu-offload-gb can move)
    load_peak_bytes: int  # peak while loading (online -q fp8 first allocates the model dtype)
    replica_bytes: int  # all ranks of one replica together
    breakdown_bytes: dict[str, int]  # on the deciding rank, by tensor family
    basis: str
    notes: tuple[str, ...] = ()


def _quantized_module(quant: Optional[QuantConfig], name: str) -> bool:
    if quant is None:
        return False
    patterns = " ".join(quant.not_converted)
    if quant.method == "mxfp4":
        return name.startswith("experts")
    if "self_attn" in patterns and name.startswith("attn"):
        return False
    if name.startswith("router"):
        return False
    return True


def _linear_allocs(rows: int, cols: int, quant: Optional[QuantConfig], dtype_b: int, quantized: bool,
                   hopper_mxfp4: bool = False) -> dict[str, float]:
    """Bytes vLLM allocates for one (rows x cols) linear under the checkpoint's scheme, by parameter."""
    elements = rows * cols
    if not quantized or quant is None:
        return {"weight": elements * dtype_b}
    method, bits = quant.method, quant.weight_bits or 8
    if method == "fp8":
        if quant.block_size:
            # Fp8LinearMethod block quant: fp32 weight_scale_inv [cdiv(N,bn), cdiv(K,bk)].
            bn, bk = quant.block_size
            return {"weight": elements, "scale": math.ceil(rows / bn) * math.ceil(cols / bk) * 4}
        return {"weight": elements, "scale": 4}  # per-tensor fp32 scale
    if method == "compressed-tensors":
        if bits >= 8:
            # CompressedTensorsW8A8Fp8 / W8A8Int8: fp32 channel scale [N, 1] (per-tensor: one value).
            scale = rows * 4 if quant.strategy in ("channel", None) else 4
            if quant.strategy == "block" and quant.block_size:
                bn, bk = quant.block_size
                scale = math.ceil(rows / bn) * math.ceil(cols / bk) * 4
            return {"weight": elements, "scale": scale}
        group = quant.group_size or cols
        # W4A16 (Marlin): packed int32 weights plus model-dtype scales [K/group, N].
        return {"weight": elements * bits / 8, "scale": math.ceil(cols / group) * rows * dtype_b}
    if method in ("awq", "gptq"):
        group = quant.group_size if quant.group_size and quant.group_size > 0 else cols
        groups = math.ceil(cols / group)
        allocs = {"weight": elements * bits / 8, "scale": groups * rows * dtype_b,
                  "zeros": groups * rows * 4 / (32 / bits)}  # qzeros int32, packed like the weights
        if method == "gptq":
            allocs["g_idx"] = cols * 4
        return allocs
    if method == "mxfp4":
        # Mxfp4MoEMethod.create_weights: 4-bit values two per uint8, one uint8 e8m0 scale per 32.
        allocs = {"weight": elements / 2, "scale": elements / 32}
        if hopper_mxfp4:
            # process_weights_after_loading (Triton backend, SM90) keeps the loaded scales and
            # adds a copy swizzled by HopperMXScaleLayout, whose rows are padded to 256.
            allocs["scale_swizzled"] = (-(-rows // 256) * 256) * cols / 32
        return allocs
    if method == "bitsandbytes":
        return {"weight": elements * bits / 8, "scale": (elements / 64 * 4 if bits == 4 else rows * 4)}
    return {"weight": elements * (bits / 8)}


def _layer_tensors(g: ModelGeometry, layer: int) -> list[_Tensor]:
    h = g.hidden_size
    tensors: list[_Tensor] = []
    if g.mla:
        m = g.mla
        qk_head = m.qk_nope_head_dim + m.qk_rope_head_dim
        if m.q_lora_rank:
            # q_a_proj and kv_a_proj_with_mqa are one fused replicated parameter in vLLM.
            tensors.append(_Tensor("attn.q_a_proj", m.q_lora_rank, h, "replicated", True, alloc="fused_qkv_a"))
            tensors.append(_Tensor("norms", 1, m.q_lora_rank, "replicated", False, alloc="q_a_norm"))
            tensors.append(_Tensor("attn.q_b_proj", g.num_attention_heads * qk_head, m.q_lora_rank, "column", True,
                                   alloc="q_b"))
        else:
            tensors.append(_Tensor("attn.q_proj", g.num_attention_heads * qk_head, h, "column", True, alloc="q"))
        tensors.append(_Tensor("attn.kv_a_proj_with_mqa", m.kv_lora_rank + m.qk_rope_head_dim, h, "replicated", True,
                               alloc="fused_qkv_a"))
        tensors.append(_Tensor("norms", 1, m.kv_lora_rank, "replicated", False, alloc="kv_a_norm"))
        tensors.append(_Tensor("attn.kv_b_proj", g.num_attention_heads * (m.qk_nope_head_dim + m.v_head_dim),
                               m.kv_lora_rank, "column", True, alloc="kv_b"))
        tensors.append(_Tensor("attn.o_proj", h, g.num_attention_heads * m.v_head_dim, "row", True, alloc="o"))
    else:
        d = g.head_dim
        tensors.append(_Tensor("attn.q_proj", g.num_attention_heads * d, h, "column", True, alloc="qkv"))
        tensors.append(_Tensor("attn.kv_proj", 2 * g.num_kv_heads * d, h, "kv", True, alloc="qkv"))
        tensors.append(_Tensor("attn.o_proj", h, g.num_attention_heads * d, "row", True, alloc="o"))
        if g.qkv_bias:
            tensors.append(_Tensor("attn.bias", g.num_attention_heads * d, 1, "column", False, alloc="qkv_bias"))
            tensors.append(_Tensor("attn.bias", 2 * g.num_kv_heads * d, 1, "kv", False, alloc="qkv_bias"))
        if g.o_bias:
            tensors.append(_Tensor("attn.bias", h, 1, "replicated", False, alloc="o_bias"))
        if g.qk_norm:
            tensors.append(_Tensor("norms", 1, d, "replicated", False, alloc="q_norm"))
            tensors.append(_Tensor("norms", 1, d, "replicated", False, alloc="k_norm"))
        if g.attention_sinks:
            tensors.append(_Tensor("attn.sinks", g.num_attention_heads, 1, "column", False, alloc="sinks"))
    norms_per_layer = 4 if g.model_type.startswith("gemma") else 2
    for i in range(norms_per_layer):
        tensors.append(_Tensor("norms", 1, h, "replicated", False, alloc=f"norm{i}"))
    moe = g.moe
    if moe and layer in moe.moe_layers:
        e, ie = moe.num_experts, moe.expert_intermediate_size
        tensors.append(_Tensor("router", e, h, "replicated", False, alloc="router"))
        if moe.router_bias:
            tensors.append(_Tensor("router", e, 1, "replicated", False, alloc="router_bias"))
        tensors.append(_Tensor("experts.w13", 2 * ie, h, "experts_out", True, copies=e, alloc="w13"))
        tensors.append(_Tensor("experts.w2", h, ie, "experts_in", True, copies=e, alloc="w2"))
        if moe.expert_bias:
            tensors.append(_Tensor("experts.bias", 2 * ie, 1, "experts_out", False, copies=e, alloc="w13_bias"))
            tensors.append(_Tensor("experts.bias", h, 1, "replicated", False, copies=e, alloc="w2_bias"))
        if moe.num_shared_experts:
            si = moe.shared_expert_intermediate_size
            tensors.append(_Tensor("mlp.shared_gate_up", 2 * si, h, "column", True, alloc="shared_gate_up"))
            tensors.append(_Tensor("mlp.shared_down", h, si, "row", True, alloc="shared_down"))
        if g.model_type.startswith("deepseek"):
            tensors.append(_Tensor("router", e, 1, "replicated", False, alloc="e_score_bias"))
    else:
        tensors.append(_Tensor("mlp.gate_up", 2 * g.intermediate_size, h, "column", True, alloc="gate_up"))
        tensors.append(_Tensor("mlp.down", h, g.intermediate_size, "row", True, alloc="down"))
    return tensors


def _shard(t: _Tensor, g: ModelGeometry, tp: int, expert_group: int, expert_parallel: bool) -> tuple[int, int, int]:
    """(rows, cols, copies) of this tensor on one rank."""
    if t.parallel == "column":
        return -(-t.rows // tp), t.cols, t.copies
    if t.parallel == "row":
        return t.rows, -(-t.cols // tp), t.copies
    if t.parallel == "kv":
        per_head = t.rows // max(g.num_kv_heads, 1)
        return max(1, g.num_kv_heads // tp) * per_head, t.cols, t.copies
    if t.parallel in ("experts_out", "experts_in"):
        if expert_parallel and expert_group > 1:
            return t.rows, t.cols, -(-t.copies // expert_group)
        if t.parallel == "experts_out":
            return -(-t.rows // expert_group), t.cols, t.copies
        return t.rows, -(-t.cols // expert_group), t.copies
    return t.rows, t.cols, t.copies


def architecture_params(g: ModelGeometry) -> int:
    """Parameters vLLM loads for serving (a tied lm_head counted once, MTP layers excluded)."""
    cached = g.__dict__.get("_architecture_params")
    if cached is None:
        cached = g.__dict__["_architecture_params"] = _architecture_params(g)
    return cached


def _architecture_params(g: ModelGeometry) -> int:
    per_signature: dict[bool, int] = {}
    total = 0
    for layer in range(g.num_layers):
        signature = _layer_signature(g, layer)
        if signature not in per_signature:
            per_signature[signature] = sum(t.rows * t.cols * t.copies for t in _layer_tensors(g, layer))
        total += per_signature[signature]
    total += g.vocab_size * g.hidden_size * (1 if g.tie_word_embeddings else 2) + g.hidden_size
    return total


def _layer_signature(g: ModelGeometry, layer: int) -> bool:
    """Decoder layers differ only in dense MLP vs MoE; everything else repeats."""
    return bool(g.moe and layer in g.moe.moe_layers)


def _layer_allocations(g: ModelGeometry, layer: int, tp: int, dp: int, expert_parallel: bool, dtype_b: int,
                       quant: Optional[QuantConfig], hopper_mxfp4: bool, runtime_fp8: bool
                       ) -> tuple[dict[str, int], int]:
    """(allocator bytes by tensor family, extra load-peak bytes) for one decoder layer on one rank."""
    allocs: dict[tuple[str, str], float] = {}
    family_of: dict[tuple[str, str], str] = {}
    unquantized: dict[str, float] = {}
    expert_group = tp * dp
    for t in _layer_tensors(g, layer):
        rows, cols, copies = _shard(t, g, tp, expert_group, expert_parallel)
        quantized = t.quantizable and _quantized_module(quant, t.name)
        parts = _linear_allocs(rows, cols, quant, dtype_b, quantized, hopper_mxfp4)
        if hopper_mxfp4 and t.name == "experts.bias":
            parts = {"weight": rows * cols * 4}  # the Triton path keeps expert biases in fp32
        for part, nbytes in parts.items():
            key = (t.alloc or t.name, part)
            allocs[key] = allocs.get(key, 0.0) + copies * nbytes
            family_of[key] = t.name.split(".")[0]
        if runtime_fp8 and quantized:
            unquantized[t.alloc] = unquantized.get(t.alloc, 0.0) + copies * rows * cols * dtype_b
    by_family: dict[str, int] = {}
    for key, nbytes in allocs.items():
        by_family[family_of[key]] = by_family.get(family_of[key], 0) + allocator_block_bytes(nbytes)
    extra_peak = sum(allocator_block_bytes(b) for b in unquantized.values())
    return by_family, extra_peak


def estimate_weights(
    g: ModelGeometry,
    *,
    tp: int,
    pp: int = 1,
    dp: int = 1,
    expert_parallel: bool = False,
    model_dtype_bytes: int = 2,
    runtime_quant: Optional[QuantConfig] = None,
    extra_params: int = 0,
    hopper: bool = True,
) -> WeightsEstimate:
    """Weights on each rank of one replica. `runtime_quant` is online `-q fp8` on an unquantized checkpoint."""
    key = (tp, pp, dp, expert_parallel, model_dtype_bytes, runtime_quant, extra_params, hopper)
    cache = g.__dict__.setdefault("_weights_cache", {})
    if key not in cache:
        cache[key] = _estimate_weights(g, tp=tp, pp=pp, dp=dp, expert_parallel=expert_parallel,
                                       model_dtype_bytes=model_dtype_bytes, runtime_quant=runtime_quant,
                                       extra_params=extra_params, hopper=hopper)
    return cache[key]


def _estimate_weights(g: ModelGeometry, *, tp: int, pp: int, dp: int, expert_parallel: bool, model_dtype_bytes: int,
                      runtime_quant: Optional[QuantConfig], extra_params: int, hopper: bool) -> WeightsEstimate:
    quant = g.quant or runtime_quant
    hopper_mxfp4 = hopper and quant is not None and quant.method == "mxfp4"
    notes: list[str] = []
    stage_bytes: list[int] = []
    stage_peak: list[int] = []
    stage_breakdown: list[dict[str, int]] = []
    stage_layer_bytes: list[int] = []
    per_signature: dict[bool, tuple[dict[str, int], int]] = {}
    first = 0
    vpad = pad_vocab(g.vocab_size)
    counts = pp_layer_counts(g.num_layers, pp)
    for stage, count in enumerate(counts):
        breakdown: dict[str, int] = {}
        peak = 0
        layer_bytes = 0
        for layer in range(first, first + count):
            signature = _layer_signature(g, layer)
            if signature not in per_signature:
                per_signature[signature] = _layer_allocations(g, layer, tp, dp, expert_parallel, model_dtype_bytes,
                                                              quant, hopper_mxfp4, runtime_quant is not None)
            by_family, extra_peak = per_signature[signature]
            for family, nbytes in by_family.items():
                breakdown[family] = breakdown.get(family, 0) + nbytes
            layer_bytes += sum(by_family.values())
            peak += sum(by_family.values()) + extra_peak
        first += count
        embed = allocator_block_bytes(vpad // tp * g.hidden_size * model_dtype_bytes)
        non_layer = 0
        if stage == 0:
            breakdown["embedding"] = embed
            non_layer += embed
        if stage == pp - 1:
            if not g.tie_word_embeddings or pp > 1:
                breakdown["lm_head"] = embed
                non_layer += embed
            final_norm = allocator_block_bytes(g.hidden_size * model_dtype_bytes)
            breakdown["norms"] = breakdown.get("norms", 0) + final_norm
            non_layer += final_norm
        rope = allocator_block_bytes(g.rotary_cache_positions * g.rotary_dim * g.rope_cache_dtype_bytes)
        breakdown["rope_cache"] = rope
        non_layer += rope
        if stage == 0 and extra_params:
            breakdown["other"] = extra_params * model_dtype_bytes
            non_layer += extra_params * model_dtype_bytes
        total = sum(breakdown.values())
        stage_bytes.append(total)
        stage_layer_bytes.append(layer_bytes)
        stage_peak.append(max(total, peak + non_layer))
        stage_breakdown.append(breakdown)
    deciding = max(range(pp), key=lambda s: stage_bytes[s])
    if runtime_quant:
        notes.append("online -q fp8: vLLM allocates every linear layer in the model dtype first and "
                     "quantizes after loading, so the load peak is the unquantized size")
    if quant is not None and quant.method == "mxfp4":
        notes.append("MXFP4 experts priced for vLLM's Triton backend on Hopper (loaded scales kept plus a "
                     "swizzled copy, fp32 expert biases)" if hopper_mxfp4 else
                     "MXFP4 experts priced as packed values plus scales; vLLM's backend-specific layouts add more")
    return WeightsEstimate(
        per_rank_bytes=stage_bytes[deciding],
        per_stage_bytes=tuple(stage_bytes),
        per_stage_layer_bytes=tuple(stage_layer_bytes),
        load_peak_bytes=max(stage_peak),
        replica_bytes=sum(stage_bytes) * tp,
        breakdown_bytes=stage_breakdown[deciding],
        basis="architecture",
        notes=tuple(notes),
    )
