"""Model geometry from a Hugging Face config.json, read the way vLLM reads it.

Sources (vLLM v0.11.0 unless noted): `vllm/config/model.py` (get_head_size,
get_total_num_kv_heads, _get_and_verify_max_len, _find_dtype), `vllm/transformers_utils/config.py`
(get_hf_text_config, is_interleaved) and the model files for per-layer attention kinds.
No model code is imported: this reads JSON only.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict

from ..errors import VllmFitError

AttentionKind = Literal["full", "sliding", "chunked"]

_DTYPE_BYTES = {
    "float32": 4, "float": 4, "fp32": 4,
    "bfloat16": 2, "bf16": 2, "float16": 2, "half": 2, "fp16": 2,
    "float64": 8,
}

# vLLM's keys for the derived max length, smallest wins (ModelConfig._get_and_verify_max_len).
_MAX_LEN_KEYS = (
    "max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
    "max_target_positions", "max_sequence_length", "max_seq_length", "seq_len",
)


class MlaGeometry(BaseModel):
    model_config = ConfigDict(frozen=True)
    kv_lora_rank: int
    qk_rope_head_dim: int
    qk_nope_head_dim: int
    v_head_dim: int
    q_lora_rank: Optional[int] = None


class MoeGeometry(BaseModel):
    model_config = ConfigDict(frozen=True)
    num_experts: int
    experts_per_token: int
    expert_intermediate_size: int
    num_shared_experts: int = 0
    shared_expert_intermediate_size: int = 0
    # Which decoder layers are MoE (the others use the dense MLP).
    moe_layers: tuple[int, ...] = ()
    router_bias: bool = False
    expert_bias: bool = False


class QuantConfig(BaseModel):
    """The checkpoint's quantization as vLLM would detect it (ModelConfig._verify_quantization)."""

    model_config = ConfigDict(frozen=True)
    method: str  # fp8, compressed-tensors, mxfp4, awq, gptq, bitsandbytes, ...
    weight_bits: Optional[float] = None  # bits per quantized weight element
    group_size: Optional[int] = None  # scale group along the input dim; -1/None = per channel
    block_size: Optional[tuple[int, int]] = None  # fp8 block quantization [n, k]
    strategy: Optional[str] = None  # compressed-tensors: tensor, channel, group, block
    not_converted: tuple[str, ...] = ()  # module name patterns kept in the model dtype
    kv_cache_fp8: bool = False  # checkpoint carries an fp8 kv_cache_scheme


class ModelGeometry(BaseModel):
    """Everything the memory model needs to know about a model's shape."""

    model_config = ConfigDict(frozen=True)

    architecture: str
    model_type: str
    is_multimodal: bool
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    intermediate_size: int
    tie_word_embeddings: bool
    config_dtype: str
    derived_max_model_len: int
    max_len_source: str
    # Per decoder layer: attention kind, and window/chunk size where it has one.
    layer_attention: tuple[AttentionKind, ...]
    sliding_window: Optional[int] = None
    attention_chunk_size: Optional[int] = None
    mla: Optional[MlaGeometry] = None
    moe: Optional[MoeGeometry] = None
    quant: Optional[QuantConfig] = None
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False
    attention_sinks: bool = False
    rotary_dim: int = 0
    rotary_cache_positions: int = 0
    # vLLM builds the RoPE cache in the model dtype, except where the model asks otherwise
    # (gpt_oss.py calls get_rope(..., dtype=torch.float32)).
    rope_cache_dtype_bytes: int = 2
    num_mtp_layers: int = 0  # DeepSeek-style next-token-prediction layers vLLM does not load for serving

    @property
    def is_hybrid(self) -> bool:
        return len(set(self.layer_attention)) > 1

    @property
    def family(self) -> str:
        return self.architecture


def dtype_bytes(name: str) -> int:
    key = str(name).lower().replace("torch.", "")
    if key not in _DTYPE_BYTES:
        raise VllmFitError(f"unknown dtype {name!r}")
    return _DTYPE_BYTES[key]


