"""Issue 13: a namespace admin cannot get the seed's bad launch past the webhook in enforce mode.

The "user" is a ServiceAccount bound to the built-in `admin` ClusterRole in one namespace only
(a RoleBinding), with a `kubectl create token` kubeconfig: what a team that owns a namespace
has. The launch is the seed's: Llama-3.3-70B-FP8 at TP=1 on one H100 (no KV cache memory).
Each test is one of the ways it was admitted before; each is now denied, or yields no Pod.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from e2e_support import Kubectl, is_denial, poll, token_kubeconfig

MODEL = "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic"
H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
ARGS = [MODEL, "--tensor-parallel-size=1", "--max-model-len=16000"]

pytestmark = pytest.mark.usefixtures("webhook")


def container(image: str = "vllm/vllm-openai:v0.11.0", command: Any = ("vllm", "serve"), args: Any = ARGS,
              name: str = "vllm") -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": image, "args": list(args),
                         "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    if command is not None:
        c["command"] = list(command)
    return c


def pod(namespace: str, name: str, annotations: dict[str, str] | None = None, owner: dict[str, Any] | None = None,
        spec: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    if owner:
        meta["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": spec or {"containers": [container()], "nodeSelector": dict(H100)}}


@pytest.fixture(scope="module")
def team(kubectl: Kubectl, namespaces: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Kubectl]]:
    """(namespace, kubectl as a ServiceAccount bound to `admin` there and nowhere else). The
    namespace is the suite's enforce namespace: its mode label comes from the cluster admin."""
    namespace = namespaces.enforce
    name = f"team-admin-{uuid.uuid4().hex[:6]}"
    objs = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": name, "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
    ]
    for obj in objs:
        result = kubectl.apply(obj)
        assert result.ok, str(result)
    path = token_kubeconfig(kubectl, namespace, name, tmp_path_factory.mktemp("team") / "kubeconfig")
    user = kubectl.as_user(str(path))
    poll("the namespace admin's RoleBinding to take effect",
         lambda: None if user("auth", "can-i", "create", "pods", "-n", namespace).stdout.strip() == "yes" else "no")
    yield namespace, user
    for obj in reversed(objs):
        kubectl.delete(obj["kind"].lower(), obj["metadata"]["name"], namespace)


def denied(result: Any, *fragments: str) -> None:
    assert is_denial(result), str(result)
    assert "(Forbidden)" in result.stderr, result.stderr  # status.reason: Forbidden
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def no_pod(kubectl: Kubectl, namespace: str, name: str) -> None:
    assert kubectl.get("pod", name, namespace) is None, f"pod {namespace}/{name} exists"


def test_the_user_is_a_namespace_admin_and_nothing_more(team: tuple[str, Kubectl]):
    namespace, user = team
    assert user("auth", "can-i", "create", "rolebindings", "-n", namespace).stdout.strip() == "yes"
    assert user("auth", "can-i", "create", "pods", "-n", "default").stdout.strip() == "no"
    # ... who cannot opt the namespace out: labels on namespaces need cluster RBAC.
    relabel = user("label", "namespace", namespace, "vllm-fit.io/allow-skip=true")
    assert not relabel.ok and "forbidden" in relabel.stderr.lower(), str(relabel)


# 1. the skip annotation
def test_skip_annotation_is_not_an_opt_out_in_enforce_mode(team: tuple[str, Kubectl], kubectl: Kubectl):
    namespace, user = team
    result = user.apply(pod(namespace, "bypass-skip", {"vllm-fit.io/skip": "true"}))
    denied(result, "TP=2 gives")
    no_pod(kubectl, namespace, "bypass-skip")


# 2. model-id
@pytest.mark.parametrize("model_id", ["Qwen/Qwen3-0.6B", "q" * 300])
def test_model_id_annotation_cannot_replace_the_model_in_the_args(team: tuple[str, Kubectl], kubectl: Kubectl,
                                                                  model_id: str):
    namespace, user = team
    name = f"bypass-model-id-{len(model_id)}"
    result = user.apply(pod(namespace, name, {"vllm-fit.io/model-id": model_id}))
    denied(result, "TP=2 gives")
    assert "not judged" not in result.stderr and "internal error" not in result.stderr
    no_pod(kubectl, namespace, name)


# 3. gpu
@pytest.mark.parametrize("gpu", ["B200", "1000GiB"])
def test_gpu_annotation_cannot_contradict_the_node_selector(team: tuple[str, Kubectl], kubectl: Kubectl, gpu: str):
    namespace, user = team
    name = f"bypass-gpu-{gpu.lower()}"
    denied(user.apply(pod(namespace, name, {"vllm-fit.io/gpu": gpu})), "H100")
    no_pod(kubectl, namespace, name)


