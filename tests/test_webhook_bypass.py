"""Issue 13: what a workload's author controls no longer decides whether it is judged.

The real server (`vllm-fit serve`, real TLS) against a stateful kmock API that holds the
namespaces and owners a review looks up. Each test is one way the seed's bad launch
(Llama-3.3-70B FP8 at TP=1 on one H100) was admitted before.
"""

from __future__ import annotations

import copy
import json
import uuid

import pytest

from webhook_harness import DiscoveryApi, Webhook

MODEL = "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic"
H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
CONFIG = {"mode": "enforce", "deadline_seconds": 2.0, "exempt_namespaces": ["kube-system"]}
NS, ADMIN_NS = "team-a", "team-trusted"


def container(args=None, image="vllm/vllm-openai:v0.11.0", command=("vllm", "serve"), name="vllm", gpus=1):
    c = {"name": name, "image": image, "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
    if command is not None:
        c["command"] = list(command)
    c["args"] = list(args if args is not None else [MODEL, "--tensor-parallel-size=1"])
    return c


def pod_spec(**kw):
    return {"containers": [container(**kw)], "nodeSelector": dict(H100)}


def pod(name="p", annotations=None, owner=None, spec=None, namespace=NS):
    meta = {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())}
    if annotations:
        meta["annotations"] = annotations
    if owner:
        meta["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec or pod_spec()}


def workload(kind, api_version="apps/v1", name="w", spec=None, annotations=None, owner=None, uid=None, namespace=NS):
    meta = {"name": name, "namespace": namespace, "uid": uid or str(uuid.uuid4())}
    if annotations:
        meta["annotations"] = annotations
    if owner:
        meta["ownerReferences"] = [owner]
    return {"apiVersion": api_version, "kind": kind, "metadata": meta,
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec or pod_spec()}}}


RESOURCE = {"Pod": ("", "v1", "pods"), "ReplicaSet": ("apps", "v1", "replicasets"),
            "Deployment": ("apps", "v1", "deployments"), "ReplicationController": ("", "v1", "replicationcontrollers"),
            "StatefulSet": ("apps", "v1", "statefulsets")}


def admission(obj, operation="CREATE", old=None, sub=None):
    group, version, plural = RESOURCE[obj["kind"]]
    request = {"uid": str(uuid.uuid4()), "kind": {"group": group, "version": version, "kind": obj["kind"]},
               "resource": {"group": group, "version": version, "resource": plural},
               "namespace": obj["metadata"].get("namespace"), "name": obj["metadata"].get("name"),
               "operation": operation, "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
               "object": obj, "oldObject": old, "dryRun": False}
    if sub:
        request["subResource"] = sub
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def owner_ref(obj):
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


