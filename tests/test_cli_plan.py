"""`vllm-fit plan` as a person and a script use it: the installed command, exit codes, JSON contract."""

import json
import subprocess
import sys

import pytest


def vllm_fit(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "vllm_fit", *args], capture_output=True, text=True, input=stdin,
                          timeout=60)


def test_readme_first_command_rejects_tp1_and_fits_tp2():
    result = vllm_fit("plan", "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", "--max-model-len", "16k",
                      "--block-size", "128", "--vllm-version", "0.11.0")
    assert result.returncode == 1, result.stderr
    assert "REJECT" in result.stdout and "no-kv-cache-memory" in result.stdout
    assert "-1.44" in result.stdout
    # The sweep over valid TPs shows TP=2 fitting.
    sweep = result.stdout.split("Every valid tensor-parallel size")[1]
    row2 = next(line for line in sweep.splitlines() if line.strip().startswith("2 "))
    assert "FITS" in row2 and "31.99" in row2


def test_json_contract():
    result = vllm_fit("plan", "Qwen/Qwen3-32B", "-tp", "2", "--max-model-len", "16000", "--block-size=128",
                      "--gpu", "H100-80GB", "--vllm-version", "0.11.0", "-o", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert isinstance(data["model"], str) and data["vllm_version"] == "0.11.0"
    assert data["gpu"]["name"] == "H100-80GB" and data["gpu"]["total_gib"] == pytest.approx(79.18)
    assert data["parallel"] == {"tensor_parallel_size": 2, "pipeline_parallel_size": 1, "data_parallel_size": 1}
    for key in ("weights_gib", "activation_gib", "non_torch_gib", "cuda_graph_gib", "requested_gib", "kv_cache_gib"):
        assert isinstance(data["per_gpu"][key], float), key
    kv = data["kv_cache"]
    for key in ("bytes_per_token", "block_size", "blocks", "tokens", "max_model_len"):
        assert isinstance(kv[key], int), key
    assert isinstance(kv["max_concurrency"], float)
    assert data["per_gpu"]["kv_cache_gib"] == pytest.approx(34.49, abs=0.05)
    assert data["verdict"] == {"fits": True, "reasons": []}
    assert set(data["suggestions"]) >= {"tensor_parallel_size", "max_model_len", "kv_cache_dtype"}


def test_json_failure_has_codes_and_suggestions():
    result = vllm_fit("plan", "Qwen/Qwen3-32B", "--max-model-len", "32000", "--block-size", "128",
                      "--vllm-version", "0.11.0", "-o", "json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["verdict"]["fits"] is False
    reason = data["verdict"]["reasons"][0]
    assert reason["code"] == "max-model-len-exceeds-kv-cache" and reason["severity"] == "error"
    assert data["suggestions"]["tensor_parallel_size"] == 2
    assert data["suggestions"]["max_model_len"] == 18176
    assert [row["tensor_parallel_size"] for row in data["tensor_parallel_sweep"]] == [1, 2, 4, 8]


@pytest.mark.parametrize("args,needle", [
    (["plan", "no-such/model"], "unknown model"),
    (["plan", "Qwen/Qwen3-0.6B", "--gpu", "H1000"], "unknown GPU"),
    (["plan", "Qwen/Qwen3-0.6B", "--max-model-len", "1.5K"], "decimals"),
    (["plan", "Qwen/Qwen3-0.6B", "-o", "yaml"], "-o must be"),
    (["plan"], "usage"),
    (["frobnicate"], "unknown command"),
])
def test_bad_input_exits_2_with_a_message(args, needle):
    result = vllm_fit(*args)
    assert result.returncode == 2
    assert needle in (result.stderr + result.stdout)


def test_a_value_vllm_refuses_on_the_command_line_is_a_usage_error():
    # What was typed must change, not the deployment: one line on stderr, exit 2, nothing on stdout.
    result = vllm_fit("plan", "Qwen/Qwen3-0.6B", "--max-model-len", "100000", "-o", "json")
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "max_model_len (100000)" in line and "40960" in line and "VLLM_ALLOW_LONG_MAX_MODEL_LEN" in line


def test_vllm_environment_is_honoured():
    import os
    env = {**os.environ, "VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"}
    result = subprocess.run([sys.executable, "-m", "vllm_fit", "plan", "Qwen/Qwen3-0.6B", "--max-model-len", "100000",
                             "-o", "json"], capture_output=True, text=True, timeout=60, env=env)
    assert "invalid-argument" not in result.stdout
    assert json.loads(result.stdout)["kv_cache"]["max_model_len"] == 100000


def test_gpu_given_as_a_size_and_local_model_directory(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 16,
        "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 8192, "vocab_size": 128256,
        "max_position_embeddings": 131072, "torch_dtype": "bfloat16", "tie_word_embeddings": True}))
    result = vllm_fit("plan", str(tmp_path), "--gpu", "22GiB", "--max-model-len", "8k", "-o", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["gpu"]["total_gib"] == pytest.approx(22.0)
    assert any("estimated from the architecture" in n for n in data["notes"])
