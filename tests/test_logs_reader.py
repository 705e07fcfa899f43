"""The startup-log reader on every line format vLLM 0.6-0.34 prints and the wrappers logs arrive in.

Lines are built from vLLM's own format strings (the release that prints each is named); the
corpus test (test_logs_corpus.py) covers published logs."""

from __future__ import annotations

import json

import pytest

from vllm_fit.logs import read_startup_log

V1_034 = """\
(APIServer pid=1) INFO 11-20 10:00:00 [startup.py:18] vLLM server version 0.34.0, serving model Qwen/Qwen3-8B
(APIServer pid=1) INFO 11-20 10:00:00 [startup.py:96] non-default args: {'model_tag': 'Qwen/Qwen3-8B', 'model': 'Qwen/Qwen3-8B', 'max_model_len': 32768, 'gpu_memory_utilization': 0.85, 'tensor_parallel_size': 2}
(EngineCore pid=2) INFO 11-20 10:00:05 [core.py:154] Initializing a V1 LLM engine (v0.34.0) with config: model='Qwen/Qwen3-8B', speculative_config=None, tokenizer='Qwen/Qwen3-8B', dtype=torch.bfloat16, max_seq_len=32768, tensor_parallel_size=2, pipeline_parallel_size=1, data_parallel_size=1, quantization=None, enforce_eager=False, kv_cache_dtype=auto, enable_prefix_caching=True
(Worker_TP0 pid=3) INFO 11-20 10:00:30 [model_runner.py:442] Model loading took 7.64 GiB memory and 12.500000 seconds
(Worker_TP1 pid=4) INFO 11-20 10:00:30 [model_runner.py:442] Model loading took 7.64 GiB memory and 12.600000 seconds
(Worker_TP0 pid=3) DEBUG 11-20 10:00:40 [gpu_worker.py:783] Initial free memory: 78.6 GiB; Requested memory: 0.850000 (util), 67.3 GiB
(Worker_TP0 pid=3) DEBUG 11-20 10:00:40 [gpu_worker.py:794] Memory profiling takes 8.10 seconds. Total non KV cache memory: 9.9GiB; torch peak memory increase: 1.71GiB; total consumed (from mem_get_info): 8.19GiB; weights memory: 7.64GiB.
(Worker_TP0 pid=3) INFO 11-20 10:00:41 [gpu_worker.py:795] Available KV cache memory: 56.9 GiB
(Worker_TP1 pid=4) INFO 11-20 10:00:41 [gpu_worker.py:795] Available KV cache memory: 57.0 GiB
(EngineCore pid=2) INFO 11-20 10:00:41 [kv_cache_utils.py:1165] GPU KV cache size: 828,768 tokens, Maximum concurrency for 32,768 tokens per request: 25.29x
(Worker_TP0 pid=3) INFO 11-20 10:00:50 [model_runner.py:1217] Graph capturing finished in 9 secs, took 0.48 GiB
(Worker_TP0 pid=3) INFO 11-20 10:00:50 [gpu_worker.py:1112] CUDA graph pool memory: 0.48 GiB (actual), 0.52 GiB (estimated), difference: 0.04 GiB (8.3%).
(Worker_TP0 pid=3) INFO 11-20 10:00:50 [gpu_worker.py:1175] Free memory on device (78.6/79.18 GiB) on startup. Desired GPU memory utilization is (0.85, 67.3 GiB). Actual usage is 8.19 GiB for consumed memory (weights + non-torch), 1.71 GiB for peak activation, and 0.48 GiB for CUDAGraph memory. Replace gpu_memory_utilization config with `--kv-cache-memory=1` (0.0 GiB) to fit into requested memory, or `--kv-cache-memory=2` (0.0 GiB) to fully utilize gpu memory. Current kv cache memory in use is 56.9 GiB.
(Worker_TP0 pid=3) INFO 11-20 10:00:50 [startup_plan.py:190] Saved startup plan to /root/.cache/vllm/startup_plan/startup_plan_0123456789abcdef.json
"""


