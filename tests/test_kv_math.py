"""KV cache math against vLLM's formulas (vllm/v1/kv_cache_interface.py, kv_cache_utils.py)."""

import pytest

from vllm_fit.launch.model import VllmLaunch
from vllm_fit.memory.geometry import geometry_from_config
from vllm_fit.units import GIB
from vllm_fit.memory.model_info import ModelInfo
from vllm_fit.memory.plan import parallelism_problems, plan, valid_tensor_parallel_sizes

# Qwen/Qwen3-14B config.json values (published on the Hub; not bundled, so given inline):
QWEN3_14B = {
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 5120, "num_hidden_layers": 40,
    "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 17408,
    "vocab_size": 151936, "max_position_embeddings": 40960, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "sliding_window": None, "use_sliding_window": False,
}


def _plan(bundled, gpu, profiles, model, version="0.11.0", **launch):
    return plan(bundled.resolve(model), VllmLaunch(model=model, vllm_version=version, **launch), gpu, profiles)


def test_mla_deepseek_r1_bytes_for_10000_tokens(bundled, h100, profiles):
    result = _plan(bundled, h100, profiles, "deepseek-ai/DeepSeek-R1", tensor_parallel_size=8, max_model_len=10_000)
    # 61 layers x (kv_lora_rank 512 + qk_rope_head_dim 64) x 2 bytes, no separate V, no TP split.
    assert result.kv_cache.bytes_per_token == 61 * 576 * 2
    assert result.kv_cache.bytes_per_token * 10_000 / GIB == pytest.approx(0.65446, abs=5e-6)
    assert result.kv_cache.block_size == 64  # FlashMLA on Hopper forces 64


def test_mla_is_replicated_not_split_over_tp(bundled, h100, profiles):
    r8 = _plan(bundled, h100, profiles, "deepseek-ai/DeepSeek-R1", tensor_parallel_size=8, max_model_len=10_000)
    r4 = _plan(bundled, h100, profiles, "deepseek-ai/DeepSeek-R1", tensor_parallel_size=4, max_model_len=10_000)
    assert r8.kv_cache.bytes_per_token == r4.kv_cache.bytes_per_token


def test_kv_heads_replicated_when_tp_exceeds_kv_heads(bundled, h100, profiles):
    # Qwen3-30B-A3B: 4 KV heads. At TP=8 each rank keeps one whole head (not half a head).
    tp4 = _plan(bundled, h100, profiles, "Qwen/Qwen3-30B-A3B", tensor_parallel_size=4, max_model_len=16000)
    tp8 = _plan(bundled, h100, profiles, "Qwen/Qwen3-30B-A3B", tensor_parallel_size=8, max_model_len=16000)
    assert tp4.kv_cache.bytes_per_token == 48 * 2 * 1 * 128 * 2
    assert tp8.kv_cache.bytes_per_token == tp4.kv_cache.bytes_per_token


def test_fp8_kv_cache_halves_bytes_and_doubles_blocks(bundled, h100, profiles):
    auto = _plan(bundled, h100, profiles, "meta-llama/Llama-3.1-8B-Instruct", max_model_len=16000)
    fp8 = _plan(bundled, h100, profiles, "meta-llama/Llama-3.1-8B-Instruct", max_model_len=16000, kv_cache_dtype="fp8")
    assert auto.kv_cache.bytes_per_token == 131_072
    assert fp8.kv_cache.bytes_per_token == 65_536
    assert fp8.kv_cache.blocks == pytest.approx(2 * auto.kv_cache.blocks, abs=1)


def test_gpt_oss_hybrid_groups_tokens_and_concurrency(bundled, h100, profiles):
    result = _plan(bundled, h100, profiles, "openai/gpt-oss-20b", max_model_len=16000, block_size=128)
    kv = result.kv_cache
    # 12 sliding-window (128) layers and 12 full layers, 8 KV heads x 64 dims: two groups of 12.
    assert len(kv.groups) == 2
    assert kv.bytes_per_token == 24 * 2 * 8 * 64 * 2
    page = 2 * 128 * 8 * 64 * 2
    assert kv.blocks == int(result.per_gpu.kv_cache_gib * GIB) // page // 12
    # Each block id spans both groups, so vLLM 0.11 logs half the pool as tokens.
    assert kv.tokens == kv.blocks // 2 * 128
    # A request needs cdiv(16000,128)=125 full-attention blocks plus the window's
    # cdiv(min(127 + 8192, 16000),128)+1 = 66 sliding blocks.
    assert kv.max_concurrency == pytest.approx(kv.blocks / (125 + 66), rel=1e-6)
    assert kv.max_concurrency * 16000 > kv.tokens  # hybrids hold more requests than tokens/len suggests


def test_gpt_oss_tokens_logged_from_concurrency_from_0_21(bundled, h100, profiles):
    result = _plan(bundled, h100, profiles, "openai/gpt-oss-20b", version="0.21.0", max_model_len=16000, block_size=128)
    kv = result.kv_cache
    assert kv.tokens == int(kv.blocks / (125 + 66) * 16000)
    assert kv.tokens > kv.blocks // 2 * 128  # the 0.11-0.20 formula undercounts hybrids


def test_qwen3_14b_tp5_is_invalid():
    g = geometry_from_config(QWEN3_14B)
    problems = parallelism_problems(g, 5, 1)
    assert any("KV heads" in p for p in problems)
    assert any("padded vocab 151936" in p for p in problems)
    assert not parallelism_problems(g, 4, 1)


def test_qwen3_14b_tp5_plan_is_rejected(h100, profiles):
    model = ModelInfo(model_id="Qwen/Qwen3-14B", config=QWEN3_14B)
    result = plan(model, VllmLaunch(model="Qwen/Qwen3-14B", tensor_parallel_size=5), h100, profiles)
    assert [r.code for r in result.verdict.errors] == ["invalid-parallelism"]
    assert "valid TP sizes: 1, 2, 4, 8" in result.verdict.errors[0].message
    assert valid_tensor_parallel_sizes(model, 8) == [1, 2, 4, 8]


def test_qwen2_5_0_5b_style_kv_rule():
    # 14 heads / 2 KV heads: TP=7 divides the heads but 2 KV heads can neither split nor replicate.
    g = geometry_from_config({**QWEN3_14B, "num_attention_heads": 14, "num_key_value_heads": 2, "hidden_size": 896,
                              "head_dim": 64, "intermediate_size": 4864})
    assert any("KV heads" in p for p in parallelism_problems(g, 7, 1))


def test_max_model_len_check_matches_block_rounding(bundled, h100, profiles):
    # vLLM's check needs cdiv(len, block) full pages per layer.
    result = _plan(bundled, h100, profiles, "Qwen/Qwen3-32B", max_model_len=16000, block_size=128)
    assert result.kv_cache.bytes_needed_for_max_model_len == 125 * 64 * (2 * 128 * 8 * 128 * 2)


def test_kv_cache_memory_bytes_replaces_the_budget(bundled, h100, profiles):
    result = _plan(bundled, h100, profiles, "meta-llama/Llama-3.1-8B-Instruct", max_model_len=16000,
                   kv_cache_memory_bytes=10 * GIB)
    assert result.per_gpu.kv_cache_gib == pytest.approx(10.0)
    assert any("kv-cache-memory-bytes" in n for n in result.notes)
