"""Launch settings vLLM treats specially, each checked against what vLLM does."""

import pytest

from vllm_fit.launch.model import VllmLaunch
from vllm_fit.units import GIB
from vllm_fit.memory.plan import plan


def _plan(bundled, gpu, profiles, model, **launch):
    # These cases were written against the seed's release; 0.34's extensible KV cache has its own tests.
    launch.setdefault("vllm_version", "0.11.0")
    return plan(bundled.resolve(model), VllmLaunch(model=model, **launch), gpu, profiles)


def codes(result):
    return [r.code for r in result.verdict.reasons]


def test_activation_follows_the_serve_batch(bundled, catalog, profiles):
    # L4 (< 70 GiB): vLLM serves with 2048 batched tokens / 256 sequences, so the sampler warm-up
    # has a quarter of the H100 rows; a common working deployment must not be rejected.
    l4 = catalog.resolve("L4")
    result = _plan(bundled, l4, profiles, "meta-llama/Llama-3.1-8B-Instruct", max_model_len=8192)
    # 256 rows x 128,256 vocab x 38.3 B (sort path) + the [2048, 4096] output.
    assert result.per_gpu.activation_gib == pytest.approx(256 * 128256 * 38.3 / GIB + 2048 * 4096 * 2 / GIB, abs=0.01)
    assert result.verdict.fits
    assert result.derivation["activation"]["kind"] == "fitted"
    # At the measured point the measurement of this model is used as is.
    h100 = _plan(bundled, catalog.resolve("H100-80GB"), profiles, "meta-llama/Llama-3.1-8B-Instruct",
                 max_model_len=8192)
    assert h100.per_gpu.activation_gib == 4.76 and h100.derivation["activation"]["kind"] == "measured"
    # A larger batch grows the forward term, not the sampler's.
    bigger = _plan(bundled, catalog.resolve("H100-80GB"), profiles, "meta-llama/Llama-3.1-8B-Instruct",
                   max_model_len=8192, max_num_batched_tokens=32768)
    assert bigger.derivation["activation"]["parts"]["forward"] > h100.derivation["activation"]["parts"]["forward"]


def test_utilization_above_free_memory_fails_at_start(bundled, h100, profiles):
    result = _plan(bundled, h100, profiles, "Qwen/Qwen3-0.6B", gpu_memory_utilization=1.0)
    assert "insufficient-free-memory" in codes(result) and not result.verdict.fits


def test_kv_cache_memory_bytes_is_checked_against_the_gpu_and_zero_means_unset(bundled, h100, profiles):
    too_big = _plan(bundled, h100, profiles, "meta-llama/Llama-3.1-8B-Instruct", max_model_len=8192,
                    kv_cache_memory_bytes=100 * GIB)
    assert "kv-cache-memory-exceeds-gpu" in codes(too_big)
    zero = _plan(bundled, h100, profiles, "meta-llama/Llama-3.1-8B-Instruct", max_model_len=8192,
                 kv_cache_memory_bytes=0)
    default = _plan(bundled, h100, profiles, "meta-llama/Llama-3.1-8B-Instruct", max_model_len=8192)
    assert zero.per_gpu.kv_cache_gib == default.per_gpu.kv_cache_gib


@pytest.mark.parametrize("launch,needle", [
    ({"quantization": "awq"}, "needs a checkpoint quantized"),
    ({"enable_expert_parallel": True, "tensor_parallel_size": 2}, "mixture-of-experts"),
    ({"data_parallel_size": 2, "data_parallel_size_local": 4}, "--data-parallel-size-local"),
])
def test_settings_vllm_rejects(bundled, h100, profiles, launch, needle):
    result = _plan(bundled, h100, profiles, "meta-llama/Llama-3.1-8B-Instruct", **launch)
    assert codes(result) == ["invalid-argument"] and needle in result.verdict.reasons[0].message