def test_v1_034_multi_rank_with_every_figure():
    log = read_startup_log(V1_034)
    m = log.measured
    assert (log.vllm_version, log.engine) == ("0.34.0", "V1")
    assert (m.weights_gib, m.activation_gib, m.weights_and_non_torch_gib) == (7.64, 1.71, 8.19)
    assert m.non_torch_gib == pytest.approx(0.55)  # total consumed - weights, said in the notes
    assert any("non-torch" in n for n in log.notes)
    assert (m.kv_cache_gib, m.kv_cache_tokens, m.max_concurrency, m.max_model_len) == (56.9, 828768, 25.29, 32768)
    assert (m.cuda_graph_gib, m.cuda_graph_source, m.cuda_graph_estimate_gib) == (0.48, "captured", 0.52)
    assert (m.total_gib, m.free_gib, m.requested_gib) == (79.18, 78.6, 67.3)
    assert log.gpu_memory_utilization == 0.85
    assert [r.rank for r in log.ranks] == ["Worker_TP0 pid=3", "Worker_TP1 pid=4"]
    assert log.ranks[1].figures.kv_cache_gib == 57.0  # ranks differ; measured is rank 0's
    assert log.non_default_args["tensor_parallel_size"] == 2
    assert log.engine_config["dtype"] == "bfloat16" and log.engine_config["enable_prefix_caching"] is True
    assert log.startup_plan[0].action == "saved" and log.startup_plan[0].fingerprint == "0123456789abcdef"
    assert log.failure is None


def test_json_lines_kubectl_prefix_and_colours_are_unwrapped():
    lines = [l for l in V1_034.splitlines()]
    wrapped = []
    for i, line in enumerate(lines):
        coloured = "\x1b[1;36m" + line.replace(") ", ")\x1b[0;0m ", 1)
        if i % 3 == 0:
            wrapped.append(json.dumps({"message": coloured, "levelname": "INFO"}))
        elif i % 3 == 1:
            wrapped.append(f"[pod/vllm-0/vllm] 2026-11-20T10:00:00.123456789Z {coloured}")
        else:
            wrapped.append(json.dumps({"log": coloured + "\n", "stream": "stderr"}))
    assert read_startup_log("\n".join(wrapped)).measured == read_startup_log(V1_034).measured


def test_caret_notation_colours_and_compose_prefix():
    text = ("vllm-1  | ^[[0;36m(EngineCore_DP0 pid=70073)^[[0;0m INFO 01-27 00:31:59 [gpu_model_runner.py:3905] "
            "Model loading took 64.38 GiB memory and 14.380607 seconds\n"
            "vllm-1  | ^[[0;36m(EngineCore_DP0 pid=70073)^[[0;0m INFO 01-27 00:32:10 [gpu_worker.py:359] "
            "Available KV cache memory: 3.33 GiB\n")
    m = read_startup_log(text).measured
    assert (m.weights_gib, m.kv_cache_gib) == (64.38, 3.33)


def test_v0_065_one_line_profile_and_v0_blocks():
    text = ("INFO 12-20 10:00:00 model_runner.py:1099] Loading model weights took 14.9888 GB\n"
            "INFO 12-20 10:00:05 worker.py:232] Memory profiling results: total_gpu_memory=79.22GiB "
            "initial_memory_usage=15.55GiB peak_torch_memory=16.32GiB memory_usage_post_profile=15.60GiB "
            "non_torch_memory=0.57GiB kv_cache_size=54.41GiB gpu_memory_utilization=0.90\n"
            "INFO 12-20 10:00:05 gpu_executor.py:76] # GPU blocks: 27858, # CPU blocks: 2048\n"
            "INFO 12-20 10:00:05 gpu_executor.py:80] Maximum concurrency for 8192 tokens per request: 54.41x\n")
    log = read_startup_log(text)
    m = log.measured
    assert log.engine == "V0"
    assert (m.weights_gib, m.non_torch_gib, m.kv_cache_gib, m.total_gib) == (14.9888, 0.57, 54.41, 79.22)
    assert m.activation_gib == pytest.approx(16.32 - 14.9888, abs=0.006)
    assert (m.gpu_blocks, m.max_concurrency, m.max_model_len) == (27858, 54.41, 8192)
    assert log.gpu_memory_utilization == 0.9


