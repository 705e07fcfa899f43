"""Overheads derived from the launch (memory/overheads.py) and the version switches behind them."""

import pytest

from vllm_fit.launch.argv import parse_vllm_args
from vllm_fit.launch.model import VllmLaunch
from vllm_fit.units import GIB
from vllm_fit.memory.overheads import capture_sizes, forward_layer_peak_bytes
from vllm_fit.memory.plan import plan
from vllm_fit.memory.versions import DEFAULT_VLLM_VERSION, NEWEST_MODELLED_VERSION, behaviour_for


def _plan(bundled, gpu, profiles, model, *args, version=None):
    launch = parse_vllm_args([model, *args], vllm_version=version).launch
    return plan(bundled.resolve(model), launch, gpu, profiles)


def test_one_sequence_activation_is_the_forward_pass(bundled, catalog, profiles):
    """--max-num-seqs 1: the sampler warm-up is one row, so the forward pass at the batched tokens
    sets the peak - a few hundred MiB for a small dense model, not the GiBs of 1,024 rows."""
    result = _plan(bundled, catalog.resolve("H100-80GB"), profiles, "Qwen/Qwen3-0.6B", "--max-num-seqs", "1",
                   "--max-model-len", "8192", version="0.19.0")
    d = result.derivation["activation"]
    assert d["kind"] == "computed" and d["parts"]["sampler"] < 0.01
    g = bundled.resolve("Qwen/Qwen3-0.6B").geometry
    forward, _ = forward_layer_peak_bytes(g, 8192, 1, 2)
    assert result.per_gpu.activation_gib == pytest.approx(forward / GIB, abs=1e-3)
    assert result.per_gpu.activation_gib < 0.5
    assert "8,192-token forward" in d["derivation"]


def test_sampler_rows_times_vocab_sets_the_default_peak(bundled, catalog, profiles):
    result = _plan(bundled, catalog.resolve("H100-80GB"), profiles, "Qwen/Qwen3-32B", "--max-model-len", "8192",
                   version="0.21.0")
    d = result.derivation["activation"]
    assert d["kind"] == "fitted" and "1,024 x 151,936 vocab" in d["derivation"] and "triton" in d["derivation"]
    assert d["parts"]["sampler"] == pytest.approx(1024 * 151936 * 14.9 / GIB, abs=1e-3)


def test_moe_keeps_its_workspace_beside_the_sampler(bundled, catalog, profiles):
    """Fused MoE's workspace stays allocated into the sampler warm-up: Qwen3-30B-A3B was measured
    at 2.68 GiB on 0.19 against 2.21-2.29 for dense models with the same vocab."""
    result = _plan(bundled, catalog.resolve("H100-80GB"), profiles, "Qwen/Qwen3-30B-A3B", "--max-model-len", "8192",
                   version="0.19.0")
    assert result.derivation["activation"]["parts"]["moe_workspace"] > 0.2
    assert result.per_gpu.activation_gib == pytest.approx(2.68, abs=0.15)


def test_large_moe_long_context_small_batch_on_a100_is_not_rejected(bundled, catalog, profiles):
    """A 30B MoE at 131,072 tokens with --max-num-seqs 16 on an A100: vLLM logged under 0.3 GiB
    of activation and started; the old constants charged 2.7 + 1.0 GiB and rejected it."""
    result = _plan(bundled, catalog.resolve("A100-80GB"), profiles, "Qwen/Qwen3-30B-A3B", "--max-model-len", "32768",
                   "--max-num-seqs", "16", "--gpu-memory-utilization", "0.9", version="0.21.0")
    assert result.per_gpu.activation_gib < 0.3
    assert result.per_gpu.cuda_graph_gib < 0.3
    assert result.verdict.fits


