"""The AdmissionReview bodies recorded from a real kube-apiserver (fixtures/admission, copied
from the shared recordings; see its README.md) extract correctly from request.object."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vllm_fit.launch import find_launches
from vllm_fit.launch.find import mentions_vllm

ADMISSION = Path(__file__).parent / "fixtures" / "admission"
FILES = sorted(ADMISSION.glob("*.json"))
LLAMA = "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic"
H100 = ("NVIDIA-H100-80GB-HBM3", "node-selector")

# scenario -> (container, model, tp, pp, max_model_len, vllm_version, gpu count, resource, (type, source))
SCENARIOS = {
    "a": ("vllm", LLAMA, 1, None, 16000, "0.11.0", 1, "nvidia.com/gpu", H100),
    "b": ("vllm", LLAMA, 2, None, 16000, "0.11.0", 2, "nvidia.com/gpu", H100),
    "c": ("vllm", "Qwen/Qwen3-8B", 1, None, 32768, "0.11.0", 1, "nvidia.com/gpu", H100),
    "d": ("vllm", "Qwen/Qwen3-32B", 1, None, 32000, "0.11.0", 1, "nvidia.com/gpu", (None, "unknown")),
    # sh -c with $(MODEL_ID)/$(TP) expanded by the kubelet; --max-model-len 32k = 32000
    "e": ("vllm", "Qwen/Qwen3-0.6B", 1, None, 32000, "0.11.0", 1, "nvidia.com/gpu", (None, "unknown")),
    # python3 -m ...api_server -tp 1 on rocm/vllm:..._vllm_0.6.4
    "f": ("vllm", "meta-llama/Llama-3.1-8B-Instruct", 1, None, None, "0.6.4", 1, "amd.com/gpu", (None, "unknown")),
    # args only on vllm/vllm-openai:v0.10.2
    "g": ("vllm", "openai/gpt-oss-120b", 1, None, 16000, "0.10.2", 1, "nvidia.com/gpu", (None, "unknown")),
    # the LWS leader (ray start ...; vllm serve ... TP 8 PP 2), 2 pods x 8 GPUs
    "j": ("leader/vllm-leader", "deepseek-ai/DeepSeek-R1", 8, 2, None, "0.11.0", 16, "nvidia.com/gpu",
          (None, "unknown")),
    "k1": ("vllm", "Qwen/Qwen3-8B", 1, None, 8192, "0.11.0", 1, "nvidia.com/gpu", (None, "unknown")),
    "l": ("vllm", "mistralai/Mistral-Small-3.2-24B-Instruct-2506", 2, None, 32768, "0.11.0", 2, "nvidia.com/gpu",
          (None, "unknown")),
    "m": ("vllm", "openai/gpt-oss-120b", 1, None, 16000, "0.10.2", 1, "nvidia.com/gpu", (None, "unknown")),
}


def scenario_of(path: Path) -> str:
    return path.name.split("-")[1]


def expected_for(path: Path):
    scenario = scenario_of(path)
    if scenario == "h" or "-scale-scale-" in path.name:
        return None  # nginx, and the Scale object with no pod template
    if scenario in ("i", "k2"):
        # controller updates of the llama70b Deployment's ReplicaSets / Pods: the old RS is TP 1
        old_rs = "7bb77df977" in json.dumps(json.loads(path.read_text())["request"]["object"]["metadata"])
        return SCENARIOS["a" if old_rs else "b"]
    return SCENARIOS[scenario]


def test_all_recorded_reviews_are_here():
    assert len(FILES) == 65


@pytest.mark.parametrize("path", FILES, ids=[p.name[:2] for p in FILES])
def test_review_object_extracts(path):
    review = json.loads(path.read_text())
    request = review["request"]
    found = find_launches(request["object"])
    expected = expected_for(path)
    if expected is None:
        assert found == []
        return
    assert len(found) == 1
    launch = found[0]
    container, model, tp, pp, max_len, version, count, resource, (gpu_type, source) = expected
    assert launch.kind == request["kind"]["kind"]
    assert launch.container == container
    assert launch.launch.model == model
    assert launch.launch.tensor_parallel_size == tp
    assert launch.launch.pipeline_parallel_size == pp
    assert launch.launch.max_model_len == max_len
    assert launch.launch.vllm_version == version
    assert launch.launch.unresolved == ()
    assert (launch.gpus.count, launch.gpus.resource) == (count, resource)
    assert (launch.gpus.type, launch.gpus.type_source) == (gpu_type, source)
    assert launch.problems == ()
    assert launch.namespace == "llm"


def test_amd_job_reads_kv_cache_dtype():
    review = json.loads((ADMISSION / "21-f-job-amd-job-create-mutate.json").read_text())
    (launch,) = find_launches(review["request"]["object"])
    assert launch.launch.kv_cache_dtype == "fp8"


def test_generate_name_pod_without_name():
    review = json.loads((ADMISSION / "47-k1-generatename-pod-pod-create-mutate.json").read_text())
    obj = review["request"]["object"]
    assert "name" not in obj["metadata"] and "name" not in review["request"]
    (launch,) = find_launches(obj)
    assert launch.name == "vllm-bench-"


def test_scale_subresource_is_cheaply_ignored():
    review = json.loads((ADMISSION / "37-i-scale-scale-update-mutate.json").read_text())
    assert review["request"]["kind"]["kind"] == "Scale"
    assert find_launches(review["request"]["object"]) == []


def test_nginx_is_rejected_by_the_cheap_gate():
    review = json.loads((ADMISSION / "31-h-nginx-negative-deployment-create-mutate.json").read_text())
    assert not mentions_vllm(review["request"]["object"]["spec"])


def test_lws_worker_ray_only_template_is_not_a_launch():
    review = json.loads((ADMISSION / "45-j-lws-leaderworkerset-create-mutate.json").read_text())
    found = find_launches(review["request"]["object"])
    assert [f.container for f in found] == ["leader/vllm-leader"]


def test_old_object_on_update_extracts_the_previous_launch():
    review = json.loads((ADMISSION / "07-b-deploy-update-tp2-deployment-update-mutate.json").read_text())
    (new,) = find_launches(review["request"]["object"])
    (old,) = find_launches(review["request"]["oldObject"])
    assert (old.launch.tensor_parallel_size, new.launch.tensor_parallel_size) == (1, 2)