def test_v1_0102_summary_line_in_bytes():
    text = ("(EngineCore_0 pid=1) INFO 09-28 21:12:51 [gpu_worker.py:391] Free memory on device (23.08/23.53 GiB) on "
            "startup. Desired GPU memory utilization is (0.8, 18.82 GiB). Actual usage is 8.8 GiB for weight, 1.4 GiB "
            "for peak activation, 0.02 GiB for non-torch memory, and 0.68 GiB for CUDAGraph memory. Replace "
            "gpu_memory_utilization config with `--kv-cache-memory=8347223347` to fit into requested memory, or "
            "`--kv-cache-memory=12923195904` to fully utilize gpu memory. Current kv cache memory in use is 9232221491 bytes.\n")
    m = read_startup_log(text).measured
    assert (m.weights_gib, m.activation_gib, m.non_torch_gib, m.cuda_graph_gib) == (8.8, 1.4, 0.02, 0.68)
    assert m.kv_cache_gib == pytest.approx(9232221491 / 2**30)
    assert (m.free_gib, m.total_gib, m.requested_gib) == (23.08, 23.53, 18.82)


@pytest.mark.parametrize("text, code", [
    ("(EngineCore_DP0 pid=1) ERROR 01-01 00:00:00 [core.py:700] ValueError: Free memory on device cuda:0 "
     "(10.5/79.18 GiB) on startup is less than desired GPU memory utilization (0.9, 71.26 GiB). Decrease GPU "
     "memory utilization or reduce GPU memory used by other processes.", "insufficient_free_memory"),
    ("INFO 01-01 00:00:00 [gpu_model_runner.py:1] Starting to load model x...\n"
     "ERROR 01-01 00:00:01 [core.py:1] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.50 GiB. "
     "GPU 0 has a total capacity of 79.18 GiB of which 3.33 GiB is free.", "cuda_oom_loading"),
    ("INFO 01-01 00:00:00 [gpu_model_runner.py:1] Model loading took 14.99 GiB and 3.0 seconds\n"
     "ERROR 01-01 00:00:01 [core.py:1]   File \"/vllm/v1/worker/gpu_model_runner.py\", line 1, in profile_run\n"
     "ERROR 01-01 00:00:01 [core.py:1] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 8.00 GiB.",
     "cuda_oom_profiling"),
    ("INFO 01-01 00:00:00 [worker.py:1] model weights take 20.64GiB; non_torch_memory takes 0.28GiB; PyTorch "
     "activation peak memory takes 1.52GiB; the rest of the memory reserved for KV Cache is 21.20GiB.\n"
     "INFO 01-01 00:00:01 [model_runner.py:1442] Capturing cudagraphs for decoding.\n"
     "ERROR 01-01 00:00:02 [worker_base.py:620] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate "
     "2.00 MiB. GPU 6 has a total capacity of 44.53 GiB of which 448.00 KiB is free.", "cuda_oom_cuda_graph"),
    ("(EngineCore_DP0 pid=1) ERROR 01-01 00:00:00 [core.py:1] EngineCore failed to start.", "engine_failed"),
    ("INFO 01-01 00:00:00 [executor_base.py:111] # cuda blocks: 0, # CPU blocks: 4681", "no_kv_cache_memory"),
    ("ValueError: To serve at least one request with the model's max seq len (131072), (16.00 GiB KV cache is "
     "needed, which is larger than the available KV cache memory (0.71 GiB). Based on the available memory, the "
     "estimated maximum model length is 5632.", "max_model_len_too_long"),
])
def test_failures(text, code):
    log = read_startup_log(text)
    assert log.failure is not None and log.failure.code == code


def test_oom_in_the_traceback_of_graph_capture_wins_over_phase():
    text = ("(Worker_TP2 pid=99) INFO 04-09 20:31:00 [gpu_worker.py:1] Available KV cache memory: 12.0 GiB\n"
            "(Worker_TP2 pid=99) ERROR 04-09 20:31:10 [multiproc_executor.py:949]   File \"/v1/worker/gpu_worker.py\", "
            "line 588, in compile_or_warm_up_model\n"
            "(Worker_TP2 pid=99) ERROR 04-09 20:31:10 [multiproc_executor.py:949]     cuda_graph_memory_bytes = "
            "self.model_runner.capture_model()\n"
            "(Worker_TP2 pid=99) ERROR 04-09 20:31:10 [multiproc_executor.py:949] torch.OutOfMemoryError: CUDA out of memory.")
    assert read_startup_log(text).failure.code == "cuda_oom_cuda_graph"


