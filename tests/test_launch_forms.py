"""Every launch form, flag spelling, expansion rule and negative, one container at a time."""

from __future__ import annotations

import pytest

from vllm_fit.errors import VllmFitError
from vllm_fit.launch import UnresolvedValue, find_launches, parse_vllm_args, vllm_version_from_image
from vllm_fit.launch.k8s import kubelet_expand
from vllm_fit.launch.shell import split_script


def pod(container: dict, **spec) -> dict:
    base = {"name": "c", "image": "vllm/vllm-openai:v0.11.0", **container}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [base], **spec}}


def one(obj: dict, **kw):
    found = find_launches(obj, **kw)
    assert len(found) == 1, found
    return found[0]


# ---------------------------------------------------------------- forms

def test_command_vllm_serve_positional_model():
    f = one(pod({"command": ["vllm", "serve"], "args": ["org/m", "--tensor-parallel-size=2"]}))
    assert (f.launch.model, f.launch.tensor_parallel_size) == ("org/m", 2)


def test_serve_moves_model_flag_and_positional_wins():
    f = one(pod({"command": ["vllm", "serve", "--model", "a/flag", "a/positional"]}))
    assert f.launch.model == "a/positional"
    assert one(pod({"command": ["vllm", "serve", "--model", "a/flag"]})).launch.model == "a/flag"


def test_args_only_on_vllm_image():
    f = one(pod({"args": ["--model", "org/m", "-tp", "4"]}))
    assert (f.launch.model, f.launch.tensor_parallel_size, f.launch.vllm_version) == ("org/m", 4, "0.11.0")


def test_args_only_on_configured_image():
    obj = pod({"image": "registry.example.com/inhouse/llm-server:3", "args": ["--model", "org/m"]})
    assert find_launches(obj) == []
    f = one(obj, vllm_images=("registry.example.com/inhouse/llm-server",))
    assert f.launch.model == "org/m"


def test_legacy_api_server_ignores_positional_model():
    f = one(pod({"command": ["python3", "-m", "vllm.entrypoints.openai.api_server", "org/pos", "--max-model-len",
                             "4k"]}))
    assert f.launch.model is None and f.launch.max_model_len == 4000
    f = one(pod({"command": ["python", "-u", "-m", "vllm.entrypoints.openai.api_server", "--model", "org/m"]}))
    assert f.launch.model == "org/m"


def test_sh_c_script_with_ray_and_exec():
    script = "ray start --head --port=6379 && exec vllm serve org/m \\\n  --pipeline-parallel-size 2 # tail\n"
    f = one(pod({"command": ["/bin/bash", "-lc", script]}))
    assert (f.launch.model, f.launch.pipeline_parallel_size) == ("org/m", 2)


def test_multi_line_script_with_semicolons_and_or():
    script = "set -e\nexport TP=4; echo start || true\nvllm serve org/m -tp $TP --max-model-len ${LEN:-8k}\n"
    f = one(pod({"command": ["sh", "-c"], "args": [script]}))
    assert (f.launch.tensor_parallel_size, f.launch.max_model_len) == (4, 8000)


def test_shell_variables_from_container_env_and_quotes():
    script = 'vllm serve "$MODEL" --gpu-memory-utilization \'0.8\' --block-size ${BS}'
    f = one(pod({"command": ["sh", "-c", script],
                 "env": [{"name": "MODEL", "value": "org/m"}, {"name": "BS", "value": "32"}]}))
    assert (f.launch.model, f.launch.gpu_memory_utilization, f.launch.block_size) == ("org/m", 0.8, 32)


def test_kubernetes_var_expansion_and_dollar_escape():
    env = [{"name": "M", "value": "org/m"}, {"name": "TP", "value": "2"}]
    f = one(pod({"command": ["vllm", "serve", "$(M)", "--tensor-parallel-size=$(TP)"], "env": env}))
    assert (f.launch.model, f.launch.tensor_parallel_size) == ("org/m", 2)
    # $$(TP) reaches vLLM as the literal text "$(TP)": vLLM rejects it as not an integer
    f = one(pod({"command": ["vllm", "serve", "$(M)", "--tensor-parallel-size=$$(TP)"], "env": env}))
    assert f.launch.tensor_parallel_size is None
    assert f.problems and "'$(TP)' is not an integer" in f.problems[0]