# config.json omits values equal to the transformers config class defaults; these are those
# defaults for the classes whose published configs rely on them (transformers
# Gemma3TextConfig, Llama4TextConfig).
_CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma3_text": {"vocab_size": 262208, "max_position_embeddings": 131072, "sliding_window_pattern": 6,
                    "tie_word_embeddings": True},
    "llama4_text": {"no_rope_layer_interval": 4},
}


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """vLLM's hf_text_config: multimodal wrappers keep the language model under `text_config`."""
    inner = config.get("text_config")
    if isinstance(inner, dict) and ("num_hidden_layers" in inner or "hidden_size" in inner):
        defaults = _CLASS_DEFAULTS.get(str(inner.get("model_type", "")), {})
        return {**defaults, **inner}
    for key in ("language_config", "llm_config"):
        inner = config.get(key)
        if isinstance(inner, dict) and "num_hidden_layers" in inner:
            return inner
    return config


def _int(cfg: dict[str, Any], key: str, default: Optional[int] = None) -> int:
    value = cfg.get(key, default)
    if value is None:
        raise VllmFitError(f"config.json has no usable {key!r}; cannot model this architecture")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise VllmFitError(f"config.json {key!r} is {value!r}, not an integer") from None


def _derived_max_len(config: dict[str, Any], text: dict[str, Any]) -> tuple[int, str]:
    found = [(int(text[k]), k) for k in _MAX_LEN_KEYS if isinstance(text.get(k), (int, float)) and text[k] > 0]
    if not found:
        return 2048, "default 2048 (no length key in config.json)"
    derived, key = min(found)
    if isinstance(text.get("model_max_length"), (int, float)) and text["model_max_length"] > 0:
        derived, key = int(text["model_max_length"]), "model_max_length"
    rope = text.get("rope_scaling") or config.get("rope_scaling")
    if isinstance(rope, dict) and "gemma3" not in str(text.get("model_type", "")):
        rope_type = rope.get("rope_type", rope.get("type"))
        if rope_type not in ("su", "longrope", "llama3", "mrope", "default", None):
            if rope_type == "yarn" and rope.get("original_max_position_embeddings"):
                derived = int(rope["original_max_position_embeddings"])
            derived = int(derived * float(rope.get("factor", 1.0)))
            key = f"{key} x rope_scaling {rope_type}"
    return derived, key


def _quant(config: dict[str, Any], text: dict[str, Any]) -> Optional[QuantConfig]:
    qc = config.get("quantization_config") or text.get("quantization_config") or config.get("compression_config")
    if not isinstance(qc, dict):
        return None
    method = str(qc.get("quant_method", "")).lower().replace("_", "-")
    if not method:
        return None
    not_converted = tuple(str(m) for m in (qc.get("modules_to_not_convert") or qc.get("ignore") or []))
    kv_fp8 = False
    kv_scheme = qc.get("kv_cache_scheme")
    if isinstance(kv_scheme, dict) and kv_scheme.get("num_bits") == 8 and kv_scheme.get("type") == "float":
        kv_fp8 = True
    if method == "fp8":
        block = qc.get("weight_block_size")
        return QuantConfig(method="fp8", weight_bits=8, block_size=tuple(block) if block else None,
                           strategy="block" if block else "tensor", not_converted=not_converted, kv_cache_fp8=kv_fp8)
    if method == "mxfp4":
        return QuantConfig(method="mxfp4", weight_bits=4, group_size=32, not_converted=not_converted)
    if method in ("awq", "gptq", "awq-marlin", "gptq-marlin"):
        bits = int(qc.get("bits", qc.get("w_bit", 4)))
        group = int(qc.get("group_size", qc.get("q_group_size", 128)))
        return QuantConfig(method=method.split("-")[0], weight_bits=bits, group_size=group, strategy="group",
                           not_converted=not_converted)
    if method == "compressed-tensors":
        groups = qc.get("config_groups") or {}
        weights: dict[str, Any] = {}
        for group in groups.values():
            if isinstance(group, dict) and isinstance(group.get("weights"), dict):
                weights = group["weights"]
                break
        bits = weights.get("num_bits", 8)
        strategy = weights.get("strategy", "channel")
        block = weights.get("block_structure")
        return QuantConfig(method="compressed-tensors", weight_bits=float(bits), group_size=weights.get("group_size"),
                           strategy=str(strategy), block_size=tuple(block) if block else None,
                           not_converted=not_converted, kv_cache_fp8=kv_fp8)
    if method == "bitsandbytes":
        bits = 4 if qc.get("load_in_4bit") else 8
        return QuantConfig(method=method, weight_bits=bits, group_size=64 if bits == 4 else None,
                           not_converted=not_converted)
    return QuantConfig(method=method, weight_bits=float(qc["bits"]) if "bits" in qc else None,
                       group_size=qc.get("group_size"), not_converted=not_converted)


