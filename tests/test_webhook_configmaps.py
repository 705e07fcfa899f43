"""The webhook reads the ConfigMaps a launch takes values from: a namespaced GET, cached,
deadline-bound, only for objects that need it; Secrets are never read (issue 16, item 2)."""

from __future__ import annotations

import asyncio
import copy
import time

import pytest

from vllm_fit.admission.configmaps import ConfigMapReader
from webhook_harness import DiscoveryApi, Webhook, deployment_review as review_of, recorded

LLAMA = "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic"


class FakeApi:
    def __init__(self, data: dict[tuple[str, str], dict], delay: float = 0.0, fail: bool = False) -> None:
        self.data, self.delay, self.fail = data, delay, fail
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, namespace: str, name: str, timeout: float):
        self.calls.append((namespace, name))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError("boom")
        return self.data.get((namespace, name))


def read(reader: ConfigMapReader, namespace, names, budget: float = 1.0):
    return asyncio.run(reader.read(namespace, names, time.monotonic() + budget))


def test_reads_are_cached_and_missing_ones_reported():
    api = FakeApi({("llm", "a"): {"K": "v"}})
    reader = ConfigMapReader(api, ttl_seconds=60)
    found, problems = read(reader, "llm", ["a", "a", "gone"])
    assert found.get("llm", "a") == {"K": "v"} and found.get("llm", "gone") is None
    assert problems == ["ConfigMap llm/gone does not exist; its values are unresolved"]
    read(reader, "llm", ["a", "gone"])
    assert api.calls == [("llm", "a"), ("llm", "gone")]  # the second review asked nobody


def test_reads_are_counted_by_outcome():
    from vllm_fit.admission.metrics import WebhookMetrics

    metrics = WebhookMetrics()
    reader = ConfigMapReader(FakeApi({("llm", "a"): {"K": "v"}}), metrics=metrics)
    read(reader, "llm", ["a", "gone"])
    read(reader, "llm", ["a"])
    value = lambda outcome: metrics.registry.get_sample_value("vllm_fit_configmap_reads_total",  # noqa: E731
                                                              {"outcome": outcome})
    assert (value("read"), value("missing"), value("cached")) == (1.0, 1.0, 1.0)


def test_cache_expires():
    api = FakeApi({("llm", "a"): {"K": "v"}})
    reader = ConfigMapReader(api, ttl_seconds=0.0)
    read(reader, "llm", ["a"])
    read(reader, "llm", ["a"])
    assert len(api.calls) == 2


def test_the_deadline_bounds_a_slow_api_and_errors_are_not_cached():
    slow = ConfigMapReader(FakeApi({("llm", "a"): {"K": "v"}}, delay=5.0))
    started = time.monotonic()
    found, problems = read(slow, "llm", ["a"], budget=0.2)
    assert time.monotonic() - started < 2.0
    assert len(found) == 0 and "not read within the deadline" in problems[0]
    failing = FakeApi({}, fail=True)
    reader = ConfigMapReader(failing)
    _, problems = read(reader, "llm", ["a"])
    assert "could not be read (boom)" in problems[0]
    read(reader, "llm", ["a"])
    assert len(failing.calls) == 2


def test_nothing_is_read_without_a_namespace_or_names():
    api = FakeApi({})
    reader = ConfigMapReader(api)
    assert len(read(reader, None, ["a"])[0]) == 0 and len(read(reader, "llm", [])[0]) == 0
    assert api.calls == []


# ---------------------------------------------------------------- the real server against an API

CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "llama-serving", "namespace": "llm"},
             "data": {"MODEL": LLAMA, "TP": "1"}}


def deployment(name: str, env_from: list, env: list | None = None) -> dict:
    template = copy.deepcopy(recorded("02")["request"]["object"]["spec"]["template"])
    container = template["spec"]["containers"][0]
    container.pop("command", None)
    container["image"] = "vllm/vllm-openai:v0.11.0"
    container["args"] = ["--model", "$(MODEL)", "--tensor-parallel-size", "$(TP)", "--max-model-len", "16000"]
    container["envFrom"] = env_from
    container["env"] = env or []
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "llm"},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": template}}


@pytest.fixture(scope="module")
def webhooks(tmp_path_factory):
    api = DiscoveryApi(configmaps=(CONFIGMAP,)).start()
    workdir = tmp_path_factory.mktemp("configmaps")
    kubeconfig = api.kubeconfig(workdir / "kubeconfig")
    reading = Webhook(workdir / "on", kubeconfig, {"mode": "enforce", "default_gpu": "H100-80GB"},
                      env={"VLLM_FIT_HUB": "0"}).start()
    blind = Webhook(workdir / "off", kubeconfig, {"mode": "enforce", "default_gpu": "H100-80GB",
                                                   "read_configmaps": False}, env={"VLLM_FIT_HUB": "0"}).start()
    yield reading, blind
    reading.stop()
    blind.stop()
    api.stop()