def test_online_bitsandbytes_is_accepted(bundled, h100, profiles):
    result = _plan(bundled, h100, profiles, "meta-llama/Llama-3.1-8B-Instruct", quantization="bitsandbytes",
                   max_model_len=8192)
    assert "invalid-argument" not in codes(result)


def test_multi_node_data_parallel_counts_only_local_ranks(bundled, h100, profiles):
    info = bundled.resolve("Qwen/Qwen3-30B-A3B")
    launch = VllmLaunch(model=info.model_id, data_parallel_size=16, data_parallel_size_local=8,
                        enable_expert_parallel=True, max_model_len=16000)
    result = plan(info, launch, h100, profiles, gpus_given=8)
    assert "gpu-count-mismatch" not in codes(result)


def test_cpu_offload_moves_decoder_layers_off_the_gpu(bundled, h100, profiles):
    base = _plan(bundled, h100, profiles, "meta-llama/Llama-3.3-70B-Instruct", max_model_len=8192)
    assert "weights-exceed-gpu" in codes(base)
    offloaded = _plan(bundled, h100, profiles, "meta-llama/Llama-3.3-70B-Instruct", max_model_len=8192,
                      cpu_offload_gb=100)
    assert offloaded.verdict.fits
    assert offloaded.per_gpu.weights_gib == pytest.approx(base.per_gpu.weights_gib - 100, abs=0.01)


def test_kv_transfer_turns_the_hybrid_manager_off(bundled, h100, profiles):
    hybrid = _plan(bundled, h100, profiles, "openai/gpt-oss-20b", max_model_len=16000, block_size=128)
    unified = _plan(bundled, h100, profiles, "openai/gpt-oss-20b", max_model_len=16000, block_size=128,
                    kv_transfer_config='{"kv_connector":"NixlConnector","kv_role":"kv_both"}')
    assert len(hybrid.kv_cache.groups) == 2 and len(unified.kv_cache.groups) == 1
    # Every layer now keeps the whole context: fewer requests fit.
    assert unified.kv_cache.max_concurrency < hybrid.kv_cache.max_concurrency


def test_pipeline_parallel_sliding_reserve_is_per_batch_before_0_26(bundled, h100, profiles):
    old = _plan(bundled, h100, profiles, "google/gemma-3-27b-it", pipeline_parallel_size=2, max_model_len=32000)
    new = _plan(bundled, h100, profiles, "google/gemma-3-27b-it", pipeline_parallel_size=2, max_model_len=32000,
                vllm_version="0.26.0")
    # 0.11: one batch of 8192 tokens in flight; 0.26+: one per PP stage (2).
    assert old.kv_cache.bytes_needed_for_max_model_len < new.kv_cache.bytes_needed_for_max_model_len


def test_mxfp4_layout_follows_the_gpu(bundled, catalog, profiles):
    hopper = _plan(bundled, catalog.resolve("H100-80GB"), profiles, "openai/gpt-oss-20b", max_model_len=8192)
    ampere = _plan(bundled, catalog.resolve("A100-80GB"), profiles, "openai/gpt-oss-20b", max_model_len=8192)
    assert hopper.per_gpu.weights_gib > ampere.per_gpu.weights_gib
    assert any("Hopper" in n for n in hopper.notes) and not any("Hopper" in n for n in ampere.notes)


def test_null_block_is_held_back_from_the_check_from_0_29(bundled, h100, profiles):
    # Llama-3.1-8B, block 16: one 16,000-token request needs 1,000 blocks x 32 layers x 64 KiB.
    exact = 1000 * 32 * 2 * 16 * 8 * 128 * 2
    kwargs = dict(max_model_len=16000, block_size=16, kv_cache_memory_bytes=exact)
    before = _plan(bundled, h100, profiles, "meta-llama/Llama-3.1-8B-Instruct", vllm_version="0.26.0", **kwargs)
    after = _plan(bundled, h100, profiles, "meta-llama/Llama-3.1-8B-Instruct", vllm_version="0.29.0", **kwargs)
    assert before.verdict.fits
    assert "max-model-len-exceeds-kv-cache" in codes(after)
