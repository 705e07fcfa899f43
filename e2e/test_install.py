"""The chart's objects as the suite installs them, and the ServiceAccount's rights: what the server
needs (API discovery at start-up, the ConfigMaps launches take values from, the Nodes' GPUs) and
nothing more."""

from __future__ import annotations

import json

import pytest
import yaml

from e2e_support import FIELD_MANAGER, Kubectl

# What every authenticated user may do (system:basic-user, system:discovery, system:public-info-viewer).
SELF_REVIEWS = {"selfsubjectaccessreviews.authorization.k8s.io", "selfsubjectrulesreviews.authorization.k8s.io",
                "selfsubjectreviews.authentication.k8s.io"}

# What the default chart grants, each for a reason templates/rbac.yaml documents. A new permission
# must be added here on purpose: this list is the e2e check that the RBAC is no wider than that.
NEEDED = {
    "configmaps": {"get"},  # launches that take their model or flags from a ConfigMap (readConfigMaps)
    "nodes": {"get", "list", "watch"},  # the cluster's GPU inventory (labels, allocatable GPUs)
    # rbac.lookups (issue 13): a namespace's vllm-fit.io/allow-skip label, and the controller a
    # controller-owned object names (does it exist with that uid and that template?).
    **{resource: {"get"} for resource in (
        "namespaces", "pods", "replicationcontrollers", "deployments.apps", "replicasets.apps", "statefulsets.apps",
        "daemonsets.apps", "jobs.batch", "cronjobs.batch", "leaderworkersets.leaderworkerset.x-k8s.io",
        "inferenceservices.serving.kserve.io", "llminferenceservices.serving.kserve.io")},
}

# What a compromised or buggy webhook must not be able to do with its token.
FORBIDDEN = [
    ("list", "pods", "--all-namespaces"),
    ("get", "secrets", "--all-namespaces"),
    ("create", "events", None),
    ("patch", "validatingwebhookconfigurations", None),
    ("delete", "mutatingwebhookconfigurations", None),
    ("list", "namespaces", None),
    ("watch", "customresourcedefinitions", None),
    ("create", "leases.coordination.k8s.io", None),
    ("patch", "nodes", None),
    ("update", "configmaps", None),
    ("list", "configmaps", "--all-namespaces"),
    ("watch", "configmaps", "--all-namespaces"),
]


@pytest.fixture(scope="module")
def as_service_account(local_webhook, kubectl: Kubectl) -> Kubectl:
    return kubectl.as_user(str(local_webhook.server.kubeconfig))


def test_chart_objects_are_server_side_applied_with_url_client_configs(local_webhook, kubectl: Kubectl):
    hook = local_webhook
    kinds = {o["kind"] for o in hook.applied}
    assert {"ServiceAccount", "ConfigMap", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"} <= kinds
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        got = kubectl("get", kind, hook.fullname, "-o", "json", "--show-managed-fields")
        assert got.ok, str(got)
        live = got.json()
        managers = {m["manager"]: m["operation"] for m in live["metadata"]["managedFields"]}
        assert managers.get(FIELD_MANAGER) == "Apply", managers
        for entry in live["webhooks"]:
            assert entry["clientConfig"]["url"].startswith(hook.server.url + "/"), entry["clientConfig"]
            assert "service" not in entry["clientConfig"]
            assert entry["failurePolicy"] == "Ignore"  # the chart's default
    # The server runs with the configuration the cluster holds: the ConfigMap, exemptions included.
    config = hook.configmap_config()
    assert config == hook.server.config
    assert set(config["exempt_namespaces"]) == {"kube-system", hook.namespace}


def test_the_server_runs_as_the_chart_service_account(local_webhook, as_service_account: Kubectl):
    who = as_service_account("auth", "whoami", "-o", "json")
    assert who.ok, str(who)
    user = who.json()["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{local_webhook.namespace}:{local_webhook.service_account}"
    assert "system:serviceaccounts" in user["groups"]
    # It started (kopf's discovery scan as that user) and nothing it asked for was refused.
    assert local_webhook.server.ready() is None
    log = local_webhook.server.log_text()
    for refusal in ("Forbidden", "forbidden", "Unauthorized", "unauthorized"):
        assert refusal not in log, log


def test_the_service_account_may_do_discovery_and_what_it_needs_and_nothing_else(local_webhook, as_service_account: Kubectl):
    for namespace in (local_webhook.namespace, "kube-system"):
        # What `kubectl auth can-i --list` shows, as data: the rules the API server grants the token.
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
                  "spec": {"namespace": namespace}}
        rules = as_service_account("create", "--validate=false", "-f", "-", "-o", "json", input=json.dumps(review))
        assert rules.ok, str(rules)
        status = rules.json()["status"]
        assert not status.get("incomplete"), status
        granted: dict[str, set[str]] = {}
        for rule in status.get("resourceRules") or []:
            assert not rule.get("resourceNames"), rule
            for group in rule.get("apiGroups") or [""]:
                for resource in rule.get("resources") or []:
                    granted.setdefault(f"{resource}.{group}" if group else resource, set()).update(rule["verbs"])
        # The self-reviews every user has, and exactly what NEEDED says.
        assert set(granted) - SELF_REVIEWS == set(NEEDED), (namespace, sorted(set(granted) - SELF_REVIEWS))
        for resource, verbs in NEEDED.items():
            assert granted[resource] == verbs, (resource, granted[resource])
        urls = {url for rule in status.get("nonResourceRules") or [] for url in rule.get("nonResourceURLs") or []
                if "get" in rule.get("verbs", [])}
        assert {"/api", "/api/*", "/apis", "/apis/*"} <= urls, sorted(urls)  # kopf's discovery scan
    for namespace in ("kube-system", local_webhook.namespace, "default"):
        answer = as_service_account("auth", "can-i", "get", "configmaps", "-n", namespace)
        assert answer.stdout.strip() == "yes", f"get configmaps -n {namespace}: {answer}"
    for verb, resource, scope in FORBIDDEN:
        args = ["auth", "can-i", verb, resource] + ([scope] if scope else [])
        answer = as_service_account(*args)
        assert answer.stdout.strip() == "no", f"{' '.join(args)}: {answer.stdout.strip()} {answer.stderr.strip()}"


def test_binding_discovery_explicitly_adds_nothing_else(local_webhook, kubectl: Kubectl):
    """rbac.bindDiscovery=true (for clusters without the default discovery binding) binds
    system:discovery and only that."""
    rbac_kinds = ("ClusterRoleBinding", "RoleBinding", "ClusterRole", "Role")
    before = {json.dumps(o, sort_keys=True) for o in local_webhook.render() if o["kind"] in rbac_kinds}
    after = [o for o in local_webhook.render({"rbac": {"bindDiscovery": True}}) if o["kind"] in rbac_kinds]
    added = [o for o in after if json.dumps(o, sort_keys=True) not in before]
    assert [b["kind"] for b in added] == ["ClusterRoleBinding"], json.dumps(added)
    assert len(after) == len(before) + 1
    (binding,) = added
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "system:discovery"}
    # The API server accepts it as rendered (schema, references), without changing anything.
    result = kubectl.apply_server_side(binding, "--dry-run=server", "-o", "yaml")
    assert result.ok, str(result)
    assert yaml.safe_load(result.stdout)["subjects"] == [
        {"kind": "ServiceAccount", "name": local_webhook.service_account, "namespace": local_webhook.namespace}]