# 4. ownerReferences to the user's own object
def test_a_configmap_as_controller_does_not_make_a_pod_controller_owned(team: tuple[str, Kubectl],
                                                                        kubectl: Kubectl):
    namespace, user = team
    made = user("create", "configmap", "fake-owner", "-n", namespace, "-o", "json")
    assert made.ok, str(made)
    cm = made.json()
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "fake-owner", "uid": cm["metadata"]["uid"],
             "controller": True}
    denied(user.apply(pod(namespace, "bypass-owner", owner=owner)), "TP=2 gives")
    no_pod(kubectl, namespace, "bypass-owner")
    ghost = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "ghost", "uid": str(uuid.uuid4()),
             "controller": True}
    denied(user.apply(pod(namespace, "bypass-ghost-owner", owner=ghost)), "TP=2 gives")
    no_pod(kubectl, namespace, "bypass-ghost-owner")


# 5. ReplicationController, kubectl debug
def test_a_replication_controller_is_judged_and_yields_no_pod(team: tuple[str, Kubectl], kubectl: Kubectl):
    namespace, user = team
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "bypass-rc", "namespace": namespace},
          "spec": {"replicas": 1, "selector": {"app": "bypass-rc"},
                   "template": {"metadata": {"labels": {"app": "bypass-rc"}},
                                "spec": {"containers": [container()], "nodeSelector": dict(H100)}}}}
    denied(user.apply(rc), "TP=2 gives")
    assert kubectl.get("replicationcontroller", "bypass-rc", namespace) is None
    assert not kubectl.items("pods", namespace, "app=bypass-rc")


def test_vllm_in_a_kubectl_debug_container_is_denied(team: tuple[str, Kubectl], kubectl: Kubectl):
    namespace, user = team
    target = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug-target", "namespace": namespace},
              "spec": {"containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"]}],
                       "nodeSelector": dict(H100)}}
    assert user.apply(target).ok
    # Kubernetes 1.36's `admin` role does not grant pods/ephemeralcontainers; where it is granted
    # (older clusters, custom roles) the webhook is what stops vLLM there. The cluster admin tries.
    debugger = user
    if user("auth", "can-i", "patch", "pods", "--subresource=ephemeralcontainers",
            "-n", namespace).stdout.strip() != "yes":
        debugger = kubectl
    try:
        result = debugger("debug", "debug-target", "-n", namespace, "--image=vllm/vllm-openai:v0.11.0",
                          "--container=dbg", "--", "vllm", "serve", MODEL)
        denied(result, "ephemeral container")
        running = kubectl.get("pod", "debug-target", namespace)
        assert not (running or {}).get("spec", {}).get("ephemeralContainers"), running
        # An ordinary debug shell is not vLLM and is left alone.
        shell = debugger("debug", "debug-target", "-n", namespace, "--image=busybox:1.36", "--container=sh", "--",
                     "sleep", "1")
        assert shell.ok, str(shell)
    finally:
        kubectl.delete("pod", "debug-target", namespace)


# 6. custom images
def test_custom_images_reach_the_webhook_and_extend_the_builtin_list(team: tuple[str, Kubectl], kubectl: Kubectl,
                                                                     local_webhook: Any):
    namespace, user = team
    # The image states no vLLM version: the launch is judged as the newest, so no --max-model-len
    # (the model's 131,072 tokens cannot fit one H100 at TP=1 in any version).
    custom = {"containers": [container(image="registry.corp/ml/llm-server:1.2", command=None, args=ARGS[:2])],
              "nodeSelector": dict(H100)}
    with local_webhook.reconfigured(values={"config": {"vllm_images": ["registry.corp/ml/llm-server"]}}):
        denied(user.apply(pod(namespace, "bypass-custom-image", spec=custom)), "TP=1")
        no_pod(kubectl, namespace, "bypass-custom-image")
        # vllm_images extends the built-in list: the official image still counts.
        builtin = {"containers": [container(command=None)], "nodeSelector": dict(H100)}
        denied(user.apply(pod(namespace, "bypass-builtin-image", spec=builtin)), "TP=2 gives")
        no_pod(kubectl, namespace, "bypass-builtin-image")


# 7. launches the reader cannot read
def test_an_opaque_launch_in_a_vllm_image_is_denied(team: tuple[str, Kubectl], kubectl: Kubectl):
    namespace, user = team
    spec = {"containers": [container(command=["bash", "-c"], args=['eval "$(echo dmxsbSBzZXJ2ZQ== | base64 -d)" $M'])],
            "nodeSelector": dict(H100)}
    denied(user.apply(pod(namespace, "bypass-opaque", spec=spec)), "cannot be checked")
    no_pod(kubectl, namespace, "bypass-opaque")
