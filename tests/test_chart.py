"""The Helm chart (charts/vllm-fit) and the container image, checked without a cluster.

`helm lint --strict` and `helm template` for the defaults and every ci/*-values.yaml; the
rendered manifests against the Kubernetes OpenAPI schemas (kubernetes-validate, offline); and
the rendered objects against the code that will run them: the webhook configurations against
`webhook_configurations()` and the handler ids kopf routes to, the ConfigMap through
`load_config`, the container args through `vllm-fit serve`'s own parser, the Hub environment
through `HubSettings.from_env`, the model-bundle volume through `BundledResolver`.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from vllm_fit.admission import handlers
from vllm_fit.admission.config import WebhookConfig, load_config
from vllm_fit.admission.webhooks import webhook_configurations

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "vllm-fit"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
VALUE_SETS = [None, *CI_VALUES]
IDS = ["default", *[p.name.removesuffix("-values.yaml") for p in CI_VALUES]]
RELEASE, NAMESPACE = "fit", "gpu-system"
CERT_MANAGER_KINDS = {"Issuer", "Certificate"}
# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ["1.28.0", "1.37.0"]

HELM = shutil.which("helm")
if HELM is None and os.environ.get("CI"):
    # In CI tests/run installs helm: a missing binary there is a broken install, never a skip.
    raise RuntimeError("helm is not on PATH in CI; tests/run should have installed it")
needs_helm = pytest.mark.skipif(HELM is None, reason="helm is not on PATH (tests/run installs it)")


def _helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def render(values: Path | None = None, sets: tuple[str, ...] = (), namespace: str = NAMESPACE) -> tuple[dict, ...]:
    """`helm template` output as objects (a fresh copy: tests may modify it)."""
    return copy.deepcopy(_render(values, sets, namespace))


@functools.lru_cache(maxsize=None)
def _render(values: Path | None, sets: tuple[str, ...], namespace: str) -> tuple[dict, ...]:
    args = ["template", RELEASE, str(CHART), "--namespace", namespace]
    if values is not None:
        args += ["-f", str(values)]
    for item in sets:
        args += ["--set", item]
    return tuple(doc for doc in yaml.safe_load_all(_helm(*args).stdout) if doc)


def only(docs: tuple[dict, ...], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def values_of(path: Path | None) -> dict:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    if path is None:
        return defaults

    def merge(base: dict, over: dict) -> dict:
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
        return out

    return merge(defaults, yaml.safe_load(path.read_text()))


def container(docs: tuple[dict, ...]) -> dict:
    (c,) = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def mounted_file(docs: tuple[dict, ...], path: str) -> tuple[dict, str]:
    """The pod volume a container path lives on, and the path inside that volume."""
    mounts = container(docs)["volumeMounts"]
    mount = max((m for m in mounts if path.startswith(m["mountPath"].rstrip("/") + "/")),
                key=lambda m: len(m["mountPath"]))
    volumes = {v["name"]: v for v in only(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    return volumes[mount["name"]], path[len(mount["mountPath"].rstrip("/")) + 1:]


def server_config(docs: tuple[dict, ...], tmp_path: Path) -> WebhookConfig:
    """What `vllm-fit serve` would load in the pod: the ConfigMap file plus the pod's VLLM_FIT_* env."""
    config_file = tmp_path / "config.yaml"
    config_file.write_text(only(docs, "ConfigMap")["data"]["config.yaml"])
    env = {e["name"]: e["value"] for e in container(docs).get("env", []) if "value" in e}
    return load_config(config_file, env=env)


# -- helm lint / template / Kubernetes schemas ---------------------------------------------------

@needs_helm
@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_helm_lint_strict(values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    if values is not None:
        args += ["-f", str(values)]
    result = _helm(*args)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@needs_helm
@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_rendered_manifests_match_kubernetes_schemas(values: Path | None) -> None:
    import kubernetes_validate

    docs = render(values)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration"} <= kinds
    for doc in docs:
        if doc["kind"] in CERT_MANAGER_KINDS:  # a CRD: no schema in kubernetes-validate
            assert doc["apiVersion"] == "cert-manager.io/v1"
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_schema_validation_is_strict_enough_to_catch_a_typo() -> None:
    """The check above would be empty if kubernetes-validate ignored unknown fields."""
    import kubernetes_validate
    from kubernetes_validate.utils import ValidationError

    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
               "spec": {"ports": [{"port": 443, "targetPrt": 9443}]}}
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(service, KUBE_VERSIONS[-1], strict=True)


