"""What a user sees in kubectl with the webhook installed (E2E_MODE=local: `serve --dev`; helm: the chart).

The manifests are the recorded ones (tests/fixtures/admission/manifests), placed in this run's
namespaces. Their pods never start (no GPUs, nodeSelector on H100): only admission matters.
"""

from __future__ import annotations

import pytest

from e2e_support import Cluster, Kubectl, Namespaces, is_denial, manifest, placed, vllm_annotations

TP1 = "a-deploy-create.yaml"  # Llama-3.3-70B-FP8, TP=1, 1 GPU: no KV cache memory
TP2 = "b-deploy-update-tp2.yaml"  # the same at TP=2 with 2 GPUs: fits
NGINX = "h-nginx-negative.yaml"

EXPECTED_KEYS = {"verdict", "kv-cache-gib", "kv-cache-tokens", "max-concurrency", "weights-gib", "gpu", "profile"}

pytestmark = pytest.mark.usefixtures("webhook")


def assert_denied_with_the_numbers(result) -> None:
    assert is_denial(result), str(result)
    assert "-1.44 GiB" in result.stderr, result.stderr
    assert "TP=2 gives" in result.stderr, result.stderr


def warnings_of(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Warning:") and "vllm-fit" in line]


def test_tp1_is_denied_with_the_numbers_and_the_fix(kubectl: Kubectl, namespaces: Namespaces):
    obj = placed(manifest(TP1), namespaces.enforce, "llama70b-fp8-tp1")
    result = kubectl.apply(obj)
    assert_denied_with_the_numbers(result)
    assert kubectl.get("deployment", "llama70b-fp8-tp1", namespaces.enforce) is None


def test_tp2_with_two_gpus_is_created_and_annotated(kubectl: Kubectl, namespaces: Namespaces):
    obj = placed(manifest(TP2), namespaces.enforce, "llama70b-fp8-tp2")
    result = kubectl.apply(obj)
    assert result.ok, str(result)
    assert not warnings_of(result), result.stderr
    created = kubectl.get("deployment", "llama70b-fp8-tp2", namespaces.enforce)
    assert created is not None
    annotations = vllm_annotations(created)
    assert {k.removeprefix("vllm-fit.io/") for k in annotations} >= EXPECTED_KEYS, annotations
    assert annotations["vllm-fit.io/verdict"] == "fits"
    assert annotations["vllm-fit.io/gpu"] == "H100-80GB"
    assert float(annotations["vllm-fit.io/kv-cache-gib"]) == pytest.approx(31.99, abs=0.05)
    # The workload's own metadata only: annotating the pod template would roll out every pod.
    assert not vllm_annotations(created["spec"]["template"]), created["spec"]["template"]["metadata"]
    # Re-applying the same manifest is admitted and leaves the annotations as they were.
    again = kubectl.apply(obj)
    assert again.ok, str(again)
    assert vllm_annotations(kubectl.get("deployment", "llama70b-fp8-tp2", namespaces.enforce)) == annotations


def test_changing_a_fitting_deployment_to_tp1_is_denied(kubectl: Kubectl, namespaces: Namespaces):
    name = "llama70b-update"
    created = kubectl.apply(placed(manifest(TP2), namespaces.enforce, name))
    assert created.ok, str(created)
    result = kubectl.apply(placed(manifest(TP1), namespaces.enforce, name))
    assert_denied_with_the_numbers(result)
    current = kubectl.get("deployment", name, namespaces.enforce)
    assert current is not None and vllm_annotations(current)["vllm-fit.io/verdict"] == "fits"


def test_server_dry_run_denies_tp1_the_same(kubectl: Kubectl, namespaces: Namespaces):
    obj = placed(manifest(TP1), namespaces.enforce, "llama70b-dry-tp1")
    result = kubectl.apply(obj, "--dry-run=server")
    assert_denied_with_the_numbers(result)
    assert kubectl.get("deployment", "llama70b-dry-tp1", namespaces.enforce) is None


def test_server_dry_run_admits_and_annotates_tp2_without_creating_it(kubectl: Kubectl, namespaces: Namespaces):
    obj = placed(manifest(TP2), namespaces.enforce, "llama70b-dry-tp2")
    result = kubectl.apply(obj, "--dry-run=server", "-o", "json")
    assert result.ok, str(result)
    annotations = vllm_annotations(result.json())
    assert {k.removeprefix("vllm-fit.io/") for k in annotations} >= EXPECTED_KEYS, annotations
    assert annotations["vllm-fit.io/verdict"] == "fits"
    assert kubectl.get("deployment", "llama70b-dry-tp2", namespaces.enforce) is None


def test_warn_mode_prints_warnings_and_admits(kubectl: Kubectl, namespaces: Namespaces):
    obj = placed(manifest(TP1), namespaces.warn, "llama70b-fp8-tp1")
    dry = kubectl.apply(obj, "--dry-run=server")
    assert dry.ok, str(dry)
    assert warnings_of(dry), dry.stderr
    result = kubectl.apply(obj)
    assert result.ok, str(result)
    warnings = warnings_of(result)
    assert warnings and any("-1.44 GiB" in w for w in warnings), result.stderr
    created = kubectl.get("deployment", "llama70b-fp8-tp1", namespaces.warn)
    assert created is not None
    assert vllm_annotations(created)["vllm-fit.io/verdict"] == "reject"


def test_audit_mode_admits_silently_and_annotates(kubectl: Kubectl, namespaces: Namespaces):
    obj = placed(manifest(TP1), namespaces.audit, "llama70b-fp8-tp1")
    result = kubectl.apply(obj)
    assert result.ok, str(result)
    assert not warnings_of(result), result.stderr
    created = kubectl.get("deployment", "llama70b-fp8-tp1", namespaces.audit)
    assert created is not None
    assert vllm_annotations(created)["vllm-fit.io/verdict"] == "reject"


def test_a_non_vllm_deployment_is_untouched(kubectl: Kubectl, namespaces: Namespaces):
    result = kubectl.apply(placed(manifest(NGINX), namespaces.enforce))
    assert result.ok, str(result)
    assert not warnings_of(result), result.stderr
    created = kubectl.get("deployment", "nginx", namespaces.enforce)
    assert created is not None
    assert not vllm_annotations(created), created["metadata"].get("annotations")


@pytest.mark.parametrize("where", ["kube-system", "webhook-namespace"])
def test_system_and_webhook_namespaces_are_never_blocked(kubectl: Kubectl, namespaces: Namespaces,
                                                         cluster: Cluster, where: str):
    namespace = "kube-system" if where == "kube-system" else namespaces.own
    name = f"vllm-fit-e2e-{cluster.run_id}-tp1"
    try:
        result = kubectl.apply(placed(manifest(TP1), namespace, name))
        assert result.ok, str(result)
        assert not warnings_of(result), result.stderr
        created = kubectl.get("deployment", name, namespace)
        assert created is not None and not vllm_annotations(created), created and created["metadata"]
    finally:
        kubectl("delete", "deployment", name, "-n", namespace, "--ignore-not-found", "--wait=false")


def test_values_from_a_configmap_are_read_with_the_charts_rbac(kubectl: Kubectl, namespaces: Namespaces):
    """The webhook GETs the ConfigMap the launch reads (issue 16) as the chart's ServiceAccount: the
    same TP=1 launch with its model and TP in a ConfigMap is denied with the same numbers."""
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "llama-serving", "namespace": namespaces.enforce},
                 "data": {"MODEL": "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", "TP": "1"}}
    assert kubectl.apply(configmap).ok
    obj = placed(manifest(TP1), namespaces.enforce, "llama70b-from-configmap")
    container = obj["spec"]["template"]["spec"]["containers"][0]
    container["args"] = ["$(MODEL)", "--tensor-parallel-size=$(TP)"] + container["args"][2:]
    container["envFrom"] = [{"configMapRef": {"name": "llama-serving"}}]
    result = kubectl.apply(obj)
    assert_denied_with_the_numbers(result)
    assert kubectl.get("deployment", "llama70b-from-configmap", namespaces.enforce) is None