def test_kubelet_expand_rules():
    variables = {"A": "x", "S": None}
    assert kubelet_expand("$(A)-$$(A)-$$$(A)", variables) == ("x-$(A)-$x", False)
    assert kubelet_expand("$(S)", variables) == ("$(S)", True)
    assert kubelet_expand("$(UNDEFINED)", variables) == ("$(UNDEFINED)", True)
    assert kubelet_expand("$(A", variables) == ("$(A", False)
    assert kubelet_expand("cost $5", variables) == ("cost $5", False)


def test_env_values_expand_earlier_env():
    env = [{"name": "ORG", "value": "org"}, {"name": "M", "value": "$(ORG)/m"}]
    assert one(pod({"command": ["vllm", "serve", "$(M)"], "env": env})).launch.model == "org/m"


def test_value_from_is_unresolved_never_guessed():
    env = [{"name": "HF_MODEL", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    f = one(pod({"command": ["vllm", "serve", "$(HF_MODEL)", "--max-model-len", "$(HF_MODEL)"], "env": env}))
    assert f.launch.model is None
    assert set(f.launch.unresolved) == {"--model", "--max-model-len"}
    f = one(pod({"command": ["sh", "-c", "vllm serve $HF_MODEL"], "env": env}))
    assert f.launch.unresolved == ("--model",)


def test_env_from_makes_undefined_references_unresolved():
    f = one(pod({"command": ["vllm", "serve", "--model=$(MODEL)"], "envFrom": [{"configMapRef": {"name": "c"}}]}))
    assert f.launch.unresolved == ("--model",)


def test_config_file_is_unresolved():
    f = one(pod({"args": ["--config", "/etc/vllm/config.yaml", "--model", "org/m"]}))
    assert "--config" in f.launch.unresolved and f.launch.model == "org/m"


@pytest.mark.parametrize("argv, field, value", [
    (["--max_model_len", "4096"], "max_model_len", 4096),
    (["--max-model-len=16k"], "max_model_len", 16000),
    (["--max-model-len", "16K"], "max_model_len", 16384),
    (["--max-model-len", "1m"], "max_model_len", 1000000),
    (["--max-model-len", "auto"], "max_model_len", -1),
    (["--max-model-len", "-1"], "max_model_len", -1),
    (["--gpu-memory-util", "0.5"], "gpu_memory_utilization", 0.5),
    (["-pp", "2"], "pipeline_parallel_size", 2),
    (["-dp=4"], "data_parallel_size", 4),
    (["-q", "fp8"], "quantization", "fp8"),
    (["--enforce-eager"], "enforce_eager", True),
    (["--enforce-eager", "--no-enforce-eager"], "enforce_eager", False),
    (["--enable-expert-parallel"], "enable_expert_parallel", True),
    (["--kv-cache-memory-bytes", "8G"], "kv_cache_memory_bytes", 8 << 30),
])
def test_flag_spellings(argv, field, value):
    assert getattr(parse_vllm_args(["org/m", *argv]).launch, field) == value


def test_ambiguous_prefix_is_a_problem_not_a_crash():
    f = one(pod({"command": ["vllm", "serve", "org/m", "--max-num", "3"]}))
    assert f.problems and "ambiguous" in f.problems[0]


def test_boolean_flag_does_not_swallow_next_flag():
    launch = parse_vllm_args(["org/m", "--data-parallel-hybrid-lb", "--enable-expert-parallel"]).launch
    assert launch.enable_expert_parallel is True


def test_positional_unresolved_uses_flag_name():
    launch = parse_vllm_args([UnresolvedValue("$(M)"), "-tp", "2"]).launch
    assert launch.unresolved == ("--model",)


def test_later_value_clears_earlier_unresolved():
    launch = parse_vllm_args(["org/m", "-tp", UnresolvedValue("$(T)"), "-tp", "2"]).launch
    assert launch.tensor_parallel_size == 2 and launch.unresolved == ()


def test_init_container_native_sidecar_runs_vllm():
    obj = pod({"name": "app", "image": "busybox", "command": ["sleep", "inf"]})
    obj["spec"]["initContainers"] = [{"name": "engine", "image": "vllm/vllm-openai:v0.11.0", "restartPolicy": "Always",
                                      "args": ["--model", "org/m"]}]
    assert one(obj).container == "engine"


@pytest.mark.parametrize("image, version", [
    ("vllm/vllm-openai:v0.11.0", "0.11.0"),
    ("docker.io/vllm/vllm-openai:v0.19.1-x86_64-cu130", "0.19.1"),
    ("vllm/vllm-openai:0.8.5", "0.8.5"),
    ("vllm/vllm-openai:latest", None),
    ("vllm/vllm-openai@sha256:" + "a" * 64, None),
    ("rocm/vllm:rocm6.2_mi300_ubuntu20.04_py3.9_vllm_0.6.4", "0.6.4"),
    ("nvcr.io/nvidia/vllm:26.02-py3", None),
    ("quay.io/rh-aiservices-bu/vllm-openai-ubi9:0.4.2", None),
    ("localhost:5000/vllm/vllm-openai:v0.10.0", "0.10.0"),
    (None, None),
])
def test_vllm_version_from_image(image, version):
    assert vllm_version_from_image(image) == version


# ---------------------------------------------------------------- shell

def test_shell_splitting():
    cmds = split_script("a 'b c' \"d $X\" && e;f | g\nh \\\n i # c\n`j` $(k) 2>&1 >/dev/null", {"X": "1"})
    assert cmds[0] == ["a", "b c", "d 1"]
    assert cmds[1:4] == [["e"], ["f"], ["g"]]
    assert cmds[4] == ["h", "i"]
    assert all(isinstance(w, UnresolvedValue) for w in cmds[5])


def test_shell_arithmetic_and_defaults():
    (cmd,) = split_script("x $((A * (B + 1))) ${U-} ${U:-7} ${A:+y} $((U * 2))", {"A": "3", "B": "1"})
    assert cmd[1] == "6" and cmd[3] == "7"
    assert isinstance(cmd[2], UnresolvedValue) and isinstance(cmd[4], UnresolvedValue)
    assert isinstance(cmd[5], UnresolvedValue)


def test_assignments_apply_to_later_commands():
    cmds = split_script("A=org/m\nvllm serve $A", {})
    assert cmds == [["vllm", "serve", "org/m"]]


def test_unterminated_quote_is_lenient():
    assert split_script("vllm serve 'org/m", {}) == [["vllm", "serve", "org/m"]]


# ---------------------------------------------------------------- negatives

@pytest.mark.parametrize("container", [
    {"image": "lmsysorg/sglang:latest", "command": ["python3", "-m", "sglang.launch_server"],
     "args": ["--model-path", "m", "--tp", "2"]},
    {"image": "ghcr.io/huggingface/text-generation-inference:2", "args": ["--model-id", "m", "--num-shard", "2"]},
    {"image": "ollama/ollama:latest"},
    {"image": "nvcr.io/nvidia/tritonserver:24.01", "command": ["tritonserver", "--model-repository=/m"]},
    {"image": "ghcr.io/ggerganov/llama.cpp:server-cuda", "args": ["-m", "/m.gguf", "--ctx-size", "16384"]},
    {"image": "busybox", "command": ["sleep", "inf"], "env": [{"name": "VLLM_URL", "value": "http://vllm:8000"}]},
    {"image": "busybox", "command": ["sh", "-c", "# vllm serve org/m --tensor-parallel-size 2\nsleep inf"]},
    {"image": "busybox", "command": ["sh", "-c", "echo 'vllm serve org/m'"]},
    {"image": "python:3.12", "command": ["python", "-m", "vllm_router.app", "--port", "8000"]},
])
def test_not_vllm(container):
    assert find_launches(pod(container)) == []


def test_not_an_object():
    with pytest.raises(VllmFitError):
        find_launches(["not", "a", "dict"])  # type: ignore[arg-type]


# ---------------------------------------------------------------- kinds

def template(container: dict) -> dict:
    return {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
        {"name": "c", "image": "vllm/vllm-openai:v0.11.0", **container}]}}


