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
(`create_weights` of the quantization method): see `_linear_bytes`.
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
    name: str
    rows: int  # output features (N) or vocab rows
    cols: int  # input features (K)
    parallel: Parallel
    quantizable: bool
    copies: int = 1  # experts
    group: str = "layer"


class WeightsEstimate(BaseModel):
    model_config = ConfigDict(frozen=True)

    per_rank_bytes: int  # the largest PP stage (the rank that decides)
    per_stage_bytes: tuple[int, ...]
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


def _linear_bytes(rows: int, cols: int, quant: Optional[QuantConfig], dtype_b: int, quantized: bool) -> float:
    """Bytes vLLM allocates for one (rows x cols) linear weight under the checkpoint's scheme."""
    elements = rows * cols
    if not quantized or quant is None:
        return elements * dtype_b
    method, bits = quant.method, quant.weight_bits or 8
    if method == "fp8":
        if quant.block_size:
            # Fp8LinearMethod block quant: fp32 weight_scale_inv [cdiv(N,bn), cdiv(K,bk)].
            bn, bk = quant.block_size
            return elements + math.ceil(rows / bn) * math.ceil(cols / bk) * 4
        return elements + 4  # per-tensor fp32 scale
    if method == "compressed-tensors":
        if bits >= 8:
            # CompressedTensorsW8A8Fp8 / W8A8Int8: fp32 channel scale [N, 1] (per-tensor: one).
            scale = rows * 4 if quant.strategy in ("channel", None) else 4
            if quant.strategy == "block" and quant.block_size:
                bn, bk = quant.block_size
                scale = math.ceil(rows / bn) * math.ceil(cols / bk) * 4
            return elements + scale
        group = quant.group_size or cols
        # W4A16 (Marlin): packed int32 weights plus model-dtype scales [K/group, N].
        return elements * bits / 8 + math.ceil(cols / group) * rows * dtype_b
    if method in ("awq", "gptq"):
        group = quant.group_size if quant.group_size and quant.group_size > 0 else cols
        groups = math.ceil(cols / group)
        packed_zeros = groups * rows * 4 / (32 / bits)  # qzeros int32, packed like the weights
        g_idx = cols * 4 if method == "gptq" else 0
        return elements * bits / 8 + groups * rows * dtype_b + packed_zeros + g_idx
    if method == "mxfp4":
        # 4-bit values packed two per uint8 plus one uint8 e8m0 scale per 32 values
        # (Mxfp4MoEMethod.create_weights).
        return elements / 2 + elements / 32
    if method == "bitsandbytes":
        return elements * bits / 8 + (elements / 64 * 4 if bits == 4 else rows * 4)
    return elements * (bits / 8)


