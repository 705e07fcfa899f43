"""Every workload kind the webhook registers for, through the running server."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import pytest
import yaml

from vllm_fit.admission.handlers import RESOURCES
from webhook_harness import DiscoveryApi, Webhook, recorded

MANIFESTS = Path(__file__).parent / "fixtures" / "manifests"
PLURALS = {"DaemonSet": "daemonsets", "CronJob": "cronjobs", "Job": "jobs", "StatefulSet": "statefulsets",
           "ReplicaSet": "replicasets", "LeaderWorkerSet": "leaderworkersets", "InferenceService": "inferenceservices",
           "ClusterServingRuntime": "clusterservingruntimes", "LLMInferenceService": "llminferenceservices",
           "ServingRuntime": "servingruntimes", "Deployment": "deployments", "Pod": "pods"}


@pytest.fixture(scope="module")
def webhook(tmp_path_factory):
    api = DiscoveryApi().start()
    workdir = tmp_path_factory.mktemp("kinds")
    hook = Webhook(workdir, api.kubeconfig(workdir / "kubeconfig"),
                   {"mode": "enforce", "default_gpu": "H100-80GB"}, env={"VLLM_FIT_HUB": "0"}).start()
    yield hook
    hook.stop()
    api.stop()


def review_of(obj: dict) -> dict:
    kind = obj["kind"]
    group, _, version = obj["apiVersion"].rpartition("/")
    plural = PLURALS[kind]
    assert (group, version, plural) in RESOURCES or (group, plural) in {(g, p) for g, _, p in RESOURCES}, kind
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": str(uuid.uuid4()), "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": plural},
        "namespace": obj["metadata"].get("namespace", "llm"), "operation": "CREATE",
        "userInfo": {"username": "tester"}, "object": obj, "oldObject": None, "dryRun": False}}


def llama_tp1_template() -> dict:
    return copy.deepcopy(recorded("02")["request"]["object"]["spec"]["template"])


def test_daemonset_and_cronjob_are_judged(webhook):
    daemonset = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "ds", "namespace": "llm"},
                 "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": llama_tp1_template()}}
    cronjob = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj", "namespace": "llm"},
               "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": llama_tp1_template()}}}}
    for obj in (daemonset, cronjob):
        status, data = webhook.post("/validate", review_of(obj))
        assert status == 200
        assert data["response"]["allowed"] is False, obj["kind"]
        assert "-1.44 GiB" in data["response"]["status"]["message"]


@pytest.mark.parametrize("name", sorted(p.name for p in MANIFESTS.glob("*.yaml") if p.name != "expected.yaml"))
def test_corpus_manifests_get_an_answer_of_the_expected_kind(webhook, name):
    expected = yaml.safe_load((MANIFESTS / "expected.yaml").read_text())[name]
    for obj in yaml.safe_load_all((MANIFESTS / name).read_text()):
        if not isinstance(obj, dict) or obj.get("kind") not in PLURALS:
            continue
        obj.setdefault("metadata", {}).setdefault("namespace", "llm")
        status, data = webhook.post("/validate", review_of(obj))
        assert status == 200, (name, data)
        response = data["response"]
        mine = [e for e in expected if e["name"] == obj["metadata"].get("name") and e["kind"] == obj["kind"]]
        if not mine:  # not vLLM: admitted untouched
            assert response == {"uid": response["uid"], "allowed": True}, name
        else:
            assert isinstance(response["allowed"], bool)
            if response["allowed"]:
                for warning in response.get("warnings", []):
                    assert warning.startswith("vllm-fit") and len(warning) <= 120
            else:
                assert response["status"]["code"] == 403 and response["status"]["message"].startswith("vllm-fit: ")
