"""End-to-end admission tests against a real API server. See e2e/README.md.

Which cluster:
  VLLM_FIT_E2E_CLUSTER=path/to/script   a script with `up --controller-manager` / `down --wipe` / `env`
                                        (../shared/k8s/cluster in CI): the suite starts the control
                                        plane (in the background, as soon as e2e tests are collected)
                                        and wipes it at the end.
  KUBECONFIG=...                        any cluster the current context names (kind too); left as found.
  neither                               every test skips, saying why.

Modes (E2E_MODE):
  local (default)  the suite `helm template`s the chart with webhook.url pointing at this host and
                   server-side applies its ServiceAccount, ConfigMap, RBAC and webhook configurations
                   in a release namespace of its own; it runs `vllm-fit serve` here with the
                   ConfigMap's configuration as that ServiceAccount (a `kubectl create token`
                   kubeconfig), on a certificate for VLLM_FIT_DEV_HOST (default 127.0.0.1) from a CA
                   of its own. Everything is deleted at the end.
  helm             the chart is installed in the cluster already (e2e/kind.sh); tests that must
                   stop, restart or reconfigure the server skip.

Fixtures for new e2e tests (all in this file): `kubectl` (admin), `namespaces` (enforce / warn /
audit / the webhook's own), `make_namespace`, `make_node`, `webhook` (`.reconfigured(values=...,
config=...)`, `.server.stop()/start()`, `.wait_effective()`), `local_webhook` (skips in helm mode).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
import yaml

from e2e_support import (APPLIED_KINDS, MODE, MODE_LABEL, PREINSTALLED_CRDS, PROBE_TIMEOUT, REPO, Cluster,
                         ClusterScript, Kubectl, Namespaces, ServerProcess, ServingTls, cluster_script_from_env,
                         current_server, e2e_fixture_text, free_port, helm_template, is_denial, kubeconfig_paths,
                         manifest, merge_values, placed, poll, probe, restoring, token_kubeconfig, vllm_annotations)

_script: Optional[ClusterScript] = None


def _cluster_script() -> Optional[ClusterScript]:
    global _script
    if _script is None:
        _, path = cluster_script_from_env()
        if path is not None:
            _script = ClusterScript(path)
    return _script


def pytest_collection_finish(session: pytest.Session) -> None:
    """Boot the control plane while the tests before the e2e ones run (it takes 10-30 s)."""
    here = Path(__file__).parent
    if session.config.option.collectonly:
        return
    if any(Path(str(item.fspath)).is_relative_to(here) for item in session.items):
        script = _cluster_script()
        if script is not None:
            script.start(preinstall="\n---\n".join(e2e_fixture_text(f) for f in PREINSTALLED_CRDS))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _script is not None and _script.started:
        problem = _script.stop()
        if problem:
            print(f"\ne2e: {_script.path} down --wipe: {problem}")


# --------------------------------------------------------------------------------------------
# The cluster


def _kubectl_binary(script: Optional[ClusterScript]) -> tuple[Optional[str], str]:
    wanted = os.environ.get("KUBECTL")
    if wanted:
        return shutil.which(wanted), f"{wanted!r} (KUBECTL) is not an executable"
    if script is not None:
        found = script.kubectl()
        if found:
            return found, ""
    return shutil.which("kubectl"), "'kubectl' is not on PATH; install kubectl or set KUBECTL=/path/to/kubectl"


@pytest.fixture(scope="session", autouse=True)
def cluster() -> Iterator[Cluster]:
    if MODE not in ("local", "helm"):
        pytest.fail(f"E2E_MODE must be local or helm, not {MODE!r}")
    raw, _ = cluster_script_from_env()
    script = _cluster_script()
    if raw is not None:
        if script is None:
            pytest.skip(f"VLLM_FIT_E2E_CLUSTER={raw} names no file (from {Path.cwd()} or {REPO})")
        try:
            kubeconfig = str(script.wait())
        except RuntimeError as exc:
            pytest.fail(f"could not start the cluster: {exc}")
        source = f"VLLM_FIT_E2E_CLUSTER={raw}"
        server = current_server([Path(kubeconfig)])
    else:
        shown, paths = kubeconfig_paths()
        if not shown:
            pytest.skip("no cluster: set VLLM_FIT_E2E_CLUSTER to a cluster script (up/down/env, as .ci/run "
                        "does) or KUBECONFIG to a cluster's kubeconfig")
        if not any(p.exists() for p in paths):
            pytest.skip(f"no kubeconfig: nothing at KUBECONFIG={shown}")
        try:
            server = current_server(paths)
        except (ValueError, yaml.YAMLError, OSError) as exc:
            pytest.skip(f"unusable kubeconfig KUBECONFIG={shown}: {exc}")
        why = probe(server, PROBE_TIMEOUT)
        if why is not None:
            pytest.skip(f"no reachable Kubernetes API at {server} from KUBECONFIG={shown}: {why}")
        kubeconfig, source = shown, f"KUBECONFIG={shown}"
    binary, missing = _kubectl_binary(script if raw is not None else None)
    if binary is None:
        pytest.skip(f"kubectl not found ({missing})")
    kubectl = Kubectl(binary, kubeconfig if raw is not None else None)
    version = Kubectl(binary, kubectl.kubeconfig, request_timeout=10)("version", "-o", "json")
    if not version.ok:
        pytest.skip(f"kubectl cannot use the Kubernetes API at {server} ({source}): "
                    f"{(version.stderr.strip().splitlines() or ['?'])[-1]}")
    yield Cluster(kubectl=kubectl, server=server, kubeconfig=kubeconfig, mode=MODE, source=source)


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster) -> Kubectl:
    """kubectl as the cluster's admin (the kubeconfig the suite was given)."""
    return cluster.kubectl


