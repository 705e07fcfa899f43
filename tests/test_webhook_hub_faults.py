"""The running webhook with a faulty Hub behind it: every review answered within its deadline,
under the configured policy, and the failure memory stays bounded."""

from __future__ import annotations

import json
import time

import pytest

from hub_fake import FakeHub, bundled_config, single_file_model
from vllm_fit.hub import HubResolver, HubSettings
from vllm_fit.hub.errors import HubUnavailable
from webhook_harness import DiscoveryApi, Webhook, recorded

DEADLINE = 1.0
FAULTS = {"acme/hangs": "hang", "acme/errors": "500", "acme/needs-token": "401", "acme/drips": "slow"}


def review_for(model_id: str) -> dict:
    body = recorded("02")
    return json.loads(json.dumps(body).replace("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", model_id))


@pytest.fixture(scope="module")
def faulty_hub():
    hub = FakeHub(slow_seconds=3 * DEADLINE)
    llama = bundled_config("meta-llama--Llama-3.1-8B-Instruct")
    for model_id, fault in FAULTS.items():
        hub.add(single_file_model(model_id, llama))
        hub.faults[model_id] = fault
    hub.start()
    yield hub
    hub.stop()


def start_webhook(tmp_path, hub, policy):
    api = DiscoveryApi().start()
    config = {"mode": "enforce", "default_gpu": "H100-80GB", "deadline_seconds": DEADLINE,
              "unknown_model_policy": policy}
    env = {"HF_ENDPOINT": hub.url, "VLLM_FIT_HUB": "1", "VLLM_FIT_CACHE_DIR": str(tmp_path / "cache"),
           "VLLM_FIT_HUB_REQUEST_TIMEOUT": "5"}
    return api, Webhook(tmp_path / policy, api.kubeconfig(tmp_path / "kubeconfig"), config, env=env).start()


@pytest.mark.parametrize("policy", ["warn", "deny"])
def test_every_review_meets_its_deadline_under_the_policy(tmp_path, faulty_hub, policy):
    api, webhook = start_webhook(tmp_path, faulty_hub, policy)
    try:
        for model_id, fault in FAULTS.items():
            began = time.monotonic()
            status, data = webhook.post("/validate", review_for(model_id), timeout=10)
            elapsed = time.monotonic() - began
            assert status == 200, (fault, data)
            assert elapsed < DEADLINE + 1.0, (fault, elapsed)
            response = data["response"]
            if policy == "warn":
                assert response["allowed"] is True, (fault, response)
                assert any(model_id in w for w in response["warnings"]), (fault, response)
            else:
                assert response["allowed"] is False and response["status"]["code"] == 403, (fault, response)
                assert model_id in response["status"]["message"]
        assert webhook.health("/healthz")[0] == 200
    finally:
        webhook.stop()
        api.stop()


def test_failure_memory_is_bounded(tmp_path, faulty_hub):
    faulty_hub.fault_all = "500"
    try:
        resolver = HubResolver(HubSettings(endpoint=faulty_hub.url, cache_dir=tmp_path / "cache", memory_entries=16,
                                           request_timeout=5.0, timeout=10.0, max_inflight=4))
        for i in range(64):
            with pytest.raises(HubUnavailable):
                resolver.resolve(f"bogus/model-{i}", timeout=10)
        assert resolver.wait_idle(10)
        assert len(resolver._failures) <= 16
        assert len(resolver._inflight) == 0
    finally:
        faulty_hub.fault_all = None