def test_enforce_eager_has_no_graphs(bundled, h100, profiles):
    result = _plan(bundled, h100, profiles, "Qwen/Qwen3-0.6B", "--enforce-eager", "--max-model-len", "8192",
                   version="0.21.0")
    assert result.per_gpu.cuda_graph_gib == 0 and result.derivation["cuda_graph"]["kind"] == "computed"
    assert "--enforce-eager" in result.derivation["cuda_graph"]["derivation"]


def test_capture_sizes_follow_max_num_seqs():
    class S:
        max_num_seqs, max_num_batched_tokens = 16, 2048
    assert capture_sizes(S) == [1, 2, 4, 8, 16, 24, 32]
    S.max_num_seqs = 1024
    sizes = capture_sizes(S)
    assert sizes[:4] == [1, 2, 4, 8] and sizes[-1] == 512 and len(sizes) == 3 + 31 + 17


def test_every_term_is_labelled_and_derived(bundled, h100, profiles):
    result = _plan(bundled, h100, profiles, "meta-llama/Llama-3.1-8B-Instruct", "-tp", "2", "--max-model-len", "8192",
                   version="0.26.0")
    for name in ("activation", "non_torch", "cuda_graph"):
        term = result.derivation[name]
        assert term["kind"] in ("computed", "fitted", "measured")
        assert term["derivation"] and isinstance(term["gib"], float)
    assert "TP=2" in result.derivation["non_torch"]["derivation"]
    assert result.derivation["cuda_graph_subtracted"] is True
    assert set(result.per_gpu.model_dump()) == {"weights_gib", "activation_gib", "non_torch_gib", "cuda_graph_gib",
                                                "requested_gib", "kv_cache_gib"}


# ---------------------------------------------------------------- version switches 0.22 .. 0.34

@pytest.mark.parametrize("version,path", [("0.16.0", "sort"), ("0.17.0", "triton_from_8_rows"),
                                          ("0.29.0", "triton_from_8_rows"), ("0.30.0", "triton"),
                                          ("0.34.0", "triton")])
def test_sampler_path_by_release(version, path):
    assert behaviour_for(version).sampler_topk_topp == path


@pytest.mark.parametrize("version,expected", [("0.28.0", False), ("0.29.0", True), ("0.32.0", True)])
def test_startup_plan_switch(version, expected):
    assert behaviour_for(version).startup_plan is expected


def test_startup_plan_is_noted_when_enabled(bundled, h100, profiles):
    launch = VllmLaunch(model="Qwen/Qwen3-0.6B", max_model_len=8192, vllm_version="0.32.0",
                        env={"VLLM_ENABLE_STARTUP_PLAN": "1"})
    result = plan(bundled.resolve("Qwen/Qwen3-0.6B"), launch, h100, profiles)
    assert any("VLLM_ENABLE_STARTUP_PLAN" in n for n in result.notes)


@pytest.mark.parametrize("version,expected", [("0.32.0", False), ("0.33.0", True)])
def test_gb10_small_tier_switch(version, expected):
    assert behaviour_for(version).gb10_small_batch_tier is expected


@pytest.mark.parametrize("version,expected", [("0.33.0", False), ("0.34.0", True)])
def test_extensible_kv_cache_switch(version, expected):
    b = behaviour_for(version)
    assert b.extensible_kv_cache is expected and b.model_runner_v2 is expected


def test_0_34_without_utilization_plans_at_1_0_with_margins(bundled, h100, profiles):
    result = _plan(bundled, h100, profiles, "Qwen/Qwen3-32B", "--max-model-len", "16000", version="0.34.0")
    assert result.settings["gpu_memory_utilization"] == 1.0 and result.settings["extensible_kv_cache"]
    margin = result.derivation["extensible_margin"]
    assert margin["kind"] == "computed" and margin["gib"] == pytest.approx(max(1.0, 0.75 * result.per_gpu.activation_gib), abs=1e-3)
    # KV = total - context - weights - non-torch - graphs - margin - transient (the device cap binds at 1.0).
    p = result.per_gpu
    expected = 79.18 - 0.606 - p.weights_gib - p.non_torch_gib - p.cuda_graph_gib - margin["gib"] - p.activation_gib
    assert p.kv_cache_gib == pytest.approx(expected, abs=0.02)
    assert result.verdict.fits