@pytest.fixture(scope="session")
def helm() -> str:
    binary = shutil.which(os.environ.get("HELM", "helm"))
    if binary is None:
        pytest.skip("helm not found: the suite renders the chart with `helm template` (tests/run puts helm "
                    "in .venv/bin; or set HELM=/path/to/helm)")
    return binary


# --------------------------------------------------------------------------------------------
# Namespaces and Nodes


def _namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "vllm-fit-e2e", **labels}}}


@pytest.fixture(scope="session")
def namespaces(cluster: Cluster, kubectl: Kubectl, webhook: Any) -> Iterator[Namespaces]:
    base = f"vllm-fit-e2e-{cluster.run_id}"
    made = {"enforce": (f"{base}-enforce", {}), "warn": (f"{base}-warn", {MODE_LABEL: "warn"}),
            "audit": (f"{base}-audit", {MODE_LABEL: "audit"})}
    created: list[str] = []
    try:
        for name, labels in made.values():
            result = kubectl.apply(_namespace(name, labels))
            assert result.ok, str(result)
            created.append(name)
        yield Namespaces(enforce=made["enforce"][0], warn=made["warn"][0], audit=made["audit"][0],
                         own=webhook.namespace)
    finally:
        for name in created:
            kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.fixture
def make_namespace(cluster: Cluster, kubectl: Kubectl) -> Iterator[Callable[..., str]]:
    """make_namespace("llm", {"vllm-fit.io/mode": "warn"}) -> a fresh namespace's name, deleted after the test."""
    created: list[str] = []

    def make(suffix: str = "ns", labels: Optional[dict[str, str]] = None) -> str:
        name = f"vllm-fit-e2e-{cluster.run_id}-{suffix}-{uuid.uuid4().hex[:4]}"
        result = kubectl.apply(_namespace(name, labels or {}))
        assert result.ok, str(result)
        created.append(name)
        return name

    yield make
    for name in created:
        kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.fixture
def make_node(cluster: Cluster, kubectl: Kubectl) -> Iterator[Callable[..., str]]:
    """make_node(labels={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}, capacity={"nvidia.com/gpu": "8"})
    -> the name of a Node object (no kubelet behind it: it never turns Ready), deleted after the test.
    Capacity and allocatable are set through the status subresource, as a kubelet would report them."""
    created: list[str] = []

    def make(labels: Optional[dict[str, str]] = None, capacity: Optional[dict[str, str]] = None,
             name: Optional[str] = None) -> str:
        name = name or f"vllm-fit-e2e-{cluster.run_id}-node-{uuid.uuid4().hex[:4]}"
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                      "app.kubernetes.io/part-of": "vllm-fit-e2e", **(labels or {})}}}
        result = kubectl.apply(node)
        assert result.ok, str(result)
        created.append(name)
        resources = {"cpu": "64", "memory": "512Gi", "pods": "110", **(capacity or {})}
        patch = yaml.safe_dump({"status": {"capacity": resources, "allocatable": resources}})
        result = kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", patch)
        assert result.ok, str(result)
        return name

    yield make
    for name in created:
        kubectl.delete("node", name)


# --------------------------------------------------------------------------------------------
# The webhook