def test_profiling_override_is_not_the_cache_size_and_applied_plan_is_read():
    text = ("(EngineCore pid=1) INFO 04-13 19:51:20 [kv_cache_utils.py:829] Overriding num_gpu_blocks=0 with "
            "num_gpu_blocks_override=512\n"
            "(Worker pid=2) INFO 01-01 00:00:00 [startup_plan.py:154] Applying persisted startup plan (fingerprint "
            "abcd1234abcd1234): kv_cache_memory_bytes=32212254720 (30.00 GiB), recorded free-memory baseline 78.00 "
            "GiB, current 78.50 GiB. Memory profiling will be skipped.\n")
    log = read_startup_log(text)
    assert log.measured.gpu_blocks is None
    assert log.startup_plan[0].kv_cache_memory_bytes == 32212254720


def test_garbage_and_empty_text_give_an_empty_log():
    for text in ("", "\x00\x01 random bytes \x1b[", "{not json", "{\"message\": 3}", "(Foo pid=x) INFO"):
        log = read_startup_log(text)
        assert log.failure is None and log.measured.kv_cache_gib is None


def test_v0_namespace_args_line():
    text = ("INFO 08-08 14:40:35 api_server.py:220] args: Namespace(host='0.0.0.0', port=8000, "
            "model='microsoft/Phi-3-mini-4k-instruct', dtype='float16', max_model_len=None, "
            "gpu_memory_utilization=0.9, middleware=[], lora_modules=None, fn=<function serve at 0x7f>)\n")
    log = read_startup_log(text)
    assert log.non_default_args["model"] == "microsoft/Phi-3-mini-4k-instruct"
    assert "fn" not in log.non_default_args


def test_vllm_json_formatter_keeps_ranks_apart():
    lines = [json.dumps({"asctime": "2026-11-20 10:00:41", "levelname": "INFO", "name": "vllm.v1.worker.gpu_worker",
                         "processName": name, "process": pid, "message": f"Available KV cache memory: {kv} GiB"})
             for name, pid, kv in (("Worker_TP1", 4, 57.0), ("Worker_TP0", 3, 56.9))]
    log = read_startup_log("\n".join(lines))
    assert log.measured.kv_cache_gib == 56.9
    assert [r.rank for r in log.ranks] == ["Worker_TP0 pid=3", "Worker_TP1 pid=4"]


def test_custom_logging_prefix_before_the_process_prefix():
    log = read_startup_log("[my-vllm] (EngineCore pid=7) INFO 11-20 10:00:41 [gpu_worker.py:795] "
                           "Available KV cache memory: 12.5 GiB\n")
    assert log.measured.kv_cache_gib == 12.5 and log.ranks == ()


@pytest.mark.parametrize("text, name", [
    ("|   0  NVIDIA H100 80GB HBM3          On  |   00000000:18:00.0 Off |                    0 |", "NVIDIA H100 80GB HBM3"),
    ("GPU 0: NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB"),
    ("(EngineCore_DP0 pid=1) WARNING 01-01 00:00:00 [cuda.py:1] ... Your Tesla T4 GPU has compute capability 7.5.",
     "Tesla T4"),
])
def test_gpu_name_where_the_log_says_it(text, name):
    assert read_startup_log(text).gpu_name == name


def test_034_extensible_kv_cache_final_size_wins_over_the_estimate():
    text = ("(EngineCore pid=1) INFO 11-20 10:00:41 [gpu_worker.py:795] Available KV cache memory: 60.1 GiB\n"
            "(EngineCore pid=1) INFO 11-20 10:00:55 [extensible_kv_cache.py:693] Memory after warmup: 3.2 GiB free, "
            "2.0 GiB committed to the KV cache, 1.9 GiB kept for transient activations (1.71 GiB allocated at peak, "
            "1.9 GiB of torch reservation growth); 3900 KV cache blocks (60.94 GiB) fit within the requested 79.18 GiB. "
            "Torch may reserve up to 20.0 GiB.\n"
            "(EngineCore pid=1) INFO 11-20 10:00:56 [extensible_kv_cache.py:536] Extended KV cache to 3900 blocks (60.94 GiB).\n")
    m = read_startup_log(text).measured
    assert (m.kv_cache_gib, m.gpu_blocks, m.activation_gib, m.requested_gib) == (60.94, 3900, 1.71, 79.18)


