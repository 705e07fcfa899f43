"""The webhook learns the cluster's GPUs from a kopf watch of Nodes (the real server process over
TLS, kmock's emulator as the API server): a launch that names no GPU type is judged on the GPU
types of the Nodes it can be scheduled on, and Nodes added later are seen without a restart."""

from __future__ import annotations

import time

import pytest

from webhook_harness import DiscoveryApi, Webhook, deployment_review

LLAMA = "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic"


def node(name: str, product: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": product, "kubernetes.io/hostname": name}},
            "status": {"allocatable": {"nvidia.com/gpu": "8"}}}


def review_of(args: list[str], gpus: int = 1) -> dict:
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "llm", "namespace": "llm"},
           "spec": {"selector": {"matchLabels": {"app": "llm"}}, "template": {
               "metadata": {"labels": {"app": "llm"}},
               "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.11.0", "args": args,
                                        "resources": {"limits": {"nvidia.com/gpu": gpus}}}]}}}}
    return deployment_review(obj)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    api = DiscoveryApi(nodes=(node("h100-a", "NVIDIA-H100-80GB-HBM3"),)).start()
    workdir = tmp_path_factory.mktemp("nodes")
    hook = Webhook(workdir, api.kubeconfig(workdir / "kubeconfig"), {"mode": "enforce"},
                   env={"VLLM_FIT_HUB": "0"}).start()
    yield api, hook
    hook.stop()
    api.stop()


def wait_for(hook: Webhook, review: dict, check, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        _, data = hook.post("/validate", review)
        response = data["response"]
        if check(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.3)


def test_a_launch_without_a_gpu_type_is_judged_on_the_watched_nodes(cluster):
    api, hook = cluster
    tp1 = review_of([LLAMA, "--max-model-len", "16000"])
    response = wait_for(hook, tp1, lambda r: r["allowed"] is False)
    assert response["allowed"] is False, response
    message = response["status"]["message"]
    assert "H100-80GB (1 node)" in message and "TP=2 gives" in message, message
    # A Node created while the server runs is seen through the watch, without a restart.
    api.create(node("h100-b", "NVIDIA-H100-80GB-HBM3"))
    response = wait_for(hook, tp1, lambda r: "H100-80GB (2 nodes)" in (r.get("status") or {}).get("message", ""))
    assert "H100-80GB (2 nodes)" in response["status"]["message"], response
    # TP=2 fits there, and the mutating webhook records where the GPU type came from.
    _, data = hook.post("/mutate", review_of([LLAMA, "-tp", "2", "--max-model-len", "16000"], gpus=2))
    assert data["response"]["allowed"] is True
    import base64
    import json

    ops = json.loads(base64.b64decode(data["response"]["patch"]))
    annotations = {op["path"].rsplit("/", 1)[-1].replace("~1", "/"): op.get("value") for op in ops}
    if "annotations" in annotations and isinstance(annotations["annotations"], dict):
        annotations = annotations["annotations"]
    assert annotations.get("vllm-fit.io/gpu-source") == "cluster", ops
    assert annotations.get("vllm-fit.io/gpu") == "H100-80GB", ops