class LocalWebhook:
    """The chart's objects in a release namespace of this run, and `vllm-fit serve` on this host."""

    mode = "local"

    def __init__(self, cluster: Cluster, kubectl: Kubectl, helm: str, workdir: Path) -> None:
        self.kubectl = kubectl
        self.helm = helm
        self.release = f"vllm-fit-e2e-{cluster.run_id}"  # contains the chart name: also the fullname
        self.namespace = self.release
        self.fullname = self.release
        self.probe_namespace = f"{self.release}-probe"
        host = os.environ.get("VLLM_FIT_DEV_HOST") or "127.0.0.1"
        port = int(os.environ.get("E2E_DEV_PORT") or free_port())
        health_port = int(os.environ.get("E2E_DEV_HEALTH_PORT") or free_port())
        self.tls = ServingTls(workdir / "tls", host)
        self.url = f"https://{host}:{port}"
        self.values = self.base_values
        self.applied: list[dict[str, Any]] = []
        self.server = ServerProcess(workdir=workdir, host=host, port=port, health_port=health_port, tls=self.tls,
                                    kubeconfig=workdir / "serviceaccount.kubeconfig")

    # -- chart ------------------------------------------------------------------------------

    @property
    def base_values(self) -> dict[str, Any]:
        """What the chart needs for a server outside the cluster: its URL and the CA of its
        certificate (the current one: a test may rotate it)."""
        return {"webhook": {"url": self.url},
                "tls": {"existingSecret": f"{self.fullname}-tls", "caBundle": self.tls.ca_pem}}

    def render(self, values: Optional[dict[str, Any]] = None) -> list[dict[str, Any]]:
        return helm_template(merge_values(self.base_values, values or {}), self.namespace, self.release, self.helm)

    def apply_chart(self, values: Optional[dict[str, Any]] = None, *, webhooks: bool = True) -> list[dict[str, Any]]:
        """Render with `values` over the base values and server-side apply the objects a server outside
        the cluster needs (the webhook configurations only when `webhooks`)."""
        values = merge_values(self.base_values, values or {})
        objs = [o for o in helm_template(values, self.namespace, self.release, self.helm)
                if o["kind"] in APPLIED_KINDS and (webhooks or "Webhook" not in o["kind"])]
        result = self.kubectl.apply_server_side(objs)
        assert result.ok, str(result)
        self.values = values
        self.applied = [o for o in self.applied if (o["kind"], o["metadata"]["name"]) not in
                        {(n["kind"], n["metadata"]["name"]) for n in objs}] + objs
        return objs

    def configmap_config(self) -> dict[str, Any]:
        """The server configuration as the cluster has it (the chart's ConfigMap)."""
        configmap = self.kubectl.get("configmap", self.fullname, self.namespace)
        assert configmap is not None, f"no ConfigMap {self.fullname} in {self.namespace}"
        return yaml.safe_load(configmap["data"]["config.yaml"]) or {}

    @property
    def service_account(self) -> str:
        (account,) = [o["metadata"]["name"] for o in self.applied if o["kind"] == "ServiceAccount"]
        return account

    # -- lifecycle --------------------------------------------------------------------------

    def install(self) -> None:
        for name, labels in ((self.namespace, {}), (self.probe_namespace, {MODE_LABEL: "enforce"})):
            result = self.kubectl.apply(_namespace(name, labels))
            assert result.ok, str(result)
        self.apply_chart(webhooks=False)
        token_kubeconfig(self.kubectl, self.namespace, self.service_account, self.server.kubeconfig)
        self.server.config = self.configmap_config()
        self.server.start()
        self.apply_chart()
        self.wait_effective()

    def uninstall(self) -> Optional[int]:
        status = self.server.stop()
        for obj in reversed(self.applied):
            if obj["metadata"].get("namespace") is None and obj["kind"] != "Namespace":
                self.kubectl.delete(obj["kind"], obj["metadata"]["name"])
        for name in (self.namespace, self.probe_namespace):
            self.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")
        return status

    def restart(self, config: Optional[dict[str, Any]] = None) -> None:
        """Restart the server with the ConfigMap's configuration, `config` keys over it."""
        self.server.stop()
        self.server.config = {**self.configmap_config(), **(config or {})}
        self.server.start()

    @contextlib.contextmanager
    def reconfigured(self, values: Optional[dict[str, Any]] = None, config: Optional[dict[str, Any]] = None,
                     env: Optional[dict[str, str]] = None) -> Iterator["LocalWebhook"]:
        """Chart `values` (server-side applied) and server `config`/`env` for the block; the server
        is restarted when its configuration changes (the ConfigMap, `config` or `env`), and
        everything is put back afterwards (the server running, the configurations effective)."""
        saved_env = dict(self.server.env)

        def restore() -> None:
            self.apply_chart()
            wanted = self.configmap_config()
            if not self.server.running or self.server.config != wanted or self.server.env != saved_env:
                self.server.stop()
                self.server.env = saved_env
                self.server.config = wanted
                self.server.start()
            self.wait_effective()

        with restoring(restore):
            self.apply_chart(values)
            wanted_env = {**saved_env, **(env or {})}
            if config or wanted_env != saved_env or self.configmap_config() != self.server.config:
                self.server.env = wanted_env
                self.restart(config)
            yield self

    def wait_effective(self, timeout: float = 60) -> None:
        wait_effective(self.kubectl, self.probe_namespace, self.server.log_tail, timeout)


