"""Weights per rank: vLLM's sharding rules and torch's allocator accounting."""

import pytest

from vllm_fit.launch.model import VllmLaunch
from vllm_fit.units import GIB
from vllm_fit.memory.plan import plan
from vllm_fit.memory.weights import (
    allocator_block_bytes,
    architecture_params,
    estimate_weights,
    pad_vocab,
    pp_layer_counts,
)

MIB = 1 << 20


def test_allocator_keeps_an_unsplit_segment():
    # A 125 MiB tensor gets a 126 MiB segment; the 1 MiB left is not more than kSmallSize, so
    # the whole segment counts (Qwen3-32B's down_proj at TP=2).
    assert allocator_block_bytes(125 * MIB) == 126 * MIB
    assert allocator_block_bytes(250 * MIB) == 250 * MIB
    # 741.875 MiB -> 742 MiB segment, 0.125 MiB left: unsplit.
    assert allocator_block_bytes(741.875 * MIB) == 742 * MIB
    # Small tensors round to 512 bytes; mid-size ones split a 20 MiB segment.
    assert allocator_block_bytes(1000) == 1024
    assert allocator_block_bytes(3 * MIB + 1) == 3 * MIB + 512


def test_parameter_counts_match_the_published_safetensors(bundled):
    for model_id in ("meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen3-32B", "openai/gpt-oss-20b",
                     "openai/gpt-oss-120b", "Qwen/Qwen3-30B-A3B", "meta-llama/Llama-3.1-70B-Instruct",
                     "Qwen/Qwen2.5-7B-Instruct", "mistralai/Mistral-7B-Instruct-v0.3"):
        info = bundled.resolve(model_id)
        assert architecture_params(info.geometry) == info.safetensors_params, model_id


def test_tied_lm_head_stored_in_checkpoint_is_not_loaded(bundled):
    info = bundled.resolve("Qwen/Qwen3-0.6B")
    extra, note = info.extra_params()
    assert extra == 0 and "tied lm_head" in note
    assert info.safetensors_params - architecture_params(info.geometry) == 151936 * 1024


def test_multimodal_tower_counted_whole_on_every_rank(bundled):
    info = bundled.resolve("mistralai/Mistral-Small-3.2-24B-Instruct-2506")
    extra, note = info.extra_params()
    assert extra == 438_958_080 and "vision tower" in note


def test_vocab_padding_and_pp_partition():
    assert pad_vocab(151936) == 151936
    assert pad_vocab(32000) == 32000
    assert pad_vocab(128257) == 128320
    # vLLM get_pp_indices: the remainder goes to stages pp-2, pp-3, ... (the last stage holds lm_head)
    assert pp_layer_counts(32, 3) == [11, 11, 10]
    assert pp_layer_counts(61, 2) == [31, 30]
    assert pp_layer_counts(80, 4) == [20, 20, 20, 20]


def test_pp_puts_embedding_first_and_lm_head_last(bundled):
    g = bundled.resolve("meta-llama/Llama-3.1-8B-Instruct").geometry
    w = estimate_weights(g, tp=1, pp=2)
    assert len(w.per_stage_bytes) == 2
    total = estimate_weights(g, tp=1).per_rank_bytes
    # Each stage holds half the layers plus one of embedding/lm_head, and its own RoPE cache.
    assert sum(w.per_stage_bytes) == pytest.approx(total + 32 * MIB, rel=1e-3)


def test_experts_shard_over_tp_times_dp(bundled):
    g = bundled.resolve("Qwen/Qwen3-30B-A3B").geometry
    dense_tp2 = estimate_weights(g, tp=2, dp=1).breakdown_bytes["experts"]
    tp2_dp2 = estimate_weights(g, tp=2, dp=2).breakdown_bytes["experts"]
    ep = estimate_weights(g, tp=2, dp=2, expert_parallel=True).breakdown_bytes["experts"]
    assert tp2_dp2 == pytest.approx(dense_tp2 / 2, rel=0.01)
    assert ep == pytest.approx(tp2_dp2, rel=0.01)


def test_online_fp8_halves_weights_but_loads_bf16_first(bundled, h100, profiles):
    info = bundled.resolve("meta-llama/Llama-3.1-8B-Instruct")
    bf16 = plan(info, VllmLaunch(model=info.model_id, max_model_len=8192), h100, profiles)
    fp8 = plan(info, VllmLaunch(model=info.model_id, max_model_len=8192, quantization="fp8"), h100, profiles)
    # Linear layers drop to 1 byte; embeddings and lm_head stay bf16 (v0.19 measured 8.49 GiB).
    assert fp8.per_gpu.weights_gib == pytest.approx(8.49, abs=0.05)
    assert fp8.per_gpu.kv_cache_gib > bf16.per_gpu.kv_cache_gib
    assert any("load peak" in n for n in fp8.notes)


def test_dtype_float32_doubles_weights_and_kv(bundled, h100, profiles):
    info = bundled.resolve("meta-llama/Llama-3.1-8B-Instruct")
    fp32 = plan(info, VllmLaunch(model=info.model_id, max_model_len=8192, dtype="float32"), h100, profiles)
    # v0.19 measured 29.98 GiB of fp32 weights (third-party log); KV is 4 bytes per element.
    assert fp32.per_gpu.weights_gib == pytest.approx(29.98, abs=0.05)
    assert fp32.kv_cache.bytes_per_token == 32 * 2 * 8 * 128 * 4


def test_deepseek_mtp_layers_are_not_loaded(bundled):
    info = bundled.resolve("deepseek-ai/DeepSeek-R1")
    extra, note = info.extra_params()
    assert extra == 0 and "MTP" in note
    w = estimate_weights(info.geometry, tp=8)
    assert w.per_rank_bytes / GIB == pytest.approx(79.3, abs=0.2)
