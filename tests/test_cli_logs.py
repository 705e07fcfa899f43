"""`vllm-fit logs`: a startup log against the plan for the same launch; --write-profile and
--profiles; VLLM_ENABLE_STARTUP_PLAN files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from vllm_fit.cli import logs as logs_cli
from vllm_fit.cli import plan as plan_cli

CORPUS = Path(__file__).parent / "fixtures" / "vllm_logs"
ISSUE_KEYS = {"weights_gib", "activation_gib", "non_torch_gib", "cuda_graph_gib", "kv_cache_gib", "kv_cache_tokens",
              "gpu_blocks", "max_concurrency", "max_model_len"}

# The seed's measurement style (vLLM 0.11.0 on H100, VLLM_LOGGING_LEVEL=DEBUG), with the seed's
# Llama-3.1-8B row: weights 14.99, activation 4.76, non-torch 0.13, CUDA graphs -0.45, KV 51.38 GiB.
SEED_STYLE = """\
(APIServer pid=1) INFO 11-27 10:00:00 [api_server.py:1839] vLLM API server version 0.11.0
(APIServer pid=1) INFO 11-27 10:00:00 [utils.py:233] non-default args: {'model_tag': 'meta-llama/Llama-3.1-8B-Instruct', 'model': 'meta-llama/Llama-3.1-8B-Instruct', 'max_model_len': 16000, 'block_size': 128, 'enable_prefix_caching': True}
(EngineCore_DP0 pid=2) INFO 11-27 10:00:20 [gpu_model_runner.py:2653] Model loading took 14.9889 GiB and 5.100000 seconds
(EngineCore_DP0 pid=2) DEBUG 11-27 10:00:30 [gpu_worker.py:285] Initial free memory: 78.57 GiB; Requested memory: 0.90 (util), 71.26 GiB
(EngineCore_DP0 pid=2) DEBUG 11-27 10:00:30 [gpu_worker.py:297] Memory profiling takes 6.42 seconds. Total non KV cache memory: 19.88GiB; torch peak memory increase: 4.76GiB; non-torch forward increase memory: 0.13GiB; weights memory: 14.99GiB.
(EngineCore_DP0 pid=2) INFO 11-27 10:00:30 [gpu_worker.py:298] Available KV cache memory: 51.38 GiB
(EngineCore_DP0 pid=2) INFO 11-27 10:00:31 [kv_cache_utils.py:1087] GPU KV cache size: 420,864 tokens
(EngineCore_DP0 pid=2) INFO 11-27 10:00:31 [kv_cache_utils.py:1091] Maximum concurrency for 16,000 tokens per request: 26.30x
(EngineCore_DP0 pid=2) INFO 11-27 10:00:40 [gpu_model_runner.py:3480] Graph capturing finished in 7 secs, took -0.45 GiB
(EngineCore_DP0 pid=2) INFO 11-27 10:00:40 [gpu_worker.py:391] Free memory on device (78.57/79.18 GiB) on startup. Desired GPU memory utilization is (0.9, 71.26 GiB). Actual usage is 14.99 GiB for weight, 4.76 GiB for peak activation, 0.13 GiB for non-torch memory, and -0.45 GiB for CUDAGraph memory. Replace gpu_memory_utilization config with `--kv-cache-memory=55017717392` to fit into requested memory, or `--kv-cache-memory=62743621632` to fully utilize gpu memory. Current kv cache memory in use is 55167711559 bytes.
"""


def run(argv, stdin_text: str = ""):
    out, err = io.StringIO(), io.StringIO()
    code = logs_cli.main(argv, stdout=out, stderr=err, stdin=io.StringIO(stdin_text))
    return code, out.getvalue(), err.getvalue()


def test_seed_style_log_prints_measured_against_predicted_per_term():
    code, out, err = run(["-"], SEED_STYLE)
    assert "planned: meta-llama/Llama-3.1-8B-Instruct on H100-80GB, vLLM 0.11.0" in out, out + err
    rows = {line.split()[0] + " " + line.split()[1]: line for line in out.splitlines() if line.startswith("  ") and "GiB" in line}
    assert "14.99" in rows["weights GiB"] and "4.76" in rows["activation GiB"] and "51.38" in rows["KV cache"]
    for line in rows.values():  # measured, predicted and an error on every GiB term
        assert line.rstrip().endswith("%"), line
    assert ("within 5%" in out) == (code == 0)
    assert code in (0, 1)


def test_json_has_the_issue_schema():
    code, out, _ = run(["-", "-o", "json"], SEED_STYLE)
    doc = json.loads(out)
    assert set(doc) >= {"vllm_version", "engine", "gpu", "measured", "ranks", "predicted", "error_pct", "failure"}
    assert doc["vllm_version"] == "0.11.0" and doc["engine"] == "V1"
    assert doc["gpu"] == {"name": None, "total_gib": 79.18}
    assert set(doc["measured"]) >= ISSUE_KEYS and set(doc["predicted"]) == ISSUE_KEYS == set(doc["error_pct"])
    assert doc["measured"]["kv_cache_tokens"] == 420864 and doc["measured"]["cuda_graph_gib"] == -0.45
    assert doc["ranks"] == [] and doc["failure"] is None
    kv = doc["error_pct"]["kv_cache_gib"]
    assert kv == pytest.approx(100 * (doc["predicted"]["kv_cache_gib"] - 51.38) / 51.38, abs=0.01)
    assert (code == 0) == (abs(kv) <= 5)


def test_max_error_threshold_decides_the_exit_status():
    smaller = SEED_STYLE.replace("Available KV cache memory: 51.38 GiB", "Available KV cache memory: 45.00 GiB")
    code_loose, out_loose, _ = run(["-", "--max-error", "50%"], smaller)
    code_tight, out, _ = run(["-"], smaller)
    assert code_loose == 0 and "within 50%" in out_loose
    assert code_tight == 1 and "OUTSIDE 5%" in out


def test_failed_start_where_vllm_fit_said_fit_is_a_mismatch():
    failed = SEED_STYLE.split("(EngineCore_DP0 pid=2) INFO 11-27 10:00:30 [gpu_worker.py:298]")[0] + (
        "(EngineCore_DP0 pid=2) ERROR 11-27 10:00:31 [core.py:708] ValueError: No available memory for the cache "
        "blocks. Try increasing `gpu_memory_utilization` when initializing the engine.\n")
    code, out, _ = run(["-", "--max-error", "1000", "--gpu", "H100-80GB"], failed)
    assert code == 1 and "MISMATCH: vLLM failed, but vllm-fit said the launch fits" in out


def test_failure_vllm_fit_also_predicted_agrees():
    # Llama-3.3-70B-FP8 at TP=1 on H100: the seed's failed configuration, which the plan rejects too.
    text = ("(APIServer pid=1) INFO 11-27 10:00:00 [api_server.py:1839] vLLM API server version 0.11.0\n"
            "(APIServer pid=1) INFO 11-27 10:00:00 [utils.py:233] non-default args: {'model': "
            "'RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic', 'max_model_len': 16000}\n"
            "(EngineCore_DP0 pid=2) INFO 11-27 10:01:00 [gpu_model_runner.py:2653] Model loading took 67.7229 GiB "
            "and 60.0 seconds\n"
            "(EngineCore_DP0 pid=2) INFO 11-27 10:01:10 [gpu_worker.py:298] Available KV cache memory: -1.44 GiB\n"
            "(EngineCore_DP0 pid=2) ERROR 11-27 10:01:10 [core.py:708] EngineCore failed to start.\n")
    code, out, _ = run(["-", "--gpu", "H100-80GB"], text)
    assert "agree: vLLM failed and vllm-fit said the launch does not fit" in out
    assert "not judged: vLLM did not start" in out and "OUTSIDE" not in out
    assert code == 0


def test_corpus_log_with_local_model_path_needs_model_and_gpu():
    log = CORPUS / "v1-0.10-a100-80g-qwen2-7b-tp2-u025.log"
    code, out, err = run([str(log)])
    assert code == 2 and "pass --gpu" in err
    assert "7.12" in out and "12.02" in out  # measured figures still shown
    code, out, err = run([str(log), "--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "A100-80GB", "-o", "json"])
    doc = json.loads(out)
    assert doc["plan"]["parallel"]["tensor_parallel_size"] == 2  # from the log's non-default args
    assert [r["rank"] for r in doc["ranks"]] == ["VllmWorker TP0 pid=1430", "VllmWorker TP1 pid=1431"]
    assert doc["predicted"]["max_model_len"] == 16384 and code in (0, 1)


@pytest.mark.parametrize("argv, message", [
    (["/nonexistent/log.txt"], "no such file"),
    (["-", "--max-error", "lots"], "not a percentage"),
    (["-", "-o", "yaml"], "-o must be table or json"),
    (["a.log", "b.log"], "one log at a time"),
    (["-", "--bogus"], "unknown option --bogus"),
])
def test_bad_input_is_exit_2_with_a_message(argv, message):
    code, _, err = run(argv, SEED_STYLE)
    assert code == 2 and message in err


def test_empty_input_is_bad_input():
    code, _, err = run(["-"], "   \n")
    assert code == 2 and "empty" in err


def test_write_profile_then_plan_with_profiles_uses_the_measured_overheads(tmp_path: Path):
    profile = tmp_path / "profiles" / "llama.yaml"
    profile.parent.mkdir()
    code, _, err = run(["-", "--write-profile", str(profile), "--max-error", "1000"], SEED_STYLE)
    assert code == 0, err
    text = profile.read_text()
    assert "meta-llama/Llama-3.1-8B-Instruct" in text and "H100-80GB" in text and "startup log <stdin>" in text
    # Written twice for the same key: one entry, replaced.
    run(["-", "--write-profile", str(profile), "--max-error", "1000"], SEED_STYLE)
    assert profile.read_text().count("activation_gib") == 1

    argv = ["meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "16000", "--block-size", "128",
            "--vllm-version", "0.11.0", "--gpu", "H100-80GB", "-o", "json"]
    plain, calibrated = io.StringIO(), io.StringIO()
    _capture(plan_cli.main, argv, plain)
    _capture(plan_cli.main, argv + ["--profiles", str(profile.parent)], calibrated)
    with_profile = json.loads(calibrated.getvalue())
    assert with_profile["per_gpu"]["activation_gib"] == 4.76
    assert with_profile["per_gpu"]["non_torch_gib"] == 0.13
    # The capture freed memory (vLLM logged -0.45 GiB): the plan needs none for it and keeps the logged change.
    assert with_profile["per_gpu"]["cuda_graph_gib"] == 0.0
    assert with_profile["derivation"]["cuda_graph"]["parts"]["logged_change"] == -0.45
    assert any("measured on this launch" in n for n in with_profile["notes"])
    # Another launch (a different batch) keeps the derived overheads.
    other = io.StringIO()
    _capture(plan_cli.main, argv + ["--profiles", str(profile.parent), "--max-num-seqs", "64"], other)
    assert not any("measured on this launch" in n for n in json.loads(other.getvalue())["notes"])


def test_write_profile_needs_overheads_in_the_log(tmp_path: Path):
    log = CORPUS / "v1-0.8.4-l40s-llama31-8b.log"
    code, _, err = run([str(log), "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "L40S",
                        "--write-profile", str(tmp_path / "p.yaml")])
    assert code == 2 and "prints no overhead" in err


def test_bad_profiles_dir_is_reported(tmp_path: Path):
    (tmp_path / "broken.yaml").write_text("measured: [{key: {model: x}}]\n")
    assert plan_cli.main(["meta-llama/Llama-3.1-8B-Instruct", "--profiles", str(tmp_path)]) == 2
    assert plan_cli.main(["meta-llama/Llama-3.1-8B-Instruct", "--profiles", str(tmp_path / "missing")]) == 2


def _capture(main, argv, out: io.StringIO) -> int:
    import contextlib
    with contextlib.redirect_stdout(out):
        return main(argv)


def test_startup_plan_files_are_read(tmp_path: Path):
    plans = tmp_path / "startup_plan"
    plans.mkdir()
    (plans / "startup_plan_0123456789abcdef.json").write_text(json.dumps(
        {"schema": 2, "fingerprint": "0123456789abcdef", "kv_cache_memory_bytes": 55017717392,
         "free_memory_baseline": 84364591104}))
    code, out, _ = run(["-", "--startup-plan", str(plans), "-o", "json", "--max-error", "1000"], SEED_STYLE)
    doc = json.loads(out)
    assert doc["startup_plans"][0]["kv_cache_gib"] == pytest.approx(51.24, abs=0.01)
    # Without a log, the plan's KV cache is the measurement.
    code, out, err = run(["--startup-plan", str(plans), "--model", "meta-llama/Llama-3.1-8B-Instruct", "--gpu",
                          "H100-80GB", "--vllm-version", "0.32.0", "-o", "json", "--max-error", "1000"])
    doc = json.loads(out)
    assert doc["measured"]["kv_cache_gib"] == pytest.approx(51.24, abs=0.01) and code == 0, err


@pytest.mark.parametrize("content, message", [
    ("not json", "not JSON"),
    ('{"schema": 9, "fingerprint": "a", "kv_cache_memory_bytes": 1}', "unknown startup-plan schema"),
    ('{"schema": 1, "fingerprint": "a", "kv_cache_memory_bytes": -5}', "positive integer"),
    ("[1, 2]", "not a vLLM startup plan"),
])
def test_bad_startup_plans(tmp_path: Path, content: str, message: str):
    path = tmp_path / "startup_plan_x.json"
    path.write_text(content)
    code, _, err = run(["--startup-plan", str(path)])
    assert code == 2 and message in err


def test_webhook_reviewer_plans_a_matching_launch_with_the_measured_profile(tmp_path: Path):
    """What the chart's profiles.configMap gives the webhook: profiles_dir -> runtime_profiles_with."""
    import asyncio

    from vllm_fit.admission.config import load_config
    from vllm_fit.admission.review import Reviewer
    from vllm_fit.hub.resolver import BundledResolver
    from vllm_fit.profiles import gpu_catalog, runtime_profiles_with

    run(["-", "--write-profile", str(tmp_path / "llama.yaml"), "--max-error", "1000"], SEED_STYLE)
    config = load_config(None, env={"VLLM_FIT_PROFILES_DIR": str(tmp_path)})
    assert config.profiles_dir == str(tmp_path)
    reviewer = Reviewer(config, BundledResolver(), gpu_catalog(), runtime_profiles_with(config.profiles_dir))
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "llama", "namespace": "ml"},
           "spec": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                    "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.11.0",
                                    "command": ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct",
                                                "--max-model-len", "16000", "--block-size", "128"],
                                    "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}
    judgement = asyncio.run(reviewer.review(pod))
    (launch,) = judgement.launches
    assert launch.plan.per_gpu.activation_gib == 4.76 and launch.plan.per_gpu.cuda_graph_gib == 0.0  # logged -0.45
    assert any("measured on this launch" in n for n in launch.plan.notes)


def test_unknown_version_is_said():
    text = SEED_STYLE.replace("(APIServer pid=1) INFO 11-27 10:00:00 [api_server.py:1839] vLLM API server version 0.11.0\n", "")
    code, out, _ = run(["-", "--max-error", "1000"], text)
    assert "the log does not say the vLLM version" in out
    code, out, _ = run(["-", "--max-error", "1000", "--vllm-version", "0.11.0"], text)
    assert "the log does not say the vLLM version" not in out


def test_started_where_vllm_fit_rejected_is_a_mismatch():
    # The seed-style log, planned as if the GPU were half as large: vllm-fit rejects, vLLM started.
    code, out, _ = run(["-", "--gpu", "16GiB", "--max-error", "1000"], SEED_STYLE)
    assert code == 1 and "MISMATCH: vLLM started, but vllm-fit said the launch does not fit" in out