def test_0_33_is_unchanged_by_0_34(bundled, h100, profiles):
    result = _plan(bundled, h100, profiles, "Qwen/Qwen3-32B", "--max-model-len", "16000", version="0.33.0")
    assert result.settings["gpu_memory_utilization"] == 0.92 and not result.settings["extensible_kv_cache"]
    assert "extensible_margin" not in result.derivation


@pytest.mark.parametrize("args", [["--kv-cache-memory-bytes", "20G"], ["--num-gpu-blocks-override", "1000"],
                                  ["--no-enable-extensible-kv-cache"],
                                  ["--kv-transfer-config", '{"kv_connector":"LMCacheMPConnector","kv_role":"kv_both"}']])
def test_0_34_extensible_cache_turns_off(bundled, h100, profiles, args):
    result = _plan(bundled, h100, profiles, "Qwen/Qwen3-0.6B", "--max-model-len", "8192", *args, version="0.34.0")
    assert not result.settings["extensible_kv_cache"]
    if "--kv-cache-memory-bytes" not in args and "--num-gpu-blocks-override" not in args:
        assert result.settings["gpu_memory_utilization"] == 0.92


def test_0_34_explicit_utilization_below_one_is_capped_and_noted(bundled, h100, profiles):
    result = _plan(bundled, h100, profiles, "Qwen/Qwen3-0.6B", "--max-model-len", "8192",
                   "--gpu-memory-utilization", "0.9", version="0.34.0")
    p = result.per_gpu
    # The budget binds: requested - resident - transient.
    expected = p.requested_gib - p.weights_gib - p.non_torch_gib - p.cuda_graph_gib - p.activation_gib
    assert p.kv_cache_gib == pytest.approx(expected, abs=0.02)
    assert any("keeps" in n and "out of the KV cache" in n for n in result.notes)
    # 0.99 withholds less than 1 GiB of an H100: vLLM stays quiet.
    near = _plan(bundled, h100, profiles, "Qwen/Qwen3-0.6B", "--max-model-len", "8192",
                 "--gpu-memory-utilization", "0.99", version="0.34.0")
    assert not any("out of the KV cache" in n for n in near.notes)


def test_0_34_auto_max_model_len_is_fitted_to_the_post_warmup_size(bundled, h100, profiles):
    """--max-model-len auto is re-fitted after warm-up: to the extensible cache's measured size."""
    result = _plan(bundled, h100, profiles, "Qwen/Qwen3-32B", "--max-model-len", "auto", version="0.34.0")
    assert result.verdict.fits
    kv = result.kv_cache
    assert kv.bytes_needed_for_max_model_len <= result.per_gpu.kv_cache_gib * GIB


def test_default_version_is_the_newest_modelled():
    assert DEFAULT_VLLM_VERSION == NEWEST_MODELLED_VERSION == "0.34.0"


