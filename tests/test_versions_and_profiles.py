"""Version behaviour, runtime bands, the GPU catalog: every number has a source."""

import pytest
import yaml

from vllm_fit.errors import VllmFitError
from vllm_fit.launch.model import VllmLaunch
from vllm_fit.memory.plan import plan
from vllm_fit.memory.versions import behaviour_for
from vllm_fit.profiles import profiles_dir


def test_version_switches():
    old, mid, new = behaviour_for("0.11.0"), behaviour_for("v0.19.1"), behaviour_for("0.21.0")
    assert old.default_gpu_memory_utilization == 0.9 and not old.subtracts_cuda_graph_estimate
    assert behaviour_for("0.20.0").default_gpu_memory_utilization == 0.92
    assert behaviour_for("0.20.0").subtracts_cuda_graph_estimate
    assert not mid.subtracts_cuda_graph_estimate and mid.check_sums_all_groups
    assert new.tokens_from_concurrency and not behaviour_for("0.20.0").tokens_from_concurrency
    with pytest.raises(VllmFitError):
        behaviour_for("latest")


@pytest.mark.parametrize("version,band", [("0.11.0", "v0.11-v0.16"), ("0.16.2", "v0.11-v0.16"),
                                          ("0.17.0", "v0.17-v0.20"), ("0.20.1", "v0.17-v0.20"), ("0.26.0", "v0.21-v0.26"), ("0.27.0", "v0.27+"),
                                          ("0.33.0", "v0.27+")])
def test_bands(profiles, version, band):
    assert profiles.band_for(version).name == band


def test_newer_versions_subtract_cuda_graphs_and_default_to_092(bundled, h100, profiles):
    info = bundled.resolve("meta-llama/Llama-3.1-8B-Instruct")
    result = plan(info, VllmLaunch(model=info.model_id, max_model_len=8192, vllm_version="0.21.0"), h100, profiles)
    p = result.per_gpu
    assert result.settings["gpu_memory_utilization"] == 0.92
    assert p.kv_cache_gib == pytest.approx(p.requested_gib - p.weights_gib - p.activation_gib - p.non_torch_gib
                                           - p.cuda_graph_gib, abs=1e-3)
    assert p.cuda_graph_gib > 0
    eager = plan(info, VllmLaunch(model=info.model_id, max_model_len=8192, vllm_version="0.21.0", enforce_eager=True),
                 h100, profiles)
    assert eager.per_gpu.cuda_graph_gib == 0 and eager.per_gpu.kv_cache_gib > p.kv_cache_gib


def test_v019_llama_8b_matches_the_published_log(bundled, catalog, profiles):
    # llm-d planner v0.19 run: H100 (79.19 GiB), util 0.95, max-model-len 8192, block 16:
    # KV 58.11 GiB, 29,751 blocks, 476,016 tokens, 58.11x concurrency.
    info = bundled.resolve("meta-llama/Llama-3.1-8B-Instruct")
    h100 = catalog.resolve("79.19GiB")
    result = plan(info, VllmLaunch(model=info.model_id, max_model_len=8192, gpu_memory_utilization=0.95,
                                   vllm_version="0.19.0"), h100, profiles)
    assert result.per_gpu.kv_cache_gib == pytest.approx(58.11, abs=0.05)
    assert result.kv_cache.tokens == pytest.approx(476_016, rel=0.002)
    assert result.kv_cache.max_concurrency == pytest.approx(58.11, abs=0.1)


def _walk_measured(node, path=""):
    if isinstance(node, dict):
        if "value" in node and isinstance(node["value"], (int, float)):
            yield path, node
        for key, value in node.items():
            yield from _walk_measured(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk_measured(value, f"{path}[{i}]")


def test_every_runtime_constant_cites_a_source():
    data = yaml.safe_load((profiles_dir() / "vllm-runtime.yaml").read_text())
    measured = list(_walk_measured(data))
    assert len(measured) > 40
    for path, node in measured:
        assert node.get("source"), path
    for band in data["bands"]:
        for model_id, override in band.get("models", {}).items():
            assert override.get("source"), model_id


def test_every_gpu_has_a_source_and_a_plausible_total(catalog):
    assert len(catalog.gpus) >= 20
    for gpu in catalog.gpus:
        assert gpu.source, gpu.name
        assert 8 < gpu.total_gib < 300, gpu.name


@pytest.mark.parametrize("name", ["H100-80GB", "NVIDIA-H100-80GB-HBM3", "nvidia-h100-80gb", "H200", "A100-80GB",
                                  "A100-40GB", "L4", "L40S", "A10G", "B200", "GH200", "RTX-4090", "RTX-A6000",
                                  "MI300X", "H100-NVL", "H100-PCIe"])
def test_catalog_names(catalog, name):
    assert catalog.find(name) is not None, name


def test_measured_totals(catalog):
    assert catalog.resolve("H100-80GB").total_bytes == 85_017_493_504
    assert catalog.resolve("H200").total_bytes == 150_109_880_320
    assert round(catalog.resolve("H100-80GB").total_gib, 2) == 79.18
    assert catalog.resolve("79.18GiB").total_gib == pytest.approx(79.18)
    with pytest.raises(VllmFitError):
        catalog.resolve("H1000")


def test_a100_uses_the_smaller_serve_batch_defaults(bundled, catalog, profiles):
    info = bundled.resolve("meta-llama/Llama-3.1-8B-Instruct")
    a100 = plan(info, VllmLaunch(model=info.model_id, max_model_len=8192), catalog.resolve("A100-80GB"), profiles)
    h100 = plan(info, VllmLaunch(model=info.model_id, max_model_len=8192), catalog.resolve("H100-80GB"), profiles)
    assert a100.settings["max_num_batched_tokens"] == 2048 and a100.settings["max_num_seqs"] == 256
    assert h100.settings["max_num_batched_tokens"] == 8192 and h100.settings["max_num_seqs"] == 1024
