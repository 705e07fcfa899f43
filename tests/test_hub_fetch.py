"""The real huggingface_hub client against the fixture Hub: what a fetch returns, and how each fault surfaces."""

from __future__ import annotations

import pytest
from hub_fake import BIN, GATED, LLAMA, MOE, QWEN, FakeModel, hub, fixture_models, make_resolver  # noqa: F401

from vllm_fit.hub import (HubAccessDenied, HubBadResponse, HubModelNotFound, HubUnavailable, ModelNotFound,
                          default_resolver)
from vllm_fit.memory.weights import architecture_params


def test_single_file_model_reads_one_ranged_header(hub, make_resolver):
    info = make_resolver().resolve(QWEN)
    # Qwen3-0.6B as the Hub reports it: 751,632,384 BF16 (the tied lm_head stored anyway).
    assert info.params_by_dtype == {"BF16": 751_632_384}
    assert info.safetensors_total_bytes == 2 * 751_632_384
    assert info.config["architectures"] == ["Qwen3ForCausalLM"]
    assert info.caveats == ()
    assert info.source.startswith(f"hub: {hub.url}/{QWEN} @ ")
    sha = hub.models[QWEN].sha
    assert [(r.method, r.path, r.range) for r in hub.requests] == [
        ("GET", f"/api/models/{QWEN}", None),
        ("GET", f"/{QWEN}/resolve/{sha}/config.json", None),
        ("GET", f"/{QWEN}/resolve/{sha}/model.safetensors", "bytes=0-100000"),
    ]
    assert all(r.authorization is None for r in hub.requests)


def test_sharded_model_reads_the_index_then_one_range_per_shard(hub, make_resolver):
    info = make_resolver().resolve(LLAMA)
    assert info.params_by_dtype == {"BF16": 8_030_261_248}  # Llama-3.1-8B
    assert info.safetensors_total_bytes == 16_060_522_496
    assert hub.count(r"model\.safetensors\.index\.json$") == 1
    shard_reads = [r for r in hub.requests if r.path.endswith(".safetensors")]
    assert len(shard_reads) == 4 and {r.range for r in shard_reads} == {"bytes=0-100000"}


def test_headers_past_100_kB_get_a_second_range_read(hub, make_resolver):
    info = make_resolver().resolve(MOE)
    assert info.params_by_dtype == {"BF16": 30_532_122_624}  # Qwen3-30B-A3B: 18,432 expert tensors
    ranges = sorted(r.range for r in hub.requests if r.path.endswith(".safetensors"))
    assert ranges.count("bytes=0-100000") == 3
    assert len([r for r in ranges if r.startswith("bytes=8-")]) == 3


def test_no_safetensors_falls_back_to_bin_sizes_with_a_caveat(hub, make_resolver):
    info = make_resolver().resolve(BIN)
    computed = architecture_params(info.geometry)
    (dtype, estimate), = info.params_by_dtype.items()
    assert dtype == "BF16" and abs(estimate - 7_248_023_552) < 10_000
    assert abs(estimate - computed) / computed < 0.01
    assert len(info.caveats) == 1 and "rougher" in info.caveats[0] and ".bin" in info.caveats[0]
    assert hub.count(r"\.bin$") == 0  # sizes come from the file list; no .bin byte is read


def test_bin_sizes_that_disagree_with_the_architecture_are_not_used(hub, make_resolver, fixture_models):
    from hub_fake import bin_model, bundled_config

    hub.add(bin_model("acme/fp32-bins", bundled_config("mistralai--Mistral-7B-Instruct-v0.3"), bytes_per_param=4))
    info = make_resolver().resolve("acme/fp32-bins")
    assert info.params_by_dtype == {}
    assert "disagrees with the architecture" in info.caveats[0]


def test_revision_pins_the_commit(hub, make_resolver):
    sha = hub.models[QWEN].sha
    info = make_resolver().resolve(QWEN, revision=sha)
    assert info.params_by_dtype == {"BF16": 751_632_384}
    assert hub.requests[0].path == f"/api/models/{QWEN}/revision/{sha}"
    with pytest.raises(HubModelNotFound, match="revision"):
        make_resolver().resolve(QWEN, revision="no-such-branch")


@pytest.mark.parametrize("fault, error, words", [
    ("500", HubUnavailable, "HTTP 500"),
    ("401", HubAccessDenied, "HTTP 401"),
    ("404", HubModelNotFound, "no such model"),
    ("garbage", HubBadResponse, "not usable"),
    ("garbage_config", HubBadResponse, "config.json"),
])
def test_faults_become_distinct_errors(hub, make_resolver, fault, error, words):
    hub.faults[QWEN] = fault
    with pytest.raises(error, match=words) as caught:
        make_resolver().resolve(QWEN)
    assert isinstance(caught.value, ModelNotFound)  # callers that know only VllmFitError still cope
    assert hub.count("") <= 3  # no retry storm


def test_gated_model_needs_a_token(hub, make_resolver, tmp_path):
    with pytest.raises(HubAccessDenied, match="HF_TOKEN"):
        make_resolver().resolve(GATED)
    with pytest.raises(HubAccessDenied, match="refused"):
        make_resolver(token="hf_wrong", cache_dir=tmp_path / "c2").resolve(GATED)
    hub.reset_log()
    info = make_resolver(token=hub.token, cache_dir=tmp_path / "c3").resolve(GATED)
    assert info.params_by_dtype == {"BF16": 8_030_261_248}
    assert all(r.authorization == f"Bearer {hub.token}" for r in hub.requests)


def test_truncated_header_degrades_to_the_architecture_and_is_not_kept(hub, make_resolver):
    hub.faults[QWEN] = "truncated"
    resolver = make_resolver(transient_ttl=60)
    info = resolver.resolve(QWEN)
    assert info.params_by_dtype == {} and "could not be read" in info.caveats[0]
    assert not resolver.disk.folder(QWEN, None).exists()  # a passing fault must not stick on disk


def test_unreachable_hub(hub, make_resolver):
    resolver = make_resolver()
    hub.stop()
    with pytest.raises(HubUnavailable, match="unreachable"):
        resolver.resolve(QWEN)


def test_not_a_hub_id_is_not_looked_up(hub, make_resolver):
    with pytest.raises(HubModelNotFound, match="not a Hugging Face model id"):
        make_resolver().resolve("/models/llama")
    assert hub.requests == []


def test_chain_keeps_the_hub_error_type(hub, make_resolver):
    hub.faults[QWEN] = "401"
    chain = default_resolver(hub=make_resolver())
    with pytest.raises(HubAccessDenied, match="not in the bundled metadata"):
        chain.resolve(QWEN)
    # bundled models never reach the Hub
    assert chain.resolve("Qwen/Qwen3-0.6B").source.startswith("bundled")
    assert hub.count(r"Qwen3-0\.6B") == 0


def test_fixture_hub_serves_what_get_safetensors_metadata_asks(hub, tmp_path, monkeypatch):
    """The fixture Hub answers the library's own high-level call too (HEAD probes, index download)."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))

    api = huggingface_hub.HfApi(endpoint=hub.url)
    assert api.get_safetensors_metadata(QWEN).parameter_count == {"BF16": 751_632_384}
    assert api.get_safetensors_metadata(LLAMA).parameter_count == {"BF16": 8_030_261_248}
    assert hub.count("", method="HEAD") >= 2