def test_validation_table_meets_the_acceptance_bounds():
    """bench/overheads_validation.py over the `use: validate` logs (none of them fitted on)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "overheads_validation.py"
    spec = importlib.util.spec_from_file_location("overheads_validation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows, _ = module.rows_for("validate")
    summary = module.summarise(rows)
    assert len(summary["errors"]) >= 15
    assert summary["median_abs_pct"] <= 3.0 and summary["max_over_pct"] <= 5.0
    assert not summary["false_rejects"] and not summary["missed_failures"]
    assert len(summary["versions"]) >= 3 and len(summary["gpus"]) >= 4
    fit_slugs = {r["slug"] for r in module.rows_for("fit")[0]}
    assert not fit_slugs & {r["slug"] for r in rows}


@pytest.mark.parametrize("name,gib,nominal", [("RTX-3090", 23.69, False), ("RTX-A5000", 23.55, False),
                                              ("RTX-PRO-6000-Blackwell", 94.97, True), ("GB10", 121.69, False),
                                              ("T4", 14.74, False), ("V100-16GB", 15.78, False), ("A10", 22.06, True),
                                              ("L40", 44.40, False), ("MI300X", 191.98, True)])
def test_catalog_has_the_gpus_real_logs_show(catalog, name, gib, nominal):
    gpu = catalog.resolve(name)
    assert gpu.total_gib == pytest.approx(gib, abs=0.01) and gpu.nominal is nominal and gpu.source


def test_gb10_unified_memory_warns_instead_of_rejecting(bundled, catalog, profiles):
    gb10 = catalog.resolve("DGX Spark")
    assert gb10.unified_memory and gb10.host_reserve_bytes > 0
    # The recipe's 0.85 on GB10 started (vllm-project/recipes#632): a warning, never a rejection.
    result = _plan(bundled, gb10, profiles, "Qwen/Qwen3-0.6B", "--max-model-len", "8192",
                   "--gpu-memory-utilization", "0.85", version="0.29.0")
    assert result.verdict.fits and "unified-memory-free" in [r.code for r in result.verdict.warnings]
    assert any("unified memory" in n for n in result.notes)
    # GB10 (compute capability 12.1) keeps the small serve defaults from 0.33.
    assert (result.settings["max_num_batched_tokens"], result.settings["max_num_seqs"]) == (8192, 1024)
    newer = _plan(bundled, gb10, profiles, "Qwen/Qwen3-0.6B", "--max-model-len", "8192", version="0.33.0")
    assert (newer.settings["max_num_batched_tokens"], newer.settings["max_num_seqs"]) == (2048, 256)


@pytest.mark.parametrize("version,expected", [("0.10.1", True), ("0.11.0", False), ("0.21.0", False),
                                              ("0.22.0", True), ("0.34.0", True)])
def test_flashinfer_sampler_default_switch(version, expected):
    assert behaviour_for(version).flashinfer_sampler_default is expected


def test_sampler_path_follows_release_gpu_and_env(bundled, catalog, profiles):
    h100, v100 = catalog.resolve("H100-80GB"), catalog.resolve("V100-32GB")

    def path(version, gpu, *args, env=None):
        model = "meta-llama/Llama-3.1-70B-Instruct"  # no measurement of its own: the activation is derived
        launch = parse_vllm_args([model, "-tp", "4", "--max-model-len", "8192", *args], vllm_version=version,
                                 env=env or {}).launch
        return plan(bundled.resolve(model), launch, gpu, profiles).derivation["activation"]["derivation"]

    assert "(sort)" in path("0.16.0", h100)
    assert "(triton)" in path("0.19.0", h100)
    assert "(flashinfer)" in path("0.22.0", h100)
    # FlashInfer's sampler needs compute capability 7.5+: a V100 falls back to vLLM's own kernel.
    assert "(triton)" in path("0.22.0", v100, "--dtype", "half")
    assert "(triton)" in path("0.22.0", h100, env={"VLLM_USE_FLASHINFER_SAMPLER": "0"})
    # Fewer than 8 rows stay on torch's sort in 0.17-0.29, Triton for every row from 0.30.
    assert "(sort)" in path("0.21.0", h100, "--max-num-seqs", "4")
    assert "(triton)" in path("0.30.0", h100, "--max-num-seqs", "4", env={"VLLM_USE_FLASHINFER_SAMPLER": "0"})


def test_pooling_models_profile_the_pooler_not_the_sampler(bundled, h100, profiles):
    from vllm_fit.launch.model import VllmLaunch
    from vllm_fit.memory.model_info import ModelInfo

    base = bundled.resolve("Qwen/Qwen2.5-7B-Instruct")
    reward = ModelInfo(model_id="example/Qwen2.5-7B-Reward",
                       config={**base.config, "architectures": ["Qwen2ForRewardModel"]})
    result = plan(reward, VllmLaunch(model=reward.model_id, max_model_len=8192, vllm_version="0.19.0"), h100, profiles)
    d = result.derivation["activation"]
    assert d["parts"]["sampler"] == 0 and d["kind"] == "computed" and "pooler" in d["derivation"]
    assert any("pooling model" in n for n in result.notes)


@pytest.mark.parametrize("version,expected", [("0.26.0", False), ("0.27.0", True)])
def test_cuda_graph_estimate_leaves_the_profiling_context_in_0_27(bundled, h100, profiles, version, expected):
    assert behaviour_for(version).cuda_graph_estimate_outside_profile is expected
    result = _plan(bundled, h100, profiles, "Qwen/Qwen3-0.6B", "--max-model-len", "8192", version=version)
    # The estimate's residue is in "non-torch" only while it runs inside memory_profiling.
    assert result.per_gpu.non_torch_gib == (0.13 if expected else 0.25)


@pytest.mark.parametrize("version,env,expected", [("0.7.3", {}, True), ("0.8.0", {}, False),
                                                  ("0.10.1", {"VLLM_USE_V1": "0"}, True),
                                                  ("0.11.0", {"VLLM_USE_V1": "0"}, False)])
def test_v0_engine_switch(bundled, catalog, profiles, version, env, expected):
    """V0 (default before 0.8, VLLM_USE_V1=0 until 0.11) profiles max_num_seqs=256 sequences that fill
    max(max_model_len, 2048) tokens, eagerly: the forward pass at 20,000 tokens sets the peak."""
    launch = parse_vllm_args(["meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "20000"], vllm_version=version,
                             env=env).launch
    result = plan(bundled.resolve("meta-llama/Llama-3.1-8B-Instruct"), launch, catalog.resolve("RTX-3090"), profiles)
    assert result.settings["v0_engine"] is expected
    if expected:
        assert (result.settings["max_num_batched_tokens"], result.settings["max_num_seqs"]) == (20000, 256)
        # (3 H + 3 I) x 2 bytes a token: the V0 RTX 3090 logs' 2.07 GiB at 20,000 tokens (use: fit).
        assert result.per_gpu.activation_gib == pytest.approx(20000 * (3 * 4096 + 3 * 14336) * 2 / GIB, abs=0.01)


def test_0_34_rocm_keeps_the_larger_margin(bundled, catalog, profiles):
    """extensible_kv_cache.py: KV_CACHE_MARGIN_FLOOR_BYTES is 3 GiB on ROCm, 1 GiB on CUDA."""
    mi300x = catalog.resolve("MI300X")
    result = _plan(bundled, mi300x, profiles, "Qwen/Qwen3-0.6B", "--max-model-len", "8192", version="0.34.0")
    assert result.settings["extensible_kv_cache"] and result.derivation["extensible_margin"]["gib"] == 3.0


def test_0_34_enforce_eager_still_sizes_after_warmup(bundled, h100, profiles):
    result = _plan(bundled, h100, profiles, "Qwen/Qwen3-0.6B", "--max-model-len", "8192", "--enforce-eager",
                   version="0.34.0")
    assert result.settings["extensible_kv_cache"] and result.per_gpu.cuda_graph_gib == 0
    assert "extensible_margin" in result.derivation and result.verdict.fits


@pytest.mark.parametrize("version,tokens", [("0.6.3", 512), ("0.7.2", 2048)])
def test_v0_long_context_uses_chunked_prefill(bundled, h100, profiles, version, tokens):
    result = _plan(bundled, h100, profiles, "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "65536",
                   version=version)
    assert result.settings["v0_engine"] and result.settings["max_num_batched_tokens"] == tokens