def _layer_attention(text: dict[str, Any], num_layers: int) -> tuple[tuple[AttentionKind, ...], Optional[int], Optional[int]]:
    window = text.get("sliding_window")
    model_type = str(text.get("model_type", ""))
    # Qwen2/Qwen3 configs carry a sliding_window that is off unless use_sliding_window
    # (transformers sets it to None; a raw JSON reader must do the same).
    if "use_sliding_window" in text and not text.get("use_sliding_window"):
        window = None
    layer_types = text.get("layer_types")
    if isinstance(layer_types, list) and len(layer_types) == num_layers:
        kinds: list[AttentionKind] = []
        for kind in layer_types:
            kinds.append("sliding" if "sliding" in str(kind) else ("chunked" if "chunk" in str(kind) else "full"))
        if "sliding" in kinds and not window:
            raise VllmFitError("config.json has sliding_attention layers but no sliding_window")
        return tuple(kinds), (int(window) if "sliding" in kinds else None), None
    pattern = text.get("sliding_window_pattern")
    if window and isinstance(pattern, int) and pattern > 1 and model_type.startswith("gemma"):
        # Gemma-3 before layer_types: every pattern-th layer is global.
        kinds = tuple("full" if (i + 1) % pattern == 0 else "sliding" for i in range(num_layers))
        return kinds, int(window), None
    chunk = text.get("attention_chunk_size")
    if chunk and model_type == "llama4_text":
        # Llama-4: layers that use RoPE attend within chunks; NoPE layers are global. An empty
        # no_rope_layers means transformers' default: every no_rope_layer_interval-th layer is NoPE.
        flags = text.get("no_rope_layers") or []
        if not flags:
            interval = int(text.get("no_rope_layer_interval", 4))
            flags = [int((i + 1) % interval != 0) for i in range(num_layers)]
        kinds = tuple("chunked" if (i < len(flags) and flags[i]) else "full" for i in range(num_layers))
        return kinds, None, int(chunk)
    if window:
        return tuple("sliding" for _ in range(num_layers)), int(window), None
    return tuple("full" for _ in range(num_layers)), None, None


def _moe(text: dict[str, Any], num_layers: int, hidden: int) -> Optional[MoeGeometry]:
    experts = text.get("num_local_experts") or text.get("num_experts") or text.get("n_routed_experts")
    if not experts:
        return None
    per_token = int(text.get("num_experts_per_tok") or text.get("moe_topk") or 1)
    expert_inter = int(text.get("moe_intermediate_size") or text.get("intermediate_size"))
    shared = int(text.get("n_shared_experts") or 0)
    shared_inter = int(text.get("shared_expert_intermediate_size") or 0)
    if shared and not shared_inter:
        shared_inter = expert_inter * shared
    if text.get("model_type") == "llama4_text" and not shared:
        shared, shared_inter = 1, expert_inter
    first_dense = int(text.get("first_k_dense_replace") or 0)
    step = int(text.get("moe_layer_freq") or text.get("decoder_sparse_step") or text.get("interleave_moe_layer_step") or 1)
    mlp_only = set(text.get("mlp_only_layers") or [])
    moe_layers = []
    for i in range(num_layers):
        if i < first_dense or i in mlp_only:
            continue
        if text.get("model_type") == "llama4_text":
            if (i + 1) % step == 0:
                moe_layers.append(i)
        elif (i + 1) % step == 0 or step == 1:
            moe_layers.append(i)
    model_type = str(text.get("model_type", ""))
    return MoeGeometry(
        num_experts=int(experts),
        experts_per_token=per_token,
        expert_intermediate_size=expert_inter,
        num_shared_experts=shared,
        shared_expert_intermediate_size=shared_inter,
        moe_layers=tuple(moe_layers),
        router_bias=model_type == "gpt_oss",
        expert_bias=model_type == "gpt_oss",
    )