def _layer_tensors(g: ModelGeometry, layer: int) -> list[_Tensor]:
    h = g.hidden_size
    tensors: list[_Tensor] = []
    if g.mla:
        m = g.mla
        qk_head = m.qk_nope_head_dim + m.qk_rope_head_dim
        if m.q_lora_rank:
            tensors.append(_Tensor("attn.q_a_proj", m.q_lora_rank, h, "replicated", True))
            tensors.append(_Tensor("norms", 1, m.q_lora_rank, "replicated", False))
            tensors.append(_Tensor("attn.q_b_proj", g.num_attention_heads * qk_head, m.q_lora_rank, "column", True))
        else:
            tensors.append(_Tensor("attn.q_proj", g.num_attention_heads * qk_head, h, "column", True))
        tensors.append(_Tensor("attn.kv_a_proj_with_mqa", m.kv_lora_rank + m.qk_rope_head_dim, h, "replicated", True))
        tensors.append(_Tensor("norms", 1, m.kv_lora_rank, "replicated", False))
        tensors.append(_Tensor("attn.kv_b_proj", g.num_attention_heads * (m.qk_nope_head_dim + m.v_head_dim),
                               m.kv_lora_rank, "column", True))
        tensors.append(_Tensor("attn.o_proj", h, g.num_attention_heads * m.v_head_dim, "row", True))
    else:
        d = g.head_dim
        tensors.append(_Tensor("attn.q_proj", g.num_attention_heads * d, h, "column", True))
        tensors.append(_Tensor("attn.kv_proj", 2 * g.num_kv_heads * d, h, "kv", True))
        tensors.append(_Tensor("attn.o_proj", h, g.num_attention_heads * d, "row", True))
        if g.qkv_bias:
            tensors.append(_Tensor("attn.bias", g.num_attention_heads * d, 1, "column", False))
            tensors.append(_Tensor("attn.bias", 2 * g.num_kv_heads * d, 1, "kv", False))
        if g.o_bias:
            tensors.append(_Tensor("attn.bias", h, 1, "replicated", False))
        if g.qk_norm:
            tensors.append(_Tensor("norms", 2, d, "replicated", False))
        if g.attention_sinks:
            tensors.append(_Tensor("attn.sinks", g.num_attention_heads, 1, "column", False))
    norms_per_layer = 4 if g.model_type.startswith("gemma") else 2
    tensors.append(_Tensor("norms", norms_per_layer, h, "replicated", False))
    moe = g.moe
    if moe and layer in moe.moe_layers:
        e, ie = moe.num_experts, moe.expert_intermediate_size
        tensors.append(_Tensor("router", e, h, "replicated", False))
        if moe.router_bias:
            tensors.append(_Tensor("router", e, 1, "replicated", False))
        tensors.append(_Tensor("experts.w13", 2 * ie, h, "experts_out", True, copies=e))
        tensors.append(_Tensor("experts.w2", h, ie, "experts_in", True, copies=e))
        if moe.expert_bias:
            tensors.append(_Tensor("experts.bias", 2 * ie, 1, "experts_out", False, copies=e))
            tensors.append(_Tensor("experts.bias", h, 1, "replicated", False, copies=e))
        if moe.num_shared_experts:
            si = moe.shared_expert_intermediate_size
            tensors.append(_Tensor("mlp.shared_gate_up", 2 * si, h, "column", True))
            tensors.append(_Tensor("mlp.shared_down", h, si, "row", True))
        if g.model_type.startswith("deepseek"):
            tensors.append(_Tensor("router", e, 1, "replicated", False))  # e_score_correction_bias
    else:
        tensors.append(_Tensor("mlp.gate_up", 2 * g.intermediate_size, h, "column", True))
        tensors.append(_Tensor("mlp.down", h, g.intermediate_size, "row", True))
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
    total = 0
    for layer in range(g.num_layers):
        for t in _layer_tensors(g, layer):
            total += t.rows * t.cols * t.copies
    total += g.vocab_size * g.hidden_size * (1 if g.tie_word_embeddings else 2) + g.hidden_size
    return total


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
    extra_params_note: str = "",
) -> WeightsEstimate:
    """Weights on each rank of one replica. `runtime_quant` is online `-q fp8` on an unquantized checkpoint."""
    quant = g.quant or runtime_quant
    expert_group = tp * dp
    notes: list[str] = []
    stage_layers = pp_layer_counts(g.num_layers, pp)
    stage_bytes: list[float] = []
    stage_peak: list[float] = []
    stage_breakdown: list[dict[str, float]] = []
    first = 0
    vpad = pad_vocab(g.vocab_size)
    for stage, count in enumerate(stage_layers):
        breakdown: dict[str, float] = {}
        peak = 0.0
        for layer in range(first, first + count):
            for t in _layer_tensors(g, layer):
                rows, cols, copies = _shard(t, g, tp, expert_group, expert_parallel)
                quantized = _quantized_module(quant, t.name) and cols > 1
                nbytes = copies * _linear_bytes(rows, cols, quant, model_dtype_bytes, quantized)
                key = t.name.split(".")[0] if t.name.startswith(("attn", "mlp")) else t.name.split(".")[0]
                breakdown[key] = breakdown.get(key, 0.0) + nbytes
                peak += copies * rows * cols * model_dtype_bytes if (runtime_quant and quantized) else nbytes
        first += count
        embed = vpad // tp * g.hidden_size * model_dtype_bytes
        if stage == 0:
            breakdown["embedding"] = embed
            peak += embed
        if stage == pp - 1:
            if not g.tie_word_embeddings or pp > 1:
                breakdown["lm_head"] = embed
                peak += embed
            breakdown["norms"] = breakdown.get("norms", 0.0) + g.hidden_size * model_dtype_bytes
        rope = g.rotary_cache_positions * g.rotary_dim * model_dtype_bytes
        breakdown["rope_cache"] = rope
        peak += rope
        if stage == 0 and extra_params:
            breakdown["other"] = extra_params * model_dtype_bytes
            peak += extra_params * model_dtype_bytes
        total = sum(breakdown.values())
        stage_bytes.append(total)
        stage_peak.append(max(total, peak))
        stage_breakdown.append(breakdown)
    deciding = max(range(pp), key=lambda s: stage_bytes[s])
    if extra_params_note:
        notes.append(extra_params_note)
    if runtime_quant:
        notes.append("online -q fp8: vLLM allocates every linear layer in the model dtype first and "
                     "quantizes after loading, so the load peak is the unquantized size")
    replica = sum(stage_bytes) * tp  # upper bound: replicated tensors counted on every rank
    return WeightsEstimate(
        per_rank_bytes=int(stage_bytes[deciding]),
        per_stage_bytes=tuple(int(b) for b in stage_bytes),
        load_peak_bytes=int(max(stage_peak)),
        replica_bytes=int(replica),
        breakdown_bytes={k: int(v) for k, v in stage_breakdown[deciding].items()},
        basis="architecture",
        notes=tuple(notes),
    )