@pytest.mark.parametrize("kind, spec", [
    ("Deployment", lambda t: {"template": t}),
    ("StatefulSet", lambda t: {"template": t}),
    ("ReplicaSet", lambda t: {"template": t}),
    ("DaemonSet", lambda t: {"template": t}),
    ("Job", lambda t: {"template": t}),
    ("CronJob", lambda t: {"jobTemplate": {"spec": {"template": t}}}),
    ("AppWrapper", lambda t: {"components": [{"template": {"kind": "Deployment", "spec": {"template": t}}}]}),
])
def test_workload_kinds(kind, spec):
    obj = {"kind": kind, "metadata": {"name": "w"}, "spec": spec(template({"args": ["--model", "org/m"]}))}
    f = one(obj)
    assert (f.kind, f.launch.model) == (kind, "org/m")


def test_list_expands_items():
    item = pod({"args": ["--model", "org/m"]})
    obj = {"kind": "List", "items": [item, {"kind": "Service", "metadata": {"name": "s"}}, item]}
    assert len(find_launches(obj)) == 2


def test_lws_group_size_and_injected_variables():
    leader = template({"command": ["sh", "-c", "vllm serve org/m -tp 8 -pp $(LWS_GROUP_SIZE)"],
                       "resources": {"limits": {"nvidia.com/gpu": 8}}})
    worker = template({"command": ["sh", "-c", "ray start --address=$(LWS_LEADER_ADDRESS):6379 --block"],
                       "resources": {"limits": {"nvidia.com/gpu": 8}}})
    obj = {"kind": "LeaderWorkerSet", "metadata": {"name": "l"},
           "spec": {"leaderWorkerTemplate": {"size": 3, "leaderTemplate": leader, "workerTemplate": worker}}}
    f = one(obj)
    assert (f.container, f.launch.pipeline_parallel_size, f.gpus.count) == ("leader/c", 3, 24)