def test_configmap_values_decide_the_verdict(webhooks):
    reading, blind = webhooks
    obj = deployment("from-configmap", [{"configMapRef": {"name": "llama-serving"}}])
    status, data = reading.post("/validate", review_of(obj))
    assert status == 200 and data["response"]["allowed"] is False
    assert "-1.44 GiB" in data["response"]["status"]["message"]
    status, data = blind.post("/validate", review_of(obj))
    assert status == 200 and data["response"]["allowed"] is True
    assert any("unresolved" in w or "not knowable" in w for w in data["response"].get("warnings", []))


def test_configmap_key_ref_and_a_missing_configmap(webhooks):
    reading, _ = webhooks
    env = [{"name": "MODEL", "valueFrom": {"configMapKeyRef": {"name": "llama-serving", "key": "MODEL"}}},
           {"name": "TP", "valueFrom": {"configMapKeyRef": {"name": "llama-serving", "key": "TP"}}}]
    status, data = reading.post("/validate", review_of(deployment("key-ref", [], env)))
    assert data["response"]["allowed"] is False
    missing = deployment("missing", [{"configMapRef": {"name": "nope"}}])
    status, data = reading.post("/validate", review_of(missing))
    assert data["response"]["allowed"] is True
    assert any("ConfigMap llm/nope does not exist" in w for w in data["response"]["warnings"])


def test_secrets_are_never_read(webhooks):
    reading, _ = webhooks
    obj = deployment("from-secret", [{"secretRef": {"name": "llama-serving"}}])  # a Secret, even if named alike
    status, data = reading.post("/validate", review_of(obj))
    assert data["response"]["allowed"] is True
    assert any("not knowable" in w or "unresolved" in w for w in data["response"]["warnings"])


def test_a_kaito_workspace_reads_its_inference_config_through_the_api():
    from vllm_fit.admission.config import WebhookConfig
    from vllm_fit.admission.review import Reviewer
    from vllm_fit.hub.resolver import BundledResolver
    from vllm_fit.profiles import gpu_catalog, runtime_profiles

    config = "vllm:\n  tensor-parallel-size: 1\n  max-model-len: 16000\n"
    api = FakeApi({("kaito", "llama-params"): {"inference_config.yaml": config}})
    reviewer = Reviewer(WebhookConfig(), BundledResolver(), gpu_catalog(), runtime_profiles(),
                        configmaps=ConfigMapReader(api))
    workspace = {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
                 "metadata": {"name": "w", "namespace": "kaito", "annotations": {}},
                 "resource": {"instanceType": "Standard_ND96isr_H100_v5"},
                 "inference": {"preset": {"name": LLAMA}, "config": "llama-params"}}
    assert reviewer.needs_review(workspace, "{}")
    judgement = asyncio.run(reviewer.review(workspace))
    (result,) = judgement.launches
    assert api.calls == [("kaito", "llama-params")]
    assert (result.found.launch.tensor_parallel_size, result.found.launch.max_model_len) == (1, 16000)
    assert (result.found.gpus.count, result.gpu) == (8, "H100-80GB")
    # Planned with what the ConfigMap states (TP=1 on one of the 8 GPUs the SKU gives the pod).
    assert result.plan is not None and result.plan.per_gpu.weights_gib > 60
    assert judgement.verdict in ("warn", "reject")


def test_an_update_that_keeps_the_launch_is_not_blocked_when_values_come_from_a_configmap():
    """Scaling a Deployment whose (bad) launch reads a ConfigMap leaves the launch as it was: the
    old object is read with the same ConfigMaps, so the update is recognised as unchanged."""
    from vllm_fit.admission.config import WebhookConfig
    from vllm_fit.admission.review import Reviewer
    from vllm_fit.hub.resolver import BundledResolver
    from vllm_fit.profiles import gpu_catalog, runtime_profiles

    api = FakeApi({("llm", "llama-serving"): dict(CONFIGMAP["data"])})
    reviewer = Reviewer(WebhookConfig(default_gpu="H100-80GB"), BundledResolver(), gpu_catalog(),
                        runtime_profiles(), configmaps=ConfigMapReader(api))
    old = deployment("scaled", [{"configMapRef": {"name": "llama-serving"}}])
    assert asyncio.run(reviewer.review(old)).decision == "deny"
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 3
    judgement = asyncio.run(reviewer.review(new, old=old, operation="UPDATE"))
    assert judgement.decision == "allow" and judgement.verdict == "reject"
    assert any("unchanged" in w for w in judgement.warnings)
