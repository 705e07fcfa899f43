"""LeaderWorkerSet and KServe objects, with the CRDs those projects publish (tests/fixtures/e2e/SOURCE.md:
LWS v0.10.0, KServe v0.20.0). KServe's are in the cluster before vllm-fit; LWS's is installed while
the webhook runs, as when a platform team adds LWS to a cluster that has vllm-fit already."""

from __future__ import annotations

import json
import time
from typing import Any, Iterator, Optional

import pytest

from e2e_support import (LATE_CRDS, PREINSTALLED_CRDS, Kubectl, Namespaces, e2e_fixture, e2e_fixture_text,
                         is_denial, manifest, placed, poll, vllm_annotations, warnings_of)

CRDS = {**PREINSTALLED_CRDS, **LATE_CRDS}
WORKLOADS = {o["kind"]: o for o in e2e_fixture("workloads-lws-kserve.yaml")}


def _install(kubectl: Kubectl, files: list[str]) -> None:
    """`kubectl create` (they are megabytes: too big for `kubectl apply`'s last-applied annotation)."""
    if files:
        result = kubectl("create", "-f", "-", input="\n---\n".join(e2e_fixture_text(f) for f in files), timeout=240)
        assert result.ok, str(result)


@pytest.fixture(scope="module")
def crds(kubectl: Kubectl, webhook: Any) -> Iterator[float]:
    """KServe's CRDs (created with the cluster when the suite starts one, else now) and, while the
    webhook runs, LWS's; yields the time LWS's was established (0 if it was there already). CRDs
    that were there before stay."""
    present = {name for name in CRDS.values() if kubectl.get("crd", name) is not None}
    _install(kubectl, [f for f, name in PREINSTALLED_CRDS.items() if name not in present])
    late = [f for f, name in LATE_CRDS.items() if name not in present]
    _install(kubectl, late)

    def established() -> Optional[str]:
        waiting = []
        for name in CRDS.values():
            crd = kubectl.get("crd", name) or {}
            conditions = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
            if conditions.get("Established") != "True":
                waiting.append(name)
        return f"not established: {waiting}" if waiting else None

    poll("the CRDs to be established", established, timeout=120)
    # Discovery lists the new APIs a moment after Established.
    poll("the new APIs in discovery", lambda: None if all(
        kubectl("api-resources", f"--api-group={group}", "-o", "name").stdout.strip()
        for group in ("leaderworkerset.x-k8s.io", "serving.kserve.io")) else "not yet")
    yield time.monotonic() if late else 0.0
    for name in set(CRDS.values()) - present:
        kubectl.delete("crd", name)  # (without waiting: the namespaces' objects go with them)


@pytest.fixture(scope="module")
def crds_known(crds: float, webhook: Any, kubectl: Kubectl) -> None:
    """The webhook restarted since the CRDs came (it learns resources from discovery at start-up)."""
    server = getattr(webhook, "server", None)
    if server is not None:
        if server.started_at < crds:
            webhook.restart()
            webhook.wait_effective()
        return
    restarted = kubectl("rollout", "restart", "deployment", "-n", webhook.namespace)
    assert restarted.ok, str(restarted)
    done = kubectl("rollout", "status", "deployment", "-n", webhook.namespace, "--timeout=180s", timeout=190)
    assert done.ok, str(done)


def fixed(obj: dict[str, Any]) -> dict[str, Any]:
    """The TP=2 fix of a TP=1 workload: the flag and the GPUs it requests."""
    text = json.dumps(obj)
    for before, after in (('"--tensor-parallel-size", "1"', '"--tensor-parallel-size", "2"'),
                          ("--tensor-parallel-size=1", "--tensor-parallel-size=2"),
                          ('"nvidia.com/gpu": "1"', '"nvidia.com/gpu": "2"')):
        text = text.replace(before, after)
    out = json.loads(text)
    out["metadata"]["name"] = out["metadata"]["name"].replace("tp1", "tp2")
    return out