def test_kserve_isvc_vllm_backend_and_workerspec():
    obj = {"kind": "InferenceService", "metadata": {"name": "i"}, "spec": {"predictor": {
        "model": {"modelFormat": {"name": "huggingface"}, "storageUri": "hf://org/m",
                  "args": ["--backend=vllm", "--max-model-len=4096"],
                  "resources": {"limits": {"nvidia.com/gpu": "4"}}},
        "workerSpec": {"tensorParallelSize": 4, "pipelineParallelSize": 2}}}}
    f = one(obj)
    assert (f.container, f.launch.model, f.launch.tensor_parallel_size, f.launch.pipeline_parallel_size,
            f.gpus.count) == ("kserve-container", "org/m", 4, 2, 8)


def test_llmisvc_prefill_and_additional_args():
    obj = {"kind": "LLMInferenceService", "metadata": {"name": "x"}, "spec": {
        "model": {"uri": "hf://org/m"},
        "template": {"containers": [{"name": "main", "env": [
            {"name": "VLLM_ADDITIONAL_ARGS", "value": "--max-model-len 2048 --kv-cache-dtype fp8"}]}]},
        "prefill": {"parallelism": {"tensor": 2},
                    "template": {"containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": 2}}}]}}}}
    decode, prefill = find_launches(obj)
    assert (decode.container, decode.launch.max_model_len, decode.launch.kv_cache_dtype) == ("template/main", 2048,
                                                                                             "fp8")
    assert (prefill.container, prefill.launch.tensor_parallel_size, prefill.gpus.count) == ("prefill.template/main",
                                                                                            2, 2)


# ---------------------------------------------------------------- review fixes

@pytest.mark.parametrize("argv, field, value", [
    (["--data-parallel-size-local", "2"], "data_parallel_size_local", 2),
    (["-dpl", "4"], "data_parallel_size_local", 4),
    (["-dpl=4"], "data_parallel_size_local", 4),
    (["--data-parallel-size-l=3"], "data_parallel_size_local", 3),  # unambiguous prefix
    (["--data_parallel_size_local", "2"], "data_parallel_size_local", 2),
    (["--kv-transfer-config", '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'], "kv_transfer_config",
     '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'),
    (['--kv-events-config={"enable_kv_cache_events": true}'], "kv_events_config", '{"enable_kv_cache_events": true}'),
    (["--kv-t", "{}"], "kv_transfer_config", "{}"),
])
def test_data_parallel_local_and_kv_connector_flags(argv, field, value):
    launch = parse_vllm_args(["org/m", *argv]).launch
    assert getattr(launch, field) == value
    assert field in launch.stated() and launch.sources[field].startswith("argv[")