def geometry_from_config(config: dict[str, Any]) -> ModelGeometry:
    """Read a config.json (as a dict). Raises VllmFitError for configs it cannot model."""
    if not isinstance(config, dict):
        raise VllmFitError("config.json must be a JSON object")
    text = text_config(config)
    architectures = config.get("architectures") or text.get("architectures") or ["unknown"]
    architecture = str(architectures[0])
    model_type = str(text.get("model_type") or config.get("model_type") or "unknown")
    hidden = _int(text, "hidden_size")
    layers = _int(text, "num_hidden_layers")
    heads = _int(text, "num_attention_heads")
    kv_heads = int(text.get("num_key_value_heads") or text.get("num_kv_heads") or text.get("n_head_kv")
                   or text.get("multi_query_group_num") or heads)
    head_dim = text.get("head_dim") or text.get("hidden_size_per_head") or (hidden // heads)
    vocab = _int(text, "vocab_size")
    inter = int(text.get("intermediate_size_mlp") or text.get("intermediate_size") or 4 * hidden)
    tie = config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))
    if "tie_word_embeddings" in text and text is not config:
        tie = bool(text["tie_word_embeddings"]) if "tie_word_embeddings" not in config else bool(config["tie_word_embeddings"])
    dtype = (config.get("torch_dtype") or config.get("dtype") or text.get("torch_dtype") or text.get("dtype")
             or (config.get("vision_config") or {}).get("torch_dtype") or "float32")
    derived, source = _derived_max_len(config, text)
    kinds, window, chunk = _layer_attention(text, layers)
    mla = None
    if text.get("kv_lora_rank"):
        mla = MlaGeometry(
            kv_lora_rank=int(text["kv_lora_rank"]),
            qk_rope_head_dim=int(text.get("qk_rope_head_dim", 64)),
            qk_nope_head_dim=int(text.get("qk_nope_head_dim", 128)),
            v_head_dim=int(text.get("v_head_dim", 128)),
            q_lora_rank=int(text["q_lora_rank"]) if text.get("q_lora_rank") else None,
        )
    rope = text.get("rope_scaling") or config.get("rope_scaling") or {}
    max_pos = int(text.get("max_position_embeddings") or derived)
    rotary_dim = int((mla.qk_rope_head_dim if mla else int(head_dim)) * float(text.get("partial_rotary_factor", 1.0)))
    cache_positions = max_pos
    if isinstance(rope, dict) and rope.get("rope_type", rope.get("type")) in ("yarn", "deepseek_yarn"):
        # YaRN caches original_max_position * factor positions (vLLM YaRNScalingRotaryEmbedding).
        original = int(rope.get("original_max_position_embeddings") or max_pos)
        cache_positions = int(original * float(rope.get("factor", 1.0)))
    return ModelGeometry(
        architecture=architecture,
        model_type=model_type,
        is_multimodal=text is not config or "vision_config" in config,
        hidden_size=hidden,
        num_layers=layers,
        num_attention_heads=heads,
        num_kv_heads=int(kv_heads),
        head_dim=int(head_dim),
        vocab_size=vocab,
        intermediate_size=inter,
        tie_word_embeddings=bool(tie),
        config_dtype=str(dtype).replace("torch.", ""),
        derived_max_model_len=derived,
        max_len_source=source,
        layer_attention=kinds,
        sliding_window=window,
        attention_chunk_size=chunk,
        mla=mla,
        moe=_moe(text, layers, hidden),
        quant=_quant(config, text),
        qkv_bias=bool(text.get("attention_bias") or model_type in ("qwen2", "qwen2_moe", "gpt_oss")),
        o_bias=bool(text.get("attention_bias") or model_type == "gpt_oss"),
        qk_norm=model_type in ("qwen3", "qwen3_moe", "gemma3_text", "olmo2"),
        attention_sinks=model_type == "gpt_oss",
        rotary_dim=rotary_dim,
        rotary_cache_positions=cache_positions,
        rope_cache_dtype_bytes=4 if model_type == "gpt_oss" else 2,
        num_mtp_layers=int(text.get("num_nextn_predict_layers") or 0),
    )
