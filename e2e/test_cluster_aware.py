"""Issue 11 against a real API server, with the chart's default configuration (no default GPU,
unknown GPUs warned about): what the manifest says is judged even when it names no GPU type,
and the GPU types are learnt from the cluster's Nodes.

- denied with no GPU type named: TP=4 on 2 GPUs, TP=3 on a 64-head model, a misspelled flag on
  a versioned vLLM image;
- once two Nodes labelled nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3 exist (the webhook
  watches Nodes with the chart's RBAC), Llama-3.3-70B-FP8 at TP=1 without a nodeSelector is
  denied, naming the H100 and TP=2, and TP=2 is admitted with gpu-source "cluster";
- a CPU-only vLLM Deployment is admitted with no GPU warning;
- `vllm-fit check --cluster` reads the same Nodes through the kubeconfig and gives the same verdict.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Optional

import pytest
import yaml

from e2e_support import REPO, Cluster, Kubectl, Namespaces, is_denial, poll, vllm_annotations, warnings_of

pytestmark = pytest.mark.usefixtures("webhook")

LLAMA = "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic"  # 64 attention heads, 8 KV heads
QWEN32 = "Qwen/Qwen3-32B"
H100_PRODUCT = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


def deployment(name: str, namespace: str, args: list[str], *, gpus: Optional[int] = 1,
               image: str = "vllm/vllm-openai:v0.11.0", command: Optional[list[str]] = None,
               env: Optional[dict[str, str]] = None, resources: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """A Deployment of one vLLM container that names no GPU type (no nodeSelector, no annotation)."""
    container: dict[str, Any] = {"name": "vllm", "image": image, "args": args}
    if command:
        container["command"] = command
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if resources is not None:
        container["resources"] = resources
    elif gpus is not None:
        container["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}}}}


def test_tp4_with_two_gpus_is_denied_without_a_gpu_type(kubectl: Kubectl, namespaces: Namespaces):
    result = kubectl.apply(deployment("qwen32-tp4-2gpu", namespaces.enforce, [QWEN32, "-tp", "4"], gpus=2))
    assert is_denial(result), str(result)
    assert "needs 4 GPUs but the pod gets 2" in result.stderr, result.stderr
    assert kubectl.get("deployment", "qwen32-tp4-2gpu", namespaces.enforce) is None


def test_tp3_on_a_64_head_model_is_denied_without_a_gpu_type(kubectl: Kubectl, namespaces: Namespaces):
    result = kubectl.apply(deployment("llama70b-tp3", namespaces.enforce, [LLAMA, "-tp", "3"], gpus=3))
    assert is_denial(result), str(result)
    assert "attention heads (64) must be divisible by tensor parallel size (3)" in result.stderr, result.stderr
    assert "valid TP sizes: 1, 2, 4, 8" in result.stderr, result.stderr


def test_a_misspelled_flag_on_a_versioned_image_is_denied(kubectl: Kubectl, namespaces: Namespaces):
    args = [QWEN32, "--gpu-memory-utilisation", "0.5", "--max-model-len", "8192"]
    result = kubectl.apply(deployment("qwen32-typo", namespaces.enforce, args))
    assert is_denial(result), str(result)
    assert "vLLM 0.11.0 has no option --gpu-memory-utilisation" in result.stderr, result.stderr
    assert "did you mean --gpu-memory-utilization?" in result.stderr, result.stderr
    # The same flag spelled right passes that check (only the unknown GPU type is warned about).
    good = kubectl.apply(deployment("qwen32-typo", namespaces.enforce,
                                    [QWEN32, "--gpu-memory-utilization", "0.5", "--max-model-len", "8192"]),
                         "--dry-run=server")
    assert good.ok, str(good)


def _dry_run(kubectl: Kubectl, obj: dict[str, Any]):
    return kubectl.apply(obj, "--dry-run=server", "-o", "json")


def test_h100_nodes_make_the_webhook_judge_on_h100(kubectl: Kubectl, namespaces: Namespaces, make_node,
                                                   cluster: Cluster, webhook: Any, tmp_path):
    tp1 = deployment("llama70b-cluster-tp1", namespaces.enforce, [LLAMA, "--max-model-len", "16000"])
    names = [make_node(labels=H100_PRODUCT, capacity={"nvidia.com/gpu": "8"}) for _ in range(2)]

    def denied_on_h100() -> Optional[str]:
        result = _dry_run(kubectl, tp1)
        if is_denial(result) and "H100-80GB" in result.stderr:
            return None
        return f"not yet denied on the H100 Nodes: {result.returncode} {result.stderr.strip()[:300]}"

    # The webhook learns the Nodes from its watch (not on the request path): wait for it.
    poll("the webhook seeing the two H100 Nodes", denied_on_h100, timeout=30)
    result = kubectl.apply(tp1)
    assert is_denial(result), str(result)
    assert "fits none of the cluster's GPUs this pod can be scheduled on (H100-80GB (2 nodes))" in result.stderr
    assert "TP=2 gives" in result.stderr, result.stderr
    assert kubectl.get("deployment", "llama70b-cluster-tp1", namespaces.enforce) is None

    tp2 = deployment("llama70b-cluster-tp2", namespaces.enforce, [LLAMA, "-tp", "2", "--max-model-len", "16000"],
                     gpus=2)
    created = kubectl.apply(tp2)
    assert created.ok, str(created)
    assert not [w for w in warnings_of(created) if "GPU type" in w], created.stderr
    annotations = vllm_annotations(kubectl.get("deployment", "llama70b-cluster-tp2", namespaces.enforce))
    assert annotations["vllm-fit.io/gpu"] == "H100-80GB", annotations
    assert annotations["vllm-fit.io/gpu-source"] == "cluster", annotations
    assert annotations["vllm-fit.io/verdict"] in ("fits", "warn"), annotations

    # `vllm-fit check --cluster` lists the same Nodes through the kubeconfig, offline from the webhook.
    manifest_path = tmp_path / "llama70b-tp1.yaml"
    manifest_path.write_text(yaml.safe_dump(tp1))
    check = subprocess.run([sys.executable, "-m", "vllm_fit", "check", str(manifest_path), "--cluster",
                            "--kubeconfig", str(cluster.kubeconfig)], capture_output=True, text=True,
                           timeout=120, cwd=REPO, env={**os.environ, "VLLM_FIT_HUB": "0"})
    assert check.returncode == 1, check.stdout + check.stderr
    assert "H100-80GB" in check.stdout and "TP=2 gives" in check.stdout, check.stdout
    assert len(names) == 2
    server = getattr(webhook, "server", None)
    if server is not None:  # local mode: the server's log shows the watch worked with the chart's RBAC alone
        lines = [line for line in server.log_text().splitlines() if "nodes" in line.lower()]
        assert not [line for line in lines if "forbidden" in line.lower() or "403" in line or "error" in line.lower()], \
            "\n".join(lines[-20:])


def test_a_cpu_only_vllm_deployment_is_admitted_without_a_gpu_warning(kubectl: Kubectl, namespaces: Namespaces):
    cpu = deployment("qwen-cpu", namespaces.enforce, [], image="public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.11.0",
                     command=["vllm", "serve", "Qwen/Qwen3-0.6B", "--dtype", "bfloat16"],
                     env={"VLLM_CPU_KVCACHE_SPACE": "8"},
                     resources={"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"memory": "32Gi"}})
    result = kubectl.apply(cpu)
    assert result.ok, str(result)
    assert warnings_of(result) == [], result.stderr
    annotations = vllm_annotations(kubectl.get("deployment", "qwen-cpu", namespaces.enforce))
    assert annotations.get("vllm-fit.io/verdict") == "unknown", annotations  # judged: not modelled
    # A TPU launch likewise: not judged, no warning.
    tpu = deployment("qwen-tpu", namespaces.enforce, [], image="vllm/vllm-tpu:v0.11.0",
                     command=["vllm", "serve", "Qwen/Qwen3-0.6B", "-tp", "4"],
                     resources={"limits": {"google.com/tpu": "4"}})
    result = kubectl.apply(tpu)
    assert result.ok and warnings_of(result) == [], str(result)