def test_018_notice_gives_the_utilization():
    text = ("(EngineCore pid=1) INFO 04-13 19:51:24 [gpu_worker.py:470] In v0.19, CUDA graph memory profiling will be "
            "enabled by default (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1), which more accurately accounts for CUDA "
            "graph memory during KV cache allocation. To try it now, set VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1 and "
            "increase --gpu-memory-utilization from 0.9000 to 0.9690 to maintain the same effective KV cache size.\n")
    assert read_startup_log(text).gpu_memory_utilization == 0.9


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_FRAGMENTS = ["(VllmWorker TP0 pid=1) ", "(EngineCore_DP0 pid=2) ", "INFO 01-01 00:00:00 [gpu_worker.py:1] ",
              "DEBUG 01-01 00:00:00 worker.py:1] ", "Available KV cache memory: ", "Model loading took ",
              "GPU KV cache size: ", "Maximum concurrency for ", " tokens per request: ", "x", " GiB", "GiB",
              "-1.5", "12", ",", "0.9", "\n", "\r", "\x1b[0;36m", "^[[0m", "{\"message\": \"", "\"}", "non-default args: {",
              "'a': ", "}", "Namespace(", ")", "with config: ", "model='", "'", "# GPU blocks: ", "CUDA out of memory",
              "Capturing CUDA graph", "No available memory for the cache blocks", "[repeated 2x across cluster]",
              "│ ", "vllm-1  | ", "[pod/x/y] ", "Free memory on device (", "/", " GiB) on startup", "\t", " "]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=80), st.text(max_size=40))
def test_any_text_gives_a_startup_log_and_never_an_exception(parts, noise):
    log = read_startup_log("".join(parts) + noise)
    assert log.to_json_dict()["measured"] is not None


def test_data_parallel_engines_report_engine_zeros_kv_size():
    text = ("(EngineCore_DP1 pid=9) INFO 01-01 00:00:01 [kv_cache_utils.py:1] GPU KV cache size: 200,000 tokens\n"
            "(EngineCore_DP0 pid=8) INFO 01-01 00:00:01 [kv_cache_utils.py:1] GPU KV cache size: 210,000 tokens\n"
            "(EngineCore_DP1 pid=9) INFO 01-01 00:00:02 [kv_cache_utils.py:1] Maximum concurrency for 8,192 tokens per request: 24.41x\n")
    m = read_startup_log(text).measured
    assert m.kv_cache_tokens == 210000 and m.max_concurrency == 24.41 and m.max_model_len == 8192


def test_kubectl_prefix_keeps_two_replicas_apart():
    text = ("[pod/llama-7c9/vllm] (EngineCore_DP0 pid=1) INFO 01-01 00:00:01 [gpu_worker.py:1] Available KV cache memory: 51.38 GiB\n"
            "[pod/llama-x2b/vllm] (EngineCore_DP0 pid=1) INFO 01-01 00:00:01 [gpu_worker.py:1] Available KV cache memory: 50.10 GiB\n"
            "[pod/llama-x2b/vllm] (EngineCore_DP0 pid=1) INFO 01-01 00:00:02 [kv_cache_utils.py:1] GPU KV cache size: 410,000 tokens\n"
            "[pod/llama-7c9/vllm] (EngineCore_DP0 pid=1) INFO 01-01 00:00:02 [kv_cache_utils.py:1] GPU KV cache size: 420,864 tokens\n")
    log = read_startup_log(text)
    assert (log.measured.kv_cache_gib, log.measured.kv_cache_tokens) == (51.38, 420864)  # the first pod's
    assert [r.rank for r in log.ranks] == ["pod/llama-7c9/vllm | EngineCore_DP0 pid=1", "pod/llama-x2b/vllm | EngineCore_DP0 pid=1"]
