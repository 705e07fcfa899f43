"""What is judged when the manifest names no GPU type: values, flags, the GPU count, TP/PP
against the model, weights against the largest GPU; other accelerators and CPU are not judged;
invalid launches show the reason and the fix, never a made-up memory breakdown."""

from __future__ import annotations

import json

import pytest

from vllm_fit.check import check_object
from vllm_fit.cli import main as cli_main
from vllm_fit.launch.find import find_launches
from vllm_fit.memory.plan import plan
from vllm_fit.cli.common import render_plan
from vllm_fit.profiles import vllm_flag_table

LLAMA = "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic"


def pod(args, gpus=1, image="vllm/vllm-openai:v0.11.0", resource="nvidia.com/gpu", command=None, env=None,
        node_selector=None):
    container = {"name": "vllm", "image": image, "args": args}
    if command:
        container["command"] = command
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if gpus is not None:
        container["resources"] = {"limits": {resource: gpus}}
    spec = {"containers": [container]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": spec}


@pytest.fixture()
def judge(catalog, profiles, bundled):
    table = vllm_flag_table()

    def run(obj, **kw):
        (result,) = check_object(obj, resolver=bundled, catalog=catalog, profiles=profiles, flag_table=table, **kw)
        return result
    return run


def codes(result, severity):
    return [r.code for r in result.verdict.reasons if r.severity == severity]


def test_tp4_with_two_gpus_is_rejected_without_a_gpu_type(judge):
    result = judge(pod(["Qwen/Qwen3-32B", "-tp", "4"], gpus=2))
    assert result.rejected
    assert codes(result, "error") == ["gpu-count-mismatch"]
    assert "needs 4 GPUs but the pod gets 2" in result.verdict.errors[0].message
    assert result.plan is None


def test_too_few_gpus_needs_no_model_either(judge):
    result = judge(pod(["some-org/not-bundled-model", "-tp", "8"], gpus=4))
    assert codes(result, "error") == ["gpu-count-mismatch"]


def test_more_gpus_than_used_is_a_warning(judge):
    result = judge(pod(["Qwen/Qwen3-32B", "-tp", "2"], gpus=4))
    assert not result.rejected and "gpu-count-mismatch" in codes(result, "warning")


def test_tp3_on_64_heads_is_rejected_without_a_gpu_type(judge):
    result = judge(pod([LLAMA, "-tp", "3"], gpus=3))
    assert codes(result, "error") == ["invalid-parallelism"]
    message = result.verdict.errors[0].message
    assert "attention heads (64)" in message and "valid TP sizes: 1, 2, 4, 8" in message
    assert result.plan is None


def test_pp_beyond_the_layers_is_rejected(judge):
    result = judge(pod(["Qwen/Qwen3-0.6B", "-pp", "64"], gpus=64))
    assert codes(result, "error") == ["invalid-parallelism"]
    assert "decoder layers" in result.verdict.errors[0].message


@pytest.mark.parametrize("args, text", [
    (["-tp", "0"], "--tensor-parallel-size must be at least 1"),
    (["--gpu-memory-utilization", "1.5"], "must be in (0, 1]"),
    (["--kv-cache-dtype", "fp4"], "is not a vLLM cache dtype"),
    (["--block-size", "24"], "--block-size 24 is not accepted by vLLM 0.11.0"),
    (["--max-model-len", "12q"], "max-model-len"),
])
def test_invalid_values_are_rejected_with_or_without_a_known_model(judge, args, text):
    for model in ("Qwen/Qwen3-0.6B", "some-org/not-bundled-model"):
        result = judge(pod([model, *args], gpus=1))
        assert codes(result, "error") == ["invalid-argument"], (model, args)
        assert text in result.verdict.errors[0].message


def test_weights_beyond_the_largest_gpu_are_rejected_without_a_type(judge, catalog):
    result = judge(pod(["deepseek-ai/DeepSeek-R1"], gpus=1))
    assert codes(result, "error") == ["weights-exceed-gpu"]
    largest = max((g for g in catalog.gpus if g.vendor == "nvidia"), key=lambda g: g.total_bytes)
    assert largest.name in result.verdict.errors[0].message
    assert result.plan is None
    # and the same model at a TP whose weights fit some GPU is only "type unknown"
    assert not judge(pod(["deepseek-ai/DeepSeek-R1", "-tp", "8"], gpus=8)).rejected


def test_without_a_type_a_launch_that_could_fit_is_admitted_with_the_unknown_gpu_warning(judge):
    result = judge(pod([LLAMA], gpus=1))
    assert not result.rejected and codes(result, "warning") == ["unknown-gpu"]
    assert result.plan is None and result.gpu is None


@pytest.mark.parametrize("resources, image, command, env, accelerator", [
    ({"google.com/tpu": 4}, "vllm/vllm-tpu:v0.11.0", None, None, "TPU (google.com/tpu)"),
    ({"habana.ai/gaudi": 8}, "vault.habana.ai/gaudi-docker/vllm:1.20", None, None, "Intel Gaudi (habana.ai/gaudi)"),
    ({"huawei.com/Ascend910": 8}, "quay.io/ascend/vllm-ascend:v0.11.0", None, None, "Huawei Ascend"),
    ({"aws.amazon.com/neuroncore": 2}, "public.ecr.aws/neuron/vllm:0.9", None, None, "AWS Neuron"),
    ({"cpu": "16"}, "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.11.0", None, None, "CPU (image"),
    ({"cpu": "16"}, "vllm/vllm-openai:v0.11.0", None, {"VLLM_CPU_KVCACHE_SPACE": "40"}, "CPU (VLLM_CPU_KVCACHE_SPACE)"),
])
def test_other_accelerators_and_cpu_are_not_judged_and_get_no_gpu_warning(judge, resources, image, command, env,
                                                                           accelerator):
    obj = pod(["Qwen/Qwen3-0.6B", "-tp", "4", "--no-such-flag"], gpus=None, image=image,
              command=["vllm", "serve"], env=env)
    obj["spec"]["containers"][0]["resources"] = {"limits": resources}
    result = judge(obj)
    assert [(r.severity, r.code) for r in result.verdict.reasons] == [("info", "not-modelled")]
    assert accelerator in result.verdict.reasons[0].message
    assert "not judged" in result.verdict.reasons[0].message
    assert result.word == "SKIP" and not result.rejected


def test_device_cpu_flag_is_a_cpu_launch(judge):
    result = judge(pod(["Qwen/Qwen3-0.6B", "--device", "cpu"], gpus=None))
    assert codes(result, "info") == ["not-modelled"] and "--device cpu" in result.verdict.reasons[0].message


def test_a_gpu_request_wins_over_a_cpu_looking_image(judge):
    result = judge(pod(["Qwen/Qwen3-0.6B"], gpus=1, image="registry.cpu-team.example/vllm/vllm-openai:v0.11.0"))
    assert "not-modelled" not in [r.code for r in result.verdict.reasons]


def test_invalid_plan_shows_reason_and_fix_not_a_breakdown(bundled, catalog, profiles, h100):
    launch = find_launches(pod([LLAMA, "-tp", "3"], gpus=3))[0].launch
    p = plan(bundled.resolve(LLAMA), launch, h100, profiles)
    assert not p.valid and not p.verdict.fits
    text = render_plan(p)
    assert "KV cache " not in text and "weights " not in text and "per GPU" not in text
    assert "valid TP sizes: 1, 2, 4, 8" in text and "TP=2 fits on H100-80GB" in text
    assert p.to_json_dict()["per_gpu"] is None and p.to_json_dict()["kv_cache"] is None


def test_too_few_gpus_plan_shows_the_gpus_needed(bundled, profiles, h100):
    launch = find_launches(pod(["Qwen/Qwen3-32B", "-tp", "4"], gpus=2))[0].launch
    p = plan(bundled.resolve("Qwen/Qwen3-32B"), launch, h100, profiles, gpus_given=2)
    assert not p.valid
    text = render_plan(p)
    assert "needs 4 GPUs but the pod gets 2" in text and "KV cache " not in text


def test_cli_plan_of_an_invalid_tp_prints_no_breakdown(capsys):
    code = cli_main(["plan", LLAMA, "-tp", "3", "--gpu", "H100-80GB"])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code == 2  # vLLM refuses the arguments: bad input
    assert "valid TP sizes: 1, 2, 4, 8" in text and "TP=2 fits on H100-80GB" in text
    assert "per GPU" not in text and "KV cache:" not in text and "weights " not in text


def test_cli_check_without_a_gpu_type(tmp_path, capsys):
    path = tmp_path / "m.yaml"
    path.write_text(json.dumps(pod(["Qwen/Qwen3-32B", "-tp", "4"], gpus=2)))
    assert cli_main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "REJECT" in out and "gpu-count-mismatch" in out