def test_data_parallel_size_is_not_taken_for_local():
    launch = parse_vllm_args(["org/m", "--data-parallel-size", "8", "-dpl", "2"]).launch
    assert (launch.data_parallel_size, launch.data_parallel_size_local) == (8, 2)
    with pytest.raises(VllmFitError, match="ambiguous"):
        parse_vllm_args(["org/m", "--data-parallel-s", "2"])
    with pytest.raises(VllmFitError, match="ambiguous"):
        parse_vllm_args(["org/m", "--kv-", "x"])


def test_many_valued_options_take_every_value_up_to_the_next_option():
    f = one(pod({"args": ["--model", "Qwen/Qwen3-32B", "--served-model-name", "qwen", "qwen32b", "-tp", "2"]}))
    assert (f.launch.model, f.launch.tensor_parallel_size) == ("Qwen/Qwen3-32B", 2)
    f = one(pod({"command": ["vllm", "serve", "Qwen/Qwen3-32B", "--served-model-name", "a", "b"]}))
    assert f.launch.model == "Qwen/Qwen3-32B" and f.problems == ()


@pytest.mark.parametrize("argv", [
    ["--lora-modules", "a=/l/a", "b=/l/b", "--model", "org/m"],
    ["--cuda-graph-sizes", "1", "2", "4", "--model", "org/m"],
    ["--cudagraph-capture-sizes", "1", "2", "4", "--model", "org/m"],
    ["--api-key", "k1", "k2", "--model", "org/m"],
    ["--ignore-patterns", "*.pt", "original/*", "--model", "org/m"],
    ["--served-model-name=a", "org/m"],  # `=`: exactly one value, the rest is positional
    ["--served", "a", "b", "--model", "org/m"],  # a prefix of a many-valued option
])
def test_many_valued_options_do_not_leave_values_for_the_model(argv):
    assert parse_vllm_args(argv).launch.model == "org/m"


def test_single_valued_options_stay_single():
    # --middleware is action="append" and --allowed-local-media-path one string in vLLM: one value each.
    assert parse_vllm_args(["--middleware", "x.y", "org/m"]).launch.model == "org/m"
    assert parse_vllm_args(["--allowed-local-media-path", "/data", "org/m"]).launch.model == "org/m"


def test_many_valued_option_without_a_value_is_a_problem():
    f = one(pod({"command": ["vllm", "serve", "org/m", "--served-model-name", "-tp", "2"]}))
    assert f.problems and "at least one value" in f.problems[0]


@pytest.mark.parametrize("command", [
    ["bash", "-o", "pipefail", "-c", "vllm serve Qwen/Qwen3-32B -tp 4"],
    ["bash", "-euo", "pipefail", "-c", "vllm serve Qwen/Qwen3-32B -tp 4"],
    ["/bin/bash", "+o", "posix", "-O", "extglob", "-e", "-x", "-u", "-l", "-c", "vllm serve Qwen/Qwen3-32B -tp 4"],
    ["bash", "--login", "--noprofile", "--norc", "-c", "vllm serve Qwen/Qwen3-32B -tp 4"],
    ["bash", "--rcfile", "/etc/rc", "-c", "vllm serve Qwen/Qwen3-32B -tp 4"],
    ["sh", "-c", "-e", "vllm serve Qwen/Qwen3-32B -tp 4"],
    ["uv", "run", "vllm", "serve", "Qwen/Qwen3-32B", "-tp", "4"],
    ["uv", "run", "--with", "x", "vllm", "serve", "Qwen/Qwen3-32B", "-tp", "4"],
    ["uv", "--directory", "/app", "run", "--frozen", "--with=y", "-p", "3.12", "--", "vllm", "serve",
     "Qwen/Qwen3-32B", "-tp", "4"],
    ["uv", "run", "-m", "vllm.entrypoints.openai.api_server", "--model", "Qwen/Qwen3-32B", "-tp", "4"],
    ["uv", "tool", "run", "vllm", "serve", "Qwen/Qwen3-32B", "-tp", "4"],
    ["uvx", "--from", "vllm==0.11.0", "vllm", "serve", "Qwen/Qwen3-32B", "-tp", "4"],
    ["uvx", "vllm@0.11.0", "serve", "Qwen/Qwen3-32B", "-tp", "4"],
    ["sh", "-c", "uv run --with x vllm serve Qwen/Qwen3-32B -tp 4"],
    ["numactl", "--cpunodebind=0", "-m", "0", "taskset", "-c", "0-7", "stdbuf", "-oL", "vllm", "serve",
     "Qwen/Qwen3-32B", "-tp", "4"],
    ["tini", "--", "nice", "-n", "5", "vllm", "serve", "Qwen/Qwen3-32B", "-tp", "4"],
])
def test_shell_options_and_wrappers_before_vllm(command):
    f = one(pod({"command": command}))
    assert (f.launch.model, f.launch.tensor_parallel_size) == ("Qwen/Qwen3-32B", 4)