# -- webhook configurations ------------------------------------------------------------------------

@needs_helm
@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_webhook_configurations_equal_the_python_definition(values: Path | None, tmp_path: Path) -> None:
    docs = render(values)
    vals = values_of(values)
    fullname = f"{RELEASE}-vllm-fit"
    # matchConditions come from the image list the server itself loads from the ConfigMap.
    image_patterns = server_config(docs, tmp_path).image_patterns

    def service(path: str) -> dict[str, Any]:
        return {"service": {"name": fullname, "namespace": NAMESPACE, "path": path, "port": 443}}

    expected = webhook_configurations(
        name=fullname, client_config=service,
        exempt_namespaces=["kube-system", NAMESPACE, *vals["webhook"]["exemptNamespaces"]],
        opt_out_label=vals["webhook"]["optOutLabel"], failure_policy=vals["webhook"]["failurePolicy"],
        timeout_seconds=vals["webhook"]["timeoutSeconds"], match_conditions=vals["webhook"]["matchConditions"],
        image_patterns=image_patterns)
    for want in expected:
        got = only(docs, want["kind"])
        assert got["metadata"]["name"] == want["metadata"]["name"]
        for hook in got["webhooks"]:
            hook["clientConfig"].pop("caBundle", None)
        assert got["webhooks"] == want["webhooks"]


@needs_helm
def test_custom_vllm_image_reaches_the_match_conditions_and_extends_the_builtin_list(tmp_path: Path) -> None:
    """Issue 11 item 4 / issue 13 item 3: an image in config.vllm_images is sent to the webhook."""
    docs = render(sets=("config.vllm_images={registry.corp/ml/llm-server,registry.corp/*/serve-*}",))
    config = server_config(docs, tmp_path)
    assert "registry.corp/ml/llm-server" in config.image_patterns
    assert "vllm/vllm-openai" in config.image_patterns  # extended, not replaced
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        for hook in only(docs, kind)["webhooks"]:
            (condition,) = [m["expression"] for m in hook["matchConditions"] if m["name"] == "looks-like-vllm"]
            assert "c.image.contains('registry.corp/ml/llm-server')" in condition
            assert "(c.image.contains('registry.corp/') && c.image.contains('/serve-'))" in condition
            assert "c.image.contains('vllm')" in condition
            assert "ephemeralContainers" in condition and "'ReplicationController'" in condition
            assert not [m for m in hook["matchConditions"] if m["name"] == "not-controller-owned"]
    replaced = render(sets=("config.builtin_vllm_images={corp/engine}",))
    assert server_config(replaced, tmp_path).image_patterns == ("corp/engine",)


@needs_helm
def test_rbac_grants_lookups_and_audit_only_when_on() -> None:
    def rules(docs: tuple[dict, ...]) -> dict[str, set[str]]:
        roles = [d for d in docs if d["kind"] == "ClusterRole"]
        return {f"{g}/{r}": set(rule["verbs"]) for role in roles for rule in role["rules"]
                for g in rule["apiGroups"] for r in rule["resources"]}

    default = rules(render())
    assert default["/namespaces"] == {"get"} and default["apps/replicasets"] == {"get"}
    assert default["/replicationcontrollers"] == {"get"} and "/events" not in default
    audited = rules(render(sets=("audit.enabled=true",)))
    assert audited["apps/deployments"] == {"get", "list", "watch", "patch"} and "create" in audited["/events"]
    assert not [d for d in render(sets=("rbac.lookups=false", "rbac.readConfigMaps=false", "rbac.readNodes=false"))
                if d["kind"].startswith("ClusterRole")]