def test_serve_dev_registers_its_configurations_and_removes_them_on_exit(local_webhook, kubectl: Kubectl,
                                                                       make_namespace, tmp_path):
    """`vllm-fit serve --dev` (README: a cluster on this host): it registers vllm-fit-dev webhook
    configurations pointing at itself, they judge, and SIGTERM removes them."""
    import os
    import signal
    import subprocess
    import sys

    from e2e_support import REPO, free_port, is_denial, manifest, placed, poll

    namespace = make_namespace("dev")
    port, health = free_port(), free_port()
    env = {**os.environ, "KUBECONFIG": kubectl.kubeconfig or os.environ.get("KUBECONFIG", ""),
           "PYTHONUNBUFFERED": "1", "VLLM_FIT_HUB": "0", "VLLM_FIT_DEV_HOST": "127.0.0.1",
           "VLLM_FIT_CACHE_DIR": str(tmp_path / "cache"),
           "VLLM_FIT_EXEMPT_NAMESPACES": f"kube-system,{local_webhook.namespace}"}
    log = tmp_path / "dev.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "vllm_fit", "serve", "--dev", "--addr", "127.0.0.1",
                                    "--port", str(port), "--health-port", str(health)],
                                   stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    kinds = ("validatingwebhookconfiguration", "mutatingwebhookconfiguration")
    try:
        def registered() -> str | None:
            assert process.poll() is None, log.read_text()
            return None if all(kubectl.get(k, "vllm-fit-dev") for k in kinds) else "not registered yet"

        poll("serve --dev registering vllm-fit-dev", registered, timeout=90)
        for kind in kinds:
            hooks = kubectl.get(kind, "vllm-fit-dev")["webhooks"]
            assert all(h["clientConfig"]["url"].startswith(f"https://127.0.0.1:{port}/") for h in hooks), hooks
            assert {h["failurePolicy"] for h in hooks} == {"Ignore"}
        tp1 = placed(manifest("a-deploy-create.yaml"), namespace, "dev-tp1")

        def dev_denies() -> str | None:
            result = kubectl.apply(tp1, "--dry-run=server")
            return None if is_denial(result) and '"validate.vllm-fit.io"' in result.stderr else result.stderr

        # Stop the chart's server for a moment so that only the dev one can answer.
        local_webhook.server.stop()
        try:
            poll("the vllm-fit-dev webhook denying TP=1", dev_denies)
        finally:
            local_webhook.server.start()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            status = process.wait(timeout=10)
        left = [k for k in kinds if kubectl.get(k, "vllm-fit-dev") is not None]
        for kind in left:
            kubectl.delete(kind, "vllm-fit-dev")
    assert status == 0, log.read_text()
    assert not left, f"serve --dev left {left} behind"
    local_webhook.wait_effective()