@pytest.mark.parametrize("command", [
    ["bash", "-o", "pipefail", "start.sh"],  # a script file, not -c
    ["uv", "pip", "install", "vllm"],
    ["uv", "run", "python", "train.py", "--vllm"],
])
def test_wrappers_that_do_not_start_vllm(command):
    assert find_launches(pod({"command": command})) == []


def test_prefix_assignments_are_found_and_vllm_ones_recorded():
    f = one(pod({"command": ["sh", "-c",
                             "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 HF_HOME=/x vllm serve Qwen/Qwen3-32B -tp 4\n"]}))
    assert f.launch.model == "Qwen/Qwen3-32B"
    assert f.launch.env == {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"}
    f = one(pod({"command": ["A=1", "VLLM_USE_V1=1", "vllm", "serve", "Qwen/Qwen3-32B"]}))
    assert (f.launch.model, f.launch.env) == ("Qwen/Qwen3-32B", {"VLLM_USE_V1": "1"})
    f = one(pod({"command": ["env", "-u", "X", "VLLM_A=2", "vllm", "serve", "org/m"],
                 "env": [{"name": "VLLM_B", "value": "3"}]}))
    assert f.launch.env == {"VLLM_A": "2", "VLLM_B": "3"}
    f = one(pod({"command": ["sh", "-c", "export VLLM_C=4; VLLM_B=5 exec vllm serve org/m"],
                 "env": [{"name": "VLLM_B", "value": "3"}]}))
    assert f.launch.env == {"VLLM_B": "5", "VLLM_C": "4"}


def test_prefix_assignment_is_not_a_shell_variable():
    (cmd, after) = split_script("A=1 vllm serve x; echo $A", {})
    assert cmd.env == {"A": "1"} and isinstance(after[1], UnresolvedValue)


def test_configured_image_pattern_with_a_wildcard_in_the_middle():
    obj = {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "registry.corp/team/llm-server:1.0", "args": ["--model", "org/m", "-tp", "2"]}]}}}}
    f = one(obj, vllm_images=("registry.corp/*/llm-server",))
    assert (f.launch.model, f.launch.tensor_parallel_size) == ("org/m", 2)
    assert find_launches(obj, vllm_images=("registry.corp/*/other-server",)) == []
    assert one(obj, vllm_images=("registry.corp/t?am/llm-[a-z]erver",)).launch.model == "org/m"
    assert one(obj, vllm_images=("*",)).launch.model == "org/m"


def test_mentions_vllm_uses_every_literal_fragment_of_a_pattern():
    from vllm_fit.launch.find import mentions_vllm
    spec = {"containers": [{"image": "registry.corp/team/llm-server@sha256:abc"}]}
    assert mentions_vllm(spec, ("registry.corp/*/llm-server",))
    assert not mentions_vllm(spec, ("registry.corp/*/llm-gateway",))
    assert not mentions_vllm({"containers": [{"image": "other.io/team/llm-server"}]}, ("registry.corp/*/llm-server",))