@pytest.fixture(scope="module")
def api():
    api = DiscoveryApi(stateful=True, namespaces={NS: {"team": "a"}, ADMIN_NS: {"vllm-fit.io/allow-skip": "true"}})
    api.start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def webhook(api, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bypass")
    hook = Webhook(workdir, api.kubeconfig(workdir / "kubeconfig"),
                   {**CONFIG, "vllm_images": ["registry.corp/ml/llm-server"]}).start()
    yield hook
    hook.stop()


def review(webhook, obj, path="/validate", **kw):
    body = admission(obj, **kw)
    status, data = webhook.post(path, body)
    assert status == 200, data
    assert data["response"]["uid"] == body["request"]["uid"]
    return data["response"]


def assert_denied(response, *fragments):
    assert response["allowed"] is False, response
    assert response["status"]["code"] == 403 and response["status"]["reason"] == "Forbidden"
    for fragment in fragments:
        assert fragment in response["status"]["message"], response["status"]["message"]


def test_the_seed_launch_is_denied_with_reason_forbidden(webhook):
    assert_denied(review(webhook, pod()), "TP=2")


# ---------------------------------------------------------------- 1. opt-outs only admins control

def test_skip_annotation_is_not_honoured_in_enforce_mode(webhook):
    response = review(webhook, pod(annotations={"vllm-fit.io/skip": "true"}))
    assert_denied(response, "TP=2")
    assert any("vllm-fit.io/skip is not honoured here" in w for w in response["warnings"])
    assert '"honoured": false' in webhook.log_path.read_text()


def test_skip_annotation_counts_where_an_admin_labelled_the_namespace(webhook):
    response = review(webhook, pod(annotations={"vllm-fit.io/skip": "true"}, namespace=ADMIN_NS))
    assert response["allowed"] is True
    assert '"honoured": true' in webhook.log_path.read_text()
    assert 'vllm_fit_admission_skips_total{reason="annotation"} 1.0' in webhook.health("/metrics")[1]


def test_skip_annotation_still_silences_warn_mode(webhook):
    response = review(webhook, pod(annotations={"vllm-fit.io/skip": "true"}), path="/validate-warn")
    assert response["allowed"] is True and "warnings" not in response


def test_model_id_annotation_never_overrides_the_model_in_the_args(webhook):
    response = review(webhook, pod(annotations={"vllm-fit.io/model-id": "Qwen/Qwen3-0.6B"}))
    assert_denied(response, "TP=2")


def test_model_id_annotation_fills_in_a_local_path(webhook):
    spec = pod_spec(args=["/models/llama", "--tensor-parallel-size=1", "--max-model-len=8192"])
    assert_denied(review(webhook, pod(spec=spec, annotations={"vllm-fit.io/model-id": MODEL})), "TP=2")
    small = review(webhook, pod(spec=spec, annotations={"vllm-fit.io/model-id": "Qwen/Qwen3-0.6B"}))
    assert small["allowed"] is True


@pytest.mark.parametrize("model_id", ["a" * 300, "Qwen/Qwen3\ud800", "../../etc/passwd", "x/" * 200])
def test_malformed_model_ids_are_never_an_internal_error(webhook, model_id):
    spec = pod_spec(args=[model_id, "--tensor-parallel-size=1"])
    response = review(webhook, pod(spec=spec))
    assert "internal error" not in json.dumps(response) and "not judged" not in json.dumps(response)
    response = review(webhook, pod(annotations={"vllm-fit.io/model-id": model_id}))
    assert_denied(response, "TP=2")  # the malformed annotation is ignored; the args decide


@pytest.mark.parametrize("claimed", ["B200", "1000GiB"])
def test_gpu_annotation_never_overrides_the_node_selector(webhook, claimed):
    assert_denied(review(webhook, pod(annotations={"vllm-fit.io/gpu": claimed})), "H100")


# ---------------------------------------------------------------- 2. a real controller, or judged itself

def test_pod_owned_by_its_own_configmap_is_judged(webhook, api):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": NS, "uid": str(uuid.uuid4())}}
    api.create(cm)
    assert_denied(review(webhook, pod(owner=owner_ref(cm))), "TP=2")


def test_pod_naming_a_replicaset_that_does_not_exist_is_judged(webhook):
    ghost = workload("ReplicaSet", name="ghost")
    assert_denied(review(webhook, pod(owner=owner_ref(ghost))), "TP=2")


def test_pod_of_a_real_replicaset_is_skipped_but_not_with_another_uid_or_template(webhook, api):
    rs = workload("ReplicaSet", name="real")
    api.create(rs)
    response = review(webhook, pod(owner=owner_ref(rs), spec=copy.deepcopy(rs["spec"]["template"]["spec"])))
    assert response["allowed"] is True and "warnings" not in response
    other_uid = {**owner_ref(rs), "uid": str(uuid.uuid4())}
    assert_denied(review(webhook, pod(owner=other_uid)), "TP=2")
    # The user's own real ReplicaSet (judged and admitted: it runs a small model) cannot vouch for a
    # Pod whose launch is not its template's.
    good = workload("ReplicaSet", name="small", spec=pod_spec(args=["Qwen/Qwen3-0.6B"]))
    api.create(good)
    assert_denied(review(webhook, pod(owner=owner_ref(good))), "TP=2")


def test_replicaset_of_a_real_deployment_is_skipped(webhook, api):
    deployment = workload("Deployment", name="dep")
    api.create(deployment)
    rs = workload("ReplicaSet", name="dep-1", owner=owner_ref(deployment))
    response = review(webhook, rs)
    assert response["allowed"] is True and "warnings" not in response
    fake = workload("ReplicaSet", name="dep-2", owner={**owner_ref(deployment), "kind": "StatefulSet"})
    assert_denied(review(webhook, fake), "TP=2")


def test_replication_controller_is_judged(webhook):
    rc = workload("ReplicationController", api_version="v1", name="rc")
    rc["spec"]["selector"] = {"app": "rc"}
    assert_denied(review(webhook, rc), "TP=2")


def test_vllm_in_an_ephemeral_container_is_denied(webhook):
    running = pod(spec={"containers": [{"name": "app", "image": "busybox"}]})
    debugged = copy.deepcopy(running)
    debugged["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "vllm/vllm-openai:v0.11.0",
                                                "command": ["vllm", "serve", MODEL]}]
    assert_denied(review(webhook, debugged, operation="UPDATE", old=running, sub="ephemeralcontainers"),
                  "ephemeral container")
    shell = copy.deepcopy(running)
    shell["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "busybox", "command": ["sh"]}]
    assert review(webhook, shell, operation="UPDATE", old=running, sub="ephemeralcontainers")["allowed"] is True


# ---------------------------------------------------------------- 3. custom images, 4. unreadable launches

def test_custom_image_extends_the_builtin_list(webhook):
    custom = pod_spec(image="registry.corp/ml/llm-server:1.0", command=None)
    assert_denied(review(webhook, pod(spec=custom)), "TP=2")
    assert_denied(review(webhook, pod()), "TP=2")  # the built-in vllm/vllm-openai still counts


@pytest.mark.parametrize("command, why", [
    (["/scripts/start.sh"], "runs '/scripts/start.sh'"),
    (["bash", "-c", "eval \"$(echo dmxsbSBzZXJ2ZQ== | base64 -d)\" $MODEL"], "bash -c"),
    (["python3", "-c", "import runpy; runpy.run_module('vllm.entrypoints.cli.main')"], "python -c"),
])
def test_unreadable_launch_in_a_vllm_image_is_denied(webhook, command, why):
    spec = pod_spec(command=command, args=[])
    assert_denied(review(webhook, pod(spec=spec)), why, "cannot be checked")
    warned = review(webhook, pod(spec=spec), path="/validate-warn")
    assert warned["allowed"] is True and any("cannot be checked" in w for w in warned["warnings"])


def test_init_container_of_a_vllm_image_is_not_a_launch(webhook):
    spec = pod_spec()
    spec["initContainers"] = [{"name": "fetch", "image": "vllm/vllm-openai:v0.11.0",
                               "command": ["python3", "-c", "print('download')"]}]
    spec["containers"][0]["args"] = ["Qwen/Qwen3-0.6B"]
    assert review(webhook, pod(spec=spec))["allowed"] is True
