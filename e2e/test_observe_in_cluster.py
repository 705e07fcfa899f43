"""The observer and calibration against the real API server (issue: close the loop with vLLM).

There is no kubelet, so `pods/log` is served by a stand-in (`kubelet_standin.py`) that the API
server reaches as the kubelet of a Node this test creates (its InternalIP 127.0.0.1 and
daemonEndpoints port); the pods are bound to that Node with `nodeName`, and their container
status (Ready, or restarted after a failure) is written through the status subresource, as a
kubelet would. Everything else is real: the chart's observer RBAC (the server runs as the
chart's ServiceAccount), kopf's watch of Pods, `pods/log` through the API server, the merge patch
of the workload's annotations, the Events and the calibration ConfigMap.

The log the stand-in serves for the started pod is a real vLLM 0.19.0 startup log of the same
launch on an H100 (tests/fixtures/vllm_logs, the llm-d planner's accuracy campaign).
"""

from __future__ import annotations

import copy
import datetime as _dt
from pathlib import Path
from typing import Any, Iterator, Optional
from urllib.parse import urlsplit

import pytest
import yaml

from e2e_support import REPO, Kubectl, Namespaces, placed, poll
from kubelet_standin import KubeletStandIn

LOG = REPO / "tests/fixtures/vllm_logs/v1-0.19-h100-llmd-meta-llama-llama-3-1-8b--tp1-8192.log"
H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
ARGS = ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "8192",
        "--gpu-memory-utilization", "0.95", "--no-enable-prefix-caching"]
VALUES = {"observer": {"enabled": True, "logReadsPerMinute": 600,
                       "calibration": {"enabled": True, "refreshSeconds": 2}}}


def failed_log() -> str:
    """The same launch on a GPU another process already holds 19 GiB of: vLLM 0.19 stops before
    profiling with the error `vllm/v1/worker/utils.py` raises (text as that release formats it)."""
    head = [line for line in LOG.read_text().splitlines() if "Model loading took" not in line][:4]
    error = ("(EngineCore pid=242) ERROR 04-22 00:04:03 [v1/engine/core.py:1108] ValueError: Free memory on "
             "device cuda:0 (60.12/79.19 GiB) on startup is less than desired GPU memory utilization (0.95, "
             "75.23 GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes.")
    return "\n".join(head + [error]) + "\n"


def pod_template(node: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "llama-observed"}},
        "spec": {
            "nodeName": node,
            "nodeSelector": H100,
            "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.19.0", "args": list(ARGS),
                            "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
        },
    }


def deployment(name: str, node: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "llama-observed"}},
                     "template": pod_template(node)}}


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_container_status(kubectl: Kubectl, namespace: str, pod: str, status: dict[str, Any]) -> None:
    base = {"name": "vllm", "image": "vllm/vllm-openai:v0.19.0", "imageID": "", "containerID": "containerd://e2e"}
    body = {"status": {"phase": "Running", "containerStatuses": [{**base, **status}]}}
    result = kubectl("patch", "pod", pod, "-n", namespace, "--subresource=status", "--type=merge",
                     "-p", yaml.safe_dump(body))
    assert result.ok, str(result)


def events_for(kubectl: Kubectl, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
    return [e for e in kubectl.items("events", namespace)
            if (e.get("involvedObject") or {}).get("kind") == kind and e["involvedObject"].get("name") == name]


@pytest.fixture
def standin_node(cluster, kubectl: Kubectl, make_node) -> Iterator[tuple[KubeletStandIn, str]]:
    if urlsplit(cluster.server).hostname not in ("127.0.0.1", "localhost"):
        pytest.skip(f"the kubelet stand-in listens on this host's loopback; the API server at {cluster.server} "
                    "cannot reach it")
    standin = KubeletStandIn()
    try:
        node = make_node(labels=H100, capacity={"nvidia.com/gpu": "8"})
        patch = {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                            "daemonEndpoints": {"kubeletEndpoint": {"Port": standin.port}}}}
        result = kubectl("patch", "node", node, "--subresource=status", "--type=merge", "-p", yaml.safe_dump(patch))
        assert result.ok, str(result)
        yield standin, node
    finally:
        standin.close()


def the_pod(kubectl: Kubectl, namespace: str) -> Optional[str]:
    pods = kubectl.items("pods", namespace, "app=llama-observed")
    return pods[0]["metadata"]["name"] if pods else None


