"""Issue 13 item 8: the opt-in audit finds existing workloads enforce mode would deny now.

The real server with `audit_existing: true` against a stateful kmock API that already holds a
bad Deployment (admitted while the webhook was down) and a good one: kopf lists and watches
them, the bad one gets the `vllm-fit.io/audit` annotation, a Warning Event and the gauge; the
good one is left alone; nothing is deleted.
"""

from __future__ import annotations

import time
import uuid

import pytest

from test_webhook_bypass import MODEL, pod_spec, workload
from webhook_harness import DiscoveryApi, Webhook

NS = "team-audit"


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    api = DiscoveryApi(stateful=True).start()
    bad = workload("Deployment", name="bad", namespace=NS)
    good = workload("Deployment", name="good", namespace=NS, spec=pod_spec(args=["Qwen/Qwen3-0.6B"]))
    for obj in (bad, good):
        api.create(obj)
    workdir = tmp_path_factory.mktemp("audit")
    hook = Webhook(workdir, api.kubeconfig(workdir / "kubeconfig"),
                   {"mode": "enforce", "deadline_seconds": 2.0, "audit_existing": True}).start()
    yield api, hook
    hook.stop()
    api.stop()


def _wait_for(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    return check()


def test_a_workload_enforce_mode_would_deny_is_marked_never_deleted(audited):
    api, hook = audited
    path = f"/apis/apps/v1/namespaces/{NS}/deployments"
    annotation = _wait_for(lambda: (api.get(f"{path}/bad")["metadata"].get("annotations") or {}).get("vllm-fit.io/audit"))
    assert annotation and MODEL.split("/")[1] in annotation and "TP=1" in annotation, hook.log_path.read_text()[-2000:]
    assert "vllm-fit.io/audit" not in (api.get(f"{path}/good")["metadata"].get("annotations") or {})
    assert {d["metadata"]["name"] for d in api.get(path)["items"]} == {"bad", "good"}  # nothing deleted
    events = _wait_for(lambda: [e for e in api.get(f"/api/v1/namespaces/{NS}/events")["items"]
                                if e.get("reason") == "VllmFitWouldDeny"])
    assert events and events[0]["type"] == "Warning" and events[0]["involvedObject"]["name"] == "bad"
    metrics = hook.health("/metrics")[1]
    assert 'vllm_fit_audit_would_deny{kind="Deployment"} 1.0' in metrics


def test_a_fixed_workload_loses_the_mark(audited):
    api, hook = audited
    fixed = workload("Deployment", name="fixed", namespace=NS, uid=str(uuid.uuid4()),
                     annotations={"vllm-fit.io/audit": "vllm-fit: an old denial"},
                     spec=pod_spec(args=["Qwen/Qwen3-0.6B"]))
    api.create(fixed)
    path = f"/apis/apps/v1/namespaces/{NS}/deployments/fixed"
    assert _wait_for(lambda: "vllm-fit.io/audit" not in (api.get(path)["metadata"].get("annotations") or {}))