class HelmWebhook:
    """The chart installed in the cluster (e2e/kind.sh): nothing here can restart it."""

    mode = "helm"
    server = None

    def __init__(self, kubectl: Kubectl, namespace: str) -> None:
        self.kubectl = kubectl
        self.namespace = namespace


def wait_effective(kubectl: Kubectl, namespace: str, log_tail: Callable[[], str] = lambda: "",
                   timeout: float = 60) -> None:
    """The API server loads webhook configurations asynchronously: retry server-side dry runs in an
    enforce namespace until the validating webhook denies TP=1 and the mutating one annotates TP=2."""
    tp1 = placed(manifest("a-deploy-create.yaml"), namespace, "e2e-ready-probe")
    tp2 = placed(manifest("b-deploy-update-tp2.yaml"), namespace, "e2e-ready-probe")

    def denies() -> Optional[str]:
        result = kubectl.apply(tp1, "--dry-run=server")
        return None if is_denial(result) else f"{result.returncode} {result.stderr.strip() or result.stdout.strip()}"

    def annotates() -> Optional[str]:
        result = kubectl.apply(tp2, "--dry-run=server", "-o", "json")
        if result.ok and vllm_annotations(result.json()):
            return None
        return f"{result.returncode} {result.stderr.strip() or 'no vllm-fit.io annotations'}"

    try:
        poll("the validating webhook denying a TP=1 dry run", denies, timeout=timeout)
        poll("the mutating webhook annotating a TP=2 dry run", annotates, timeout=timeout)
    except pytest.fail.Exception as exc:
        raise pytest.fail.Exception(f"{exc}\nwebhook log:\n{log_tail()}") from None


def _other_vllm_fit_webhooks(kubectl: Kubectl, own: str) -> list[str]:
    found = []
    for kind in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
        for item in kubectl.items(kind):
            hooks = [h.get("name", "") for h in item.get("webhooks") or []]
            if item["metadata"]["name"] != own and any(h.endswith(".vllm-fit.io") for h in hooks):
                found.append(f"{kind}/{item['metadata']['name']}")
    return found


@pytest.fixture(scope="session")
def webhook(cluster: Cluster, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if cluster.mode == "helm":
        namespace = os.environ.get("E2E_WEBHOOK_NAMESPACE", "vllm-fit")
        if not _other_vllm_fit_webhooks(kubectl, own=""):
            pytest.fail("helm mode: no webhook configuration with vllm-fit.io webhooks in the cluster; "
                        "install the chart first (e2e/kind.sh helm)")
        ready = kubectl("wait", "--for=condition=Available", "deployment", "--all", "-n", namespace,
                        "--timeout=120s", timeout=130)
        assert ready.ok, f"the webhook Deployment in {namespace} is not Available:\n{ready}"
        probe_ns = f"vllm-fit-e2e-{cluster.run_id}-probe"
        assert kubectl.apply(_namespace(probe_ns, {MODE_LABEL: "enforce"})).ok
        try:
            wait_effective(kubectl, probe_ns)
            yield HelmWebhook(kubectl, namespace)
        finally:
            kubectl("delete", "namespace", probe_ns, "--wait=false", "--ignore-not-found")
        return

    helm_binary = shutil.which(os.environ.get("HELM", "helm"))
    if helm_binary is None:
        pytest.skip("helm not found: the suite renders the chart with `helm template` (tests/run puts helm "
                    "in .venv/bin; or set HELM=/path/to/helm)")
    hook = LocalWebhook(cluster, kubectl, helm_binary, tmp_path_factory.mktemp("vllm-fit-serve"))
    others = _other_vllm_fit_webhooks(kubectl, own=hook.fullname)
    if others:
        pytest.fail(f"local mode: the cluster has other vllm-fit webhooks ({', '.join(others)}); they would "
                    "judge too: uninstall them, or use E2E_MODE=helm")
    status: Optional[int] = None
    try:
        hook.install()
        yield hook
    finally:
        status = hook.uninstall()
    assert status in (0, None), f"vllm-fit serve exited with {status} on SIGTERM:\n{hook.server.log_tail()}"


@pytest.fixture(scope="session")
def local_webhook(webhook: Any) -> LocalWebhook:
    """The webhook when this suite runs it (E2E_MODE=local); tests that stop or reconfigure it use this."""
    if not isinstance(webhook, LocalWebhook):
        pytest.skip("needs the webhook server on this host (E2E_MODE=local): it is stopped, restarted or "
                    "reconfigured")
    return webhook