@needs_helm
def test_network_policy_admits_the_api_server_and_the_scraper_only() -> None:
    assert not [d for d in render() if d["kind"] == "NetworkPolicy"]
    docs = render(CHART / "ci" / "hardened-values.yaml")
    policy = only(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= \
        only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    webhook_rule, metrics_rule = policy["spec"]["ingress"]
    assert webhook_rule["from"] == [{"ipBlock": {"cidr": "10.0.0.0/24"}}]
    assert webhook_rule["ports"] == [{"port": "webhook", "protocol": "TCP"}]
    assert metrics_rule["ports"] == [{"port": "health", "protocol": "TCP"}]
    failed = _helm("template", RELEASE, str(CHART), "--set", "networkPolicy.enabled=true", check=False)
    assert failed.returncode != 0 and "networkPolicy.apiServer" in failed.stderr
    # /metrics over TLS: the probes follow.
    probe = container(docs)["livenessProbe"]["httpGet"]
    assert probe["scheme"] == "HTTPS"


@needs_helm
def test_webhook_paths_are_the_handler_ids_the_server_routes() -> None:
    """kopf serves POST /<id> with the handlers of that id; an unknown id would admit silently."""
    import kopf

    registry = kopf.OperatorRegistry()
    handlers.register(registry, reviewer=None, metrics=None)  # type: ignore[arg-type]
    ids = {h.id for h in registry._webhooks.get_all_handlers()}
    docs = render()
    validating = {h["clientConfig"]["service"]["path"] for h in only(docs, "ValidatingWebhookConfiguration")["webhooks"]}
    mutating = {h["clientConfig"]["service"]["path"] for h in only(docs, "MutatingWebhookConfiguration")["webhooks"]}
    assert validating == {f"/{p}" for p in handlers.VALIDATE_PATHS}
    assert mutating == {f"/{handlers.MUTATE_PATH}"}
    assert {p.lstrip("/") for p in validating | mutating} <= ids
    # The Service sends port 443 to the container port the server listens on (--port).
    svc = only(docs, "Service")
    (https,) = [p for p in svc["spec"]["ports"] if p["port"] == 443]
    ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    args = _serve_args(docs)
    assert ports[https["targetPort"]] == args.port == 9443
    assert svc["spec"]["selector"].items() <= only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"].items()


@needs_helm
@pytest.mark.parametrize("namespace", [NAMESPACE, "kube-system"])
def test_kube_system_and_the_release_namespace_are_always_excluded(namespace: str, tmp_path: Path) -> None:
    for values in VALUE_SETS:
        docs = render(values, namespace=namespace)
        for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            for hook in only(docs, kind)["webhooks"]:
                (name_rule,) = [e for e in hook["namespaceSelector"]["matchExpressions"]
                                if e["key"] == "kubernetes.io/metadata.name"]
                assert name_rule["operator"] == "NotIn"
                assert {"kube-system", namespace} <= set(name_rule["values"])
        # ... and the server skips them too, should a request arrive anyway.
        assert {"kube-system", namespace} <= set(server_config(docs, tmp_path).exempt_namespaces)


@needs_helm
def test_extra_exempt_namespaces_and_opt_out_label_reach_every_webhook() -> None:
    docs = render(sets=("webhook.exemptNamespaces={batch-jobs}", "webhook.optOutLabel=example.com/skip"))
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        for hook in only(docs, kind)["webhooks"]:
            expressions = hook["namespaceSelector"]["matchExpressions"]
            assert "batch-jobs" in expressions[0]["values"]
            assert {"key": "example.com/skip", "operator": "DoesNotExist"} in expressions


# -- TLS -------------------------------------------------------------------------------------------

def _ca_bundles(docs: tuple[dict, ...]) -> set[str | None]:
    return {hook["clientConfig"].get("caBundle")
            for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
            for hook in only(docs, kind)["webhooks"]}


@needs_helm
def test_generated_ca_signs_the_serving_certificate_and_is_in_every_webhook() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import padding

    docs = render()
    secret = only(docs, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    assert _ca_bundles(docs) == {secret["data"]["ca.crt"]}
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
    assert cert.issuer == ca.subject
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    service = only(docs, "Service")["metadata"]["name"]
    assert f"{service}.{NAMESPACE}.svc" in names  # the name the API server dials
    # The key belongs to the certificate, and the server can load the pair.
    from vllm_fit.admission import certs  # noqa: F401  (the server's TLS helpers import cleanly)
    import ssl
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "tls.crt").write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
        (Path(tmp) / "tls.key").write_bytes(base64.b64decode(secret["data"]["tls.key"]))
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(Path(tmp) / "tls.crt", Path(tmp) / "tls.key")
    # The Deployment mounts this Secret where the server reads its certificate.
    args = _serve_args(docs)
    for path, key in ((args.tls_cert_file, "tls.crt"), (args.tls_key_file, "tls.key")):
        volume, inside = mounted_file(docs, str(path))
        assert volume["secret"]["secretName"] == secret["metadata"]["name"] and inside == key


@needs_helm
@pytest.mark.parametrize("values", [p for p in CI_VALUES if p.name.startswith("cert-manager")], ids=lambda p: p.name)
def test_cert_manager_certificate_and_ca_injection(values: Path) -> None:
    docs = render(values)
    assert not [d for d in docs if d["kind"] == "Secret"]
    assert _ca_bundles(docs) == {None}
    certificate = only(docs, "Certificate")
    injected = f"{NAMESPACE}/{certificate['metadata']['name']}"
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        assert only(docs, kind)["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == injected
    service = only(docs, "Service")["metadata"]["name"]
    assert f"{service}.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    volume, _ = mounted_file(docs, str(_serve_args(docs).tls_cert_file))
    assert volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    issuers = [d for d in docs if d["kind"] == "Issuer"]
    ref = certificate["spec"]["issuerRef"]
    if values_of(values)["certManager"]["issuerRef"]["name"]:
        assert not issuers and ref["kind"] == "ClusterIssuer"
    else:
        assert [i["metadata"]["name"] for i in issuers] == [ref["name"]] and "selfSigned" in issuers[0]["spec"]


@needs_helm
def test_existing_secret_uses_the_given_ca_bundle() -> None:
    values = CHART / "ci" / "existing-secret-values.yaml"
    docs = render(values)
    assert not [d for d in docs if d["kind"] in {"Secret", "Certificate"}]
    ca = values_of(values)["tls"]["caBundle"]
    assert {base64.b64decode(b).decode() for b in _ca_bundles(docs)} == {ca}
    volume, _ = mounted_file(docs, str(_serve_args(docs).tls_cert_file))
    assert volume["secret"]["secretName"] == "my-webhook-tls"


@needs_helm
def test_webhook_url_points_every_webhook_outside_the_cluster() -> None:
    """webhook.url: a server outside the cluster (the e2e suite's `vllm-fit serve` on the host)."""
    ca = (CHART / "ci" / "existing-secret-values.yaml")
    ca_pem = values_of(ca)["tls"]["caBundle"]
    docs = render(ca, sets=("webhook.url=https://127.0.0.1:9443/",))
    expected = webhook_configurations(
        name=f"{RELEASE}-vllm-fit", client_config=lambda path: {"url": f"https://127.0.0.1:9443{path}"},
        exempt_namespaces=["kube-system", NAMESPACE])
    for want in expected:
        got = only(docs, want["kind"])
        assert {base64.b64decode(h["clientConfig"].pop("caBundle")).decode() for h in got["webhooks"]} == {ca_pem}
        assert got["webhooks"] == want["webhooks"]


@needs_helm
@pytest.mark.parametrize("sets, message", [
    (("webhook.url=https://127.0.0.1:9443",), "webhook.url needs tls.caBundle"),
    (("webhook.url=http://127.0.0.1:9443", "tls.caBundle=x"), "/webhook/url"),
    (("webhook.url=https://127.0.0.1:9443", "tls.caBundle=x", "certManager.enabled=true"), "exclusive"),
])
def test_webhook_url_needs_https_and_its_ca(sets: tuple[str, ...], message: str) -> None:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for item in sets:
        args += ["--set", item]
    result = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and message in result.stderr, result.stderr


# -- pod ---------------------------------------------------------------------------------------

def _serve_args(docs: tuple[dict, ...]):
    from vllm_fit.cli.serve import _parser

    return _parser().parse_args(container(docs)["args"])


@needs_helm
@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_pod_runs_hardened(values: Path | None) -> None:
    docs = render(values)
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    c = container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= c["resources"]["requests"].keys() and "memory" in c["resources"]["limits"]
    # Probes hit the health server's routes on the port the server is told to use.
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert ports[c["readinessProbe"]["httpGet"]["port"]] == _serve_args(docs).health_port
    # With a read-only root, every path the process writes is a volume.
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = [m for m in c["volumeMounts"] if not m.get("readOnly")]
    assert {m["mountPath"] for m in writable} >= {"/tmp", values_of(values)["cache"]["mountPath"]}
    assert all("emptyDir" in volumes[m["name"]] or "persistentVolumeClaim" in volumes[m["name"]] for m in writable)
    assert pod["automountServiceAccountToken"] is True  # kopf logs in with the token


@needs_helm
def test_replicas_pdb_anti_affinity_and_priority() -> None:
    docs = render()
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert only(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert only(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    (term,) = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert "priorityClassName" not in deployment["spec"]["template"]["spec"]
    single = render(sets=("replicas=1",))
    assert not [d for d in single if d["kind"] == "PodDisruptionBudget"]
    closed = render(CHART / "ci" / "fail-closed-values.yaml")
    assert only(closed, "Deployment")["spec"]["template"]["spec"]["priorityClassName"] == "system-cluster-critical"


@needs_helm
def test_rbac_is_get_on_configmaps_and_watch_on_nodes_by_default_and_discovery_when_asked() -> None:
    rbac = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
    docs = render(sets=("rbac.readNodes=false",))
    (role,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("-read-configmaps")]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding" and d["roleRef"]["name"] == role["metadata"]["name"]]
    # The lookups role (namespaces, controllers) is read-only too.
    (lookups,) = [d for d in docs if d["kind"] == "ClusterRole" and d is not role]
    assert {verb for rule in lookups["rules"] for verb in rule["verbs"]} == {"get"}
    sa = only(docs, "ServiceAccount")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
    assert "read_configmaps: true" in only(docs, "ConfigMap")["data"]["config.yaml"]
    assert "cluster_gpus: false" in only(docs, "ConfigMap")["data"]["config.yaml"]
    # the GPU inventory (default on): get/list/watch Nodes, nothing else, nothing written
    nodes = render(sets=("rbac.readConfigMaps=false", "rbac.lookups=false"))
    (role,) = [d for d in nodes if d["kind"] == "ClusterRole"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]
    (binding,) = [d for d in nodes if d["kind"] == "ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
    assert "cluster_gpus: true" in only(nodes, "ConfigMap")["data"]["config.yaml"]
    off = render(sets=("rbac.readConfigMaps=false", "rbac.readNodes=false", "rbac.lookups=false"))
    assert not [d for d in off if d["kind"] in rbac]
    assert "read_configmaps: false" in only(off, "ConfigMap")["data"]["config.yaml"]
    docs = render(CHART / "ci" / "hub-and-bundles-values.yaml",
                  sets=("rbac.readConfigMaps=false", "rbac.readNodes=false", "rbac.lookups=false"))
    (binding,) = [d for d in docs if d["kind"] in rbac]
    assert binding["kind"] == "ClusterRoleBinding" and binding["roleRef"]["name"] == "system:discovery"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": only(docs, "ServiceAccount")["metadata"]["name"],
                                    "namespace": NAMESPACE}]
    both = render(CHART / "ci" / "hub-and-bundles-values.yaml")
    assert sorted(d["kind"] for d in both if d["kind"] in rbac) == ["ClusterRole"] * 3 + ["ClusterRoleBinding"] * 4


def test_default_gpu_schema_names_exactly_the_catalog() -> None:
    from vllm_fit.profiles import gpu_catalog

    schema = json.loads((CHART / "values.schema.json").read_text())
    choices = schema["properties"]["config"]["properties"]["default_gpu"]["anyOf"]
    (names,) = [c["enum"] for c in choices if "enum" in c]
    catalog = {key for g in gpu_catalog().gpus for key in (g.name, *g.aliases, *g.gfd_products, *g.gke_accelerators)
               if key}
    assert set(names) == catalog, "run python scripts/sync_chart_gpus.py"


@needs_helm
@pytest.mark.parametrize("value, accepted", [
    ("H100-80GB", True), ("NVIDIA-H100-80GB-HBM3", True), ("nvidia-l4", True), ("79.18GiB", True),
    ("48 GB", True), ("H1OO", False), ("80", False), ("lots", False),
])
def test_schema_rejects_a_default_gpu_that_is_neither_a_catalog_name_nor_a_size(value: str, accepted: bool) -> None:
    result = _helm("template", RELEASE, str(CHART), "--set-string", f"config.default_gpu={value}", check=False)
    assert (result.returncode == 0) is accepted, result.stderr
    if not accepted:
        assert "schema" in result.stderr and "default_gpu" in result.stderr


def test_server_fails_fast_with_one_line_on_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("default_gpu: H1OO\nmode: enforce\n")
    result = subprocess.run([sys.executable, "-m", "vllm_fit", "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "default_gpu" in lines[0] and "H1OO" in lines[0]


@needs_helm
def test_image_tag_follows_app_version_which_is_the_package_version() -> None:
    import importlib.metadata

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pyproject = (ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    assert chart["appVersion"] == version == importlib.metadata.version("vllm-fit")
    assert container(render())["image"] == f"vllm-fit:{version}"
    assert container(render(sets=("image.tag=dev",)))["image"] == "vllm-fit:dev"
    digest = "sha256:" + "a" * 64
    assert container(render(sets=(f"image.digest={digest}",)))["image"] == f"vllm-fit@{digest}"


# -- configuration -------------------------------------------------------------------------------

@needs_helm
@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_configmap_is_a_config_the_server_accepts(values: Path | None, tmp_path: Path) -> None:
    docs = render(values)
    config = server_config(docs, tmp_path)
    vals = values_of(values)["config"]
    for key, value in vals.items():
        if value is not None:
            got = getattr(config, key)
            assert (list(got) if isinstance(got, tuple) else got) == value, key
    # The server is started with the file the ConfigMap is mounted as.
    volume, inside = mounted_file(docs, str(_serve_args(docs).config))
    assert volume["configMap"]["name"] == only(docs, "ConfigMap")["metadata"]["name"] and inside == "config.yaml"
    # The server gives up before the API server does.
    assert config.deadline_seconds < only(docs, "ValidatingWebhookConfiguration")["webhooks"][0]["timeoutSeconds"]


def test_values_config_keys_are_the_server_config_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    chart_managed = {"exempt_namespaces", "model_bundle_dirs", "read_configmaps", "cluster_gpus",  # from rbac.*
                     "profiles_dir",  # from profiles.configMap
                     "namespace",  # the release namespace
                     # from observer.* (templates/configmap.yaml)
                     "observer_enabled", "observer_log_tail_lines", "observer_log_limit_bytes",
                     "observer_log_reads_per_minute", "observer_drift_threshold_pct", "calibration_enabled",
                     "calibration_configmap", "calibration_max_entries", "calibration_refresh_seconds",
                     "audit_existing"}  # from audit.enabled
    assert set(schema["properties"]["config"]["properties"]) == set(WebhookConfig.model_fields) - chart_managed
    assert set(yaml.safe_load((CHART / "values.yaml").read_text())["config"]) == set(WebhookConfig.model_fields) - chart_managed


@needs_helm
@pytest.mark.parametrize("setting, message", [
    ("config.mdoe=warn", "additional properties 'mdoe' not allowed"),
    ("replica=3", "additional properties 'replica' not allowed"),
    ("webhook.failurPolicy=Fail", "additional properties 'failurPolicy' not allowed"),
    ("webhook.failurePolicy=fail", "failurePolicy"),
    ("config.mode=block", "mode"),
    ("webhook.timeoutSeconds=45", "timeoutSeconds"),
])
def test_schema_rejects_typos_and_bad_values(setting: str, message: str) -> None:
    result = _helm("template", RELEASE, str(CHART), "--set", setting, check=False)
    assert result.returncode != 0
    assert "schema" in result.stderr and message in result.stderr


@needs_helm
@pytest.mark.parametrize("sets", [
    ("config.deadline_seconds=5",),  # equal to the default timeout
    ("webhook.timeoutSeconds=2", "config.deadline_seconds=2.5"),
])
def test_rendering_fails_when_the_deadline_is_not_below_the_timeout(sets: tuple[str, ...]) -> None:
    args = ["template", RELEASE, str(CHART)]
    for item in sets:
        args += ["--set-json", item]  # --set would make 2.5 a string
    result = _helm(*args, check=False)
    assert result.returncode != 0 and "must be below webhook.timeoutSeconds" in result.stderr


@needs_helm
def test_hub_token_endpoint_offline_and_cache(tmp_path: Path) -> None:
    from vllm_fit.hub.settings import HubSettings

    values = CHART / "ci" / "hub-and-bundles-values.yaml"
    docs = render(values)
    env = {e["name"]: e["value"] for e in container(docs)["env"] if "value" in e}
    # The token is a mounted file from the user's Secret, never an env value.
    assert "HF_TOKEN" not in env
    volume, inside = mounted_file(docs, env["VLLM_FIT_HF_TOKEN_FILE"])
    assert volume["secret"]["secretName"] == "hf-token"
    assert volume["secret"]["items"] == [{"key": "HF_TOKEN", "path": inside}]
    token = tmp_path / "token"
    token.write_text("hf_secret\n")
    settings = HubSettings.from_env({**env, "VLLM_FIT_HF_TOKEN_FILE": str(token)})
    assert settings.token == "hf_secret" and settings.token_source == "VLLM_FIT_HF_TOKEN_FILE"
    assert settings.endpoint == "https://hf-mirror.internal.example" and not settings.offline
    cache, _ = mounted_file(docs, str(settings.cache_dir / "x"))
    assert cache["persistentVolumeClaim"]["claimName"] == "vllm-fit-cache"
    # Defaults: Hub on, emptyDir cache; hub.enabled=false makes the resolver offline.
    default_env = {e["name"]: e["value"] for e in container(render())["env"]}
    assert not HubSettings.from_env(default_env).offline
    assert "emptyDir" in mounted_file(render(), default_env["VLLM_FIT_CACHE_DIR"] + "/x")[0]
    offline_env = {e["name"]: e["value"] for e in container(render(sets=("hub.enabled=false",)))["env"]}
    assert HubSettings.from_env(offline_env).offline


@needs_helm
def test_model_bundles_are_laid_out_as_the_resolver_reads_them(tmp_path: Path) -> None:
    """Materialise the projected volume the way the kubelet would, then resolve through it."""
    from vllm_fit.hub.resolver import BundledResolver

    docs = render(CHART / "ci" / "hub-and-bundles-values.yaml")
    config = server_config(docs, tmp_path)
    (bundle_dir,) = config.model_bundle_dirs
    volumes = {v["name"]: v for v in only(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [m for m in container(docs)["volumeMounts"] if m["mountPath"] == bundle_dir]
    sample = ROOT / "profiles" / "models" / "Qwen--Qwen3-0.6B"
    root = tmp_path / "models"
    for source in volumes[mount["name"]]["projected"]["sources"]:
        for item in source["configMap"]["items"]:
            target = root / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((sample / item["key"]).read_bytes())
    resolver = BundledResolver([root])
    assert {"my-org/my-model-7b", "my-org/config-only"} <= set(resolver.known())
    with_weights = resolver.resolve("my-org/my-model-7b")
    bundled = BundledResolver().resolve("Qwen/Qwen3-0.6B")
    assert with_weights.params_by_dtype == bundled.params_by_dtype and with_weights.params_by_dtype
    assert with_weights.config == bundled.config
    assert not (root / "my-org--config-only" / "weights.yaml").exists()
    resolver.resolve("my-org/config-only")


@needs_helm
@pytest.mark.parametrize("mode, decision", [("enforce", "deny"), ("warn", "allow"), ("audit", "allow")])
def test_notes_example_is_judged_as_the_notes_say(mode: str, decision: str, tmp_path: Path) -> None:
    """The NOTES demo manifest, reviewed with the chart's own configuration."""
    from vllm_fit.admission.review import Reviewer
    from vllm_fit.hub.resolver import default_resolver
    from vllm_fit.profiles import gpu_catalog, runtime_profiles

    result = _helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
                   "--set", f"config.mode={mode}")
    notes = result.stdout.split("NOTES:", 1)[1]
    manifest = yaml.safe_load(textwrap.dedent(re.search(r"<<'YAML'.*?\n(.*?)\n\s*YAML\n", notes, re.S).group(1)))
    docs = render(sets=(f"config.mode={mode}",))
    reviewer = Reviewer(server_config(docs, tmp_path), default_resolver(hub=False), gpu_catalog(), runtime_profiles())
    judgement = asyncio.run(reviewer.review({**manifest, "metadata": {**manifest["metadata"], "namespace": "vllm-fit-demo"}}))
    assert judgement.verdict == "reject" and judgement.decision == decision
    if mode == "enforce":
        assert 'denied the request' in notes
    elif mode == "warn":
        assert judgement.warnings and "Warning:" in notes
    else:
        assert not judgement.warnings and judgement.annotations and "admitted silently" in notes


# -- image ----------------------------------------------------------------------------------------

def _stages(dockerfile: str) -> list[list[str]]:
    logical = re.sub(r"\\\n", " ", dockerfile)
    lines = [ln.strip() for ln in logical.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_slim_non_root_with_serve_entrypoint() -> None:
    text = (ROOT / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    stages = _stages(text)
    assert len(stages) >= 2
    final = stages[-1]
    base = final[0].split()[1]
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", base), base
    users = [ln.split()[1] for ln in final if ln.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0].isdigit() and int(users[-1].split(":")[0]) != 0
    (entrypoint,) = [ln for ln in final if ln.upper().startswith("ENTRYPOINT ")]
    assert json.loads(entrypoint.split(None, 1)[1]) == ["vllm-fit", "serve"]
    # The final stage installs nothing: it copies the built venv; no compilers, no pip runs.
    body = " ".join(final)
    assert "COPY --from=build /opt/venv /opt/venv" in body
    assert not re.search(r"pip\b.*install|apt-get install|gcc|build-essential|setuptools", body)
    # The build stage builds the wheel from the sources, profiles included.
    build = " ".join(stages[0])
    assert "COPY profiles" in build and "pip wheel" in build
    # The uid the chart runs as is the image's user.
    assert int(users[-1].split(":")[0]) == yaml.safe_load((CHART / "values.yaml").read_text())["podSecurityContext"]["runAsUser"]


def test_dockerignore_keeps_the_build_context_to_the_sources() -> None:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "**"
    assert {"!pyproject.toml", "!README.md", "!operator", "!profiles"} <= set(lines)


def test_wheel_contains_the_bundled_profiles_and_the_cli(tmp_path: Path) -> None:
    """What the Dockerfile's build stage does: `pip wheel .` from the sources it copies."""
    import importlib.metadata
    from packaging.version import Version

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("operator", "profiles"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    try:  # without isolation when the test extra's setuptools/wheel are here (fast, offline)
        isolated = Version(importlib.metadata.version("setuptools")) < Version("68")
        importlib.metadata.version("wheel")
    except importlib.metadata.PackageNotFoundError:
        isolated = True
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(src)]
    if not isolated:
        cmd.insert(5, "--no-build-isolation")
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("vllm_fit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        metadata = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert "vllm_fit/profiles_data/gpus.yaml" in names
    assert "vllm_fit/profiles_data/vllm-runtime.yaml" in names
    for model in (ROOT / "profiles" / "models").iterdir():
        assert f"vllm_fit/profiles_data/models/{model.name}/config.json" in names
    assert "vllm_fit/admission/server.py" in names
    # Every package of the source tree ships (vllm_fit.logs once did not: `serve` died on import).
    for init in (ROOT / "operator" / "vllm_fit").rglob("__init__.py"):
        assert init.relative_to(ROOT / "operator").as_posix() in names, f"{init} is not in the wheel"
    assert re.search(r"^vllm-fit = vllm_fit\.cli:main$", entry_points, re.M)
    # A plain `pip install vllm-fit` brings the Hub client and the webhook server: their
    # requirements carry no `extra == ...` marker.
    requires = {re.split(r"[<>=!~ ;\[]", line.split(":", 1)[1].strip())[0].lower().replace("_", "-"): line
                for line in metadata.splitlines() if line.startswith("Requires-Dist:")}
    for package in ("huggingface-hub", "kopf", "aiohttp", "prometheus-client", "cryptography", "pydantic", "pyyaml"):
        assert package in requires, f"{package} is not a requirement of the wheel:\n{metadata}"
        assert "extra ==" not in requires[package], requires[package]
    assert re.search(r"^Provides-Extra: test$", metadata, re.M)


def test_cli_reaches_the_hub_and_serve_help_works_as_installed(tmp_path: Path) -> None:
    """The acceptance of a plain install: a model only the Hub has gets as far as the Hub client
    (here unreachable), not 'not installed'; `serve --help` imports the webhook stack."""
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "VLLM_FIT_CACHE_DIR": str(tmp_path / "cache"),
           "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    env.pop("VLLM_FIT_HUB", None)
    plan = subprocess.run([sys.executable, "-m", "vllm_fit", "plan", "some-org/only-on-the-hub-7b"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "the Hub is unreachable" in plan.stderr, plan.stderr
    assert "not installed" not in plan.stderr and "Traceback" not in plan.stderr, plan.stderr
    serve = subprocess.run([sys.executable, "-m", "vllm_fit", "serve", "--help"], capture_output=True, text=True,
                           timeout=120)
    assert serve.returncode == 0, serve.stderr
    assert "--tls-cert-file" in serve.stdout
    # and the modules behind it import (serve --help itself imports lazily)
    imports = subprocess.run([sys.executable, "-c", "import vllm_fit.admission.operator, vllm_fit.admission.dev"],
                             capture_output=True, text=True, timeout=120)
    assert imports.returncode == 0, imports.stderr


@needs_helm
def test_measured_profiles_configmap_is_mounted_where_the_server_reads_it(tmp_path: Path) -> None:
    docs = render(sets=("profiles.configMap=cluster-measured-profiles",))
    config = server_config(docs, tmp_path)
    assert config.profiles_dir == "/etc/vllm-fit/profiles"
    volume, inside = mounted_file(docs, "/etc/vllm-fit/profiles/llama.yaml")
    assert volume["configMap"]["name"] == "cluster-measured-profiles" and inside == "llama.yaml"
    assert server_config(render(), tmp_path).profiles_dir is None