def test_observer_records_the_measurement_calibrates_and_flags_an_admitted_failure(
        kubectl: Kubectl, namespaces: Namespaces, make_namespace, local_webhook, standin_node):
    standin, node = standin_node
    ns = make_namespace("observed")
    with local_webhook.reconfigured(values=VALUES):
        # 1. A Deployment vllm-fit admits; its pod starts (Ready) and logs what vLLM measured.
        created = kubectl.apply(placed(deployment("llama", node), ns))
        assert created.ok, str(created)
        assert kubectl.get("deployment", "llama", ns)["metadata"]["annotations"]["vllm-fit.io/verdict"] == "fits"
        poll("the Deployment's pod", lambda: None if the_pod(kubectl, ns) else "no pod yet", timeout=60)
        pod = the_pod(kubectl, ns)
        standin.logs[(ns, pod, "vllm", False)] = LOG.read_text()
        set_container_status(kubectl, ns, pod, {"ready": True, "started": True, "restartCount": 0,
                                                "state": {"running": {"startedAt": now()}}})

        def annotated() -> Optional[str]:
            found = (kubectl.get("deployment", "llama", ns) or {}).get("metadata", {}).get("annotations", {})
            return None if "vllm-fit.io/measured-kv-cache-gib" in found else f"annotations so far: {found}"
        poll("the measured annotations on the Deployment", annotated, timeout=60)
        annotations = kubectl.get("deployment", "llama", ns)["metadata"]["annotations"]
        assert annotations["vllm-fit.io/measured-kv-cache-gib"] == "58.11"
        assert annotations["vllm-fit.io/measured-weights-gib"] == "14.99"
        assert annotations["vllm-fit.io/prediction-error"].endswith("%")
        assert annotations["vllm-fit.io/observed-from"] == f"pod {ns}/{pod} container vllm"
        # the log came through the API server's pods/log, bounded as configured
        asked = [r for r in standin.requests if r["path"] == f"/containerLogs/{ns}/{pod}/vllm"]
        assert asked and asked[0]["query"].get("tailLines") == "5000", standin.requests

        def event() -> Optional[str]:
            reasons = {e["reason"] for e in events_for(kubectl, ns, "Deployment", "llama")}
            return None if reasons & {"PredictionConfirmed", "PredictionDrift"} else f"events: {reasons}"
        poll("the prediction Event on the Deployment", event, timeout=30)
        ev = next(e for e in events_for(kubectl, ns, "Deployment", "llama")
                  if e["reason"] in ("PredictionConfirmed", "PredictionDrift"))
        assert "measured 58.11 GiB" in ev["message"], ev["message"]
        assert (ev["type"] == "Normal") == (ev["reason"] == "PredictionConfirmed")

        # 2. Calibration: the overheads are stored, and the same launch is now planned with them.
        def stored() -> Optional[str]:
            cm = kubectl.get("configmap", "vllm-fit-calibration", local_webhook.namespace)
            text = ((cm or {}).get("data") or {}).get("calibration.yaml", "")
            return None if "meta-llama/Llama-3.1-8B-Instruct" in text else "no calibration entry yet"
        poll("the calibration ConfigMap", stored, timeout=30)
        entry = yaml.safe_load(kubectl.get("configmap", "vllm-fit-calibration",
                                           local_webhook.namespace)["data"]["calibration.yaml"])["measured"][0]
        assert entry["activation_gib"] == 1.89 and entry["non_torch_gib"] == 0.25, entry
        assert f"measured in this cluster: pod {ns}/{pod} container vllm" in entry["source"], entry
        second = placed(deployment("llama-second", node), ns)
        dry = kubectl.apply(second, "--dry-run=server", "-o", "yaml")
        assert dry.ok, str(dry)
        second_annotations = yaml.safe_load(dry.stdout)["metadata"]["annotations"]
        assert second_annotations["vllm-fit.io/overheads"] == f"measured in this cluster (pod {ns}/{pod} container vllm)"
        # planned with what was measured: the prediction now lands on the measured KV cache
        assert float(second_annotations["vllm-fit.io/kv-cache-gib"]) == pytest.approx(58.11, abs=0.6)

        # 3. A pod vllm-fit admitted that then failed with a memory error: AdmittedLaunchFailed.
        bare = placed({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "llama-failed",
                                                                       "labels": {"app": "llama-failed"}},
                       "spec": copy.deepcopy(pod_template(node)["spec"])}, ns)
        created = kubectl.apply(bare)
        assert created.ok, str(created)
        standin.logs[(ns, "llama-failed", "vllm", True)] = failed_log()
        set_container_status(kubectl, ns, "llama-failed", {
            "ready": False, "started": False, "restartCount": 1,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": now(), "finishedAt": now()}}})

        def failed_event() -> Optional[str]:
            reasons = {e["reason"] for e in events_for(kubectl, ns, "Pod", "llama-failed")}
            return None if "AdmittedLaunchFailed" in reasons else f"events: {reasons}"
        poll("AdmittedLaunchFailed on the failed pod", failed_event, timeout=60)
        ev = next(e for e in events_for(kubectl, ns, "Pod", "llama-failed") if e["reason"] == "AdmittedLaunchFailed")
        assert ev["type"] == "Warning" and "insufficient_free_memory" in ev["message"], ev
        assert any(r["query"].get("previous") == "true" for r in standin.requests
                   if r["path"].endswith("/llama-failed/vllm")), standin.requests
