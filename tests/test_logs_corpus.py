"""The corpus of real vLLM startup logs (tests/fixtures/vllm_logs): every log has a well-formed,
cited sidecar of hand-written figures."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

CORPUS = Path(__file__).parent / "fixtures" / "vllm_logs"
LOGS = sorted(CORPUS.glob("*.log"))
FIGURES = {
    "weights_gib", "activation_gib", "non_torch_gib", "weights_and_non_torch_gib", "cuda_graph_gib",
    "cuda_graph_estimate_gib", "kv_cache_gib", "kv_cache_tokens", "gpu_blocks", "max_concurrency",
    "max_model_len", "total_gib", "free_gib", "requested_gib",
}
FAILURE_CODES = {
    "no_kv_cache_memory", "max_model_len_too_long", "insufficient_free_memory", "cuda_oom_loading",
    "cuda_oom_profiling", "cuda_oom_cuda_graph", "cuda_oom", "engine_failed",
}


def sidecar(log: Path) -> dict:
    return yaml.safe_load(log.with_suffix(".yaml").read_text())


def test_corpus_size_and_mix():
    docs = [sidecar(p) for p in LOGS]
    assert len(docs) >= 20
    assert {d["engine"] for d in docs} >= {"V0", "V1"}
    assert sum(d["failure"] is not None for d in docs) >= 3
    assert sum(d["ranks"] > 1 for d in docs) >= 3
    fit = sum(d["use"] == "fit" for d in docs)
    assert 0.2 <= fit / len(docs) <= 0.45


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.stem)
def test_sidecar_is_cited_and_complete(log: Path):
    doc = sidecar(log)
    assert doc["source"]["url"].startswith("https://")
    assert doc["source"]["title"]
    assert doc["use"] in ("fit", "validate")
    assert set(doc["measured"]) == FIGURES
    if doc["failure"] is not None:
        assert doc["failure"]["code"] in FAILURE_CODES
        assert doc["failure"]["line_contains"] in log.read_text(errors="replace")
    if doc["use"] == "fit":
        assert doc["model"] and doc["gpu"]["name"] and doc["failure"] is None
    assert log.stat().st_size > 0


# ------------------------------------------------------------------ the reader against the corpus

from vllm_fit.logs import read_startup_log  # noqa: E402
from vllm_fit.logs.model import PER_RANK_FIGURES  # noqa: E402


def _same(expected, actual) -> bool:
    if expected is None or actual is None:
        return expected is actual
    if isinstance(expected, float) or isinstance(actual, float):
        return abs(float(expected) - float(actual)) <= 0.006
    return expected == actual


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.stem)
def test_reader_extracts_every_hand_written_figure(log: Path):
    doc = sidecar(log)
    result = read_startup_log(log.read_text(errors="replace"))
    measured = result.measured.model_dump()
    wrong = {k: (v, measured[k]) for k, v in doc["measured"].items() if not _same(v, measured[k])}
    assert not wrong, f"(expected, extracted): {wrong}"
    assert result.engine == doc["engine"]
    text = log.read_text(errors="replace")
    if doc["vllm_version"] and doc["vllm_version"] in text:
        assert result.vllm_version == doc["vllm_version"]
    else:  # the version comes from the post around the log, not the log: the reader cannot know it
        assert result.vllm_version is None
    per_rank = any(measured[k] is not None for k in PER_RANK_FIGURES)
    ranks_printing = len(result.ranks) or (1 if per_rank else 0)
    assert ranks_printing == doc["ranks"] or (doc["ranks"] == 1 and ranks_printing == 0)
    if doc["failure"] is None:
        assert result.failure is None, result.failure
    else:
        assert result.failure is not None and result.failure.code == doc["failure"]["code"]
        assert doc["failure"]["line_contains"] in result.failure.line
    if doc["launch"]["gpu_memory_utilization"] is not None and result.gpu_memory_utilization is not None:
        assert result.gpu_memory_utilization == pytest.approx(doc["launch"]["gpu_memory_utilization"])