def test_a_crd_installed_after_the_webhook_started_is_admitted_with_a_warning_until_it_restarts(
        local_webhook, crds: float, kubectl: Kubectl, namespaces: Namespaces):
    if not crds:
        pytest.skip("the LeaderWorkerSet CRD was in the cluster before the suite started")
    assert local_webhook.server.started_at < crds
    lws = placed(WORKLOADS["LeaderWorkerSet"], namespaces.enforce)
    result = kubectl.apply(lws, "--dry-run=server")
    # Never blocked for that (the API server did call: the chart's rules name LWS already) ...
    assert result.ok, str(result)
    assert any("appeared after the webhook started" in w for w in warnings_of(result)), result.stderr
    # ... and judged once the server has restarted.
    local_webhook.restart()
    local_webhook.wait_effective()
    assert is_denial(kubectl.apply(lws, "--dry-run=server"))


@pytest.mark.usefixtures("crds_known")
@pytest.mark.parametrize("kind, verdict", [
    ("LeaderWorkerSet", "fits"), ("LLMInferenceService", "fits"),
    # KServe's Hugging Face runtime image states no vLLM version: admitted with a warning saying so.
    ("InferenceService", "warn"),
])
def test_tp1_is_denied_and_tp2_admitted_and_annotated(kubectl: Kubectl, namespaces: Namespaces, kind: str,
                                                      verdict: str):
    tp1 = placed(WORKLOADS[kind], namespaces.enforce)
    result = kubectl.apply(tp1)
    assert is_denial(result), str(result)
    assert "TP=2 gives" in result.stderr, result.stderr
    assert kubectl.get(kind.lower(), tp1["metadata"]["name"], namespaces.enforce) is None
    tp2 = fixed(tp1)
    result = kubectl.apply(tp2)
    assert result.ok, str(result)
    created = kubectl.get(kind.lower(), tp2["metadata"]["name"], namespaces.enforce)
    assert created is not None
    annotations = vllm_annotations(created)
    assert annotations["vllm-fit.io/verdict"] == verdict, annotations
    assert annotations["vllm-fit.io/gpu"] == "H100-80GB", annotations


@pytest.mark.usefixtures("crds_known")
def test_llminferenceservice_v1alpha2_is_judged_too(kubectl: Kubectl, namespaces: Namespaces):
    obj = placed(WORKLOADS["LLMInferenceService"], namespaces.enforce, "llama70b-fp8-v1alpha2-tp1")
    obj["apiVersion"] = "serving.kserve.io/v1alpha2"
    assert is_denial(kubectl.apply(obj, "--dry-run=server"))


@pytest.mark.usefixtures("crds_known")
def test_deepseek_r1_seed_fix_two_node_leaderworkerset_is_admitted(kubectl: Kubectl, namespaces: Namespaces):
    """The seed's DeepSeek-R1 failure (TP=1: the weights exceed the GPU, see test_admission.py) is
    fixed as the denial says: TP=8 x PP=2 over 2 nodes, the recorded LeaderWorkerSet."""
    lws = placed(manifest("j-lws.yaml"), namespaces.enforce, "deepseek-r1-tp8-pp2")
    lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["nodeSelector"] = {
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    result = kubectl.apply(lws)
    assert result.ok, str(result)
    annotations = vllm_annotations(kubectl.get("leaderworkerset", "deepseek-r1-tp8-pp2", namespaces.enforce))
    assert annotations["vllm-fit.io/verdict"] in ("fits", "warn"), annotations


@pytest.mark.usefixtures("crds_known")
def test_leaderworkerset_scale_subresource_is_not_judged(kubectl: Kubectl, namespaces: Namespaces):
    obj = fixed(placed(WORKLOADS["LeaderWorkerSet"], namespaces.enforce))
    obj["metadata"]["name"] = "lws-scale-tp2"
    assert kubectl.apply(obj).ok
    before = vllm_annotations(kubectl.get("leaderworkerset", "lws-scale-tp2", namespaces.enforce))
    for replicas in (3, 0):
        result = kubectl("scale", "leaderworkerset", "lws-scale-tp2", "-n", namespaces.enforce,
                         f"--replicas={replicas}")
        assert result.ok, str(result)
        current = kubectl.get("leaderworkerset", "lws-scale-tp2", namespaces.enforce)
        assert current["spec"]["replicas"] == replicas
        assert vllm_annotations(current) == before
