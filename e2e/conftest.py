"""End-to-end admission tests against a real cluster: `KUBECONFIG=... E2E_MODE=local|helm pytest e2e`.

Every test here needs the `cluster` fixture (autouse). When there is no reachable Kubernetes API
(no kubeconfig, nothing answering at its server, no kubectl, kubectl cannot talk to it) the fixture
skips with the reason, so every test skips and `pytest -rs e2e` says why.

Modes (E2E_MODE):
  local  start `vllm-fit serve --dev` on this host (it registers the `vllm-fit-dev` webhook
         configurations with URL client configs) and stop it at the end; the API server must reach
         this host at VLLM_FIT_DEV_HOST (default 127.0.0.1; for kind the docker network gateway).
  helm   the chart is installed already (e2e/kind.sh does it); the webhook runs in
         E2E_WEBHOOK_NAMESPACE (default vllm-fit).

Every external call is bounded: kubectl always gets --request-timeout and a subprocess timeout.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

from e2e_support import (DEV_NAME, MODE, MODE_LABEL, PROBE_TIMEOUT, REPO, REQUEST_TIMEOUT, Cluster, Kubectl,
                         Namespaces, current_server, is_denial, kubeconfig_paths, manifest, placed, poll, probe,
                         vllm_annotations)


@pytest.fixture(scope="session", autouse=True)
def cluster() -> Cluster:
    if MODE not in ("local", "helm"):
        pytest.fail(f"E2E_MODE must be local or helm, not {MODE!r}")
    shown, paths = kubeconfig_paths()
    if not any(p.exists() for p in paths):
        pytest.skip(f"no kubeconfig: nothing at KUBECONFIG={shown}")
    try:
        server = current_server(paths)
    except (ValueError, yaml.YAMLError, OSError) as exc:
        pytest.skip(f"unusable kubeconfig KUBECONFIG={shown}: {exc}")
    why = probe(server, PROBE_TIMEOUT)
    if why is not None:
        pytest.skip(f"no reachable Kubernetes API at {server} from KUBECONFIG={shown}: {why}")
    wanted = os.environ.get("KUBECTL", "kubectl")
    binary = shutil.which(wanted)
    if binary is None:
        pytest.skip(f"kubectl not found ({wanted!r} is not on PATH; install kubectl or set KUBECTL=/path/to/kubectl)")
    kubectl = Kubectl(binary, request_timeout=min(REQUEST_TIMEOUT, 10))
    version = kubectl("version", "-o", "json")
    if not version.ok:
        pytest.skip(f"kubectl cannot use the Kubernetes API at {server} from KUBECONFIG={shown}: "
                    f"{(version.stderr.strip().splitlines() or ['?'])[-1]}")
    return Cluster(kubectl=Kubectl(binary), server=server, kubeconfig=shown, mode=MODE)


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster) -> Kubectl:
    return cluster.kubectl


# --------------------------------------------------------------------------------------------
# Namespaces


@pytest.fixture(scope="session")
def namespaces(cluster: Cluster, kubectl: Kubectl) -> Any:
    base = f"vllm-fit-e2e-{cluster.run_id}"
    made = {"enforce": base, "warn": f"{base}-warn", "audit": f"{base}-audit"}
    if cluster.mode == "local":
        # The dev server runs on this host; stand in a namespace for "its own", exempted as the chart
        # exempts its release namespace.
        made["own"] = f"{base}-own"
        own = made["own"]
    else:
        own = os.environ.get("E2E_WEBHOOK_NAMESPACE", "vllm-fit")
    labels = {"warn": {MODE_LABEL: "warn"}, "audit": {MODE_LABEL: "audit"}}
    created: list[str] = []
    try:
        for role, name in made.items():
            obj = {"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "vllm-fit-e2e",
                                                         **labels.get(role, {})}}}
            result = kubectl.apply(obj)
            assert result.ok, str(result)
            created.append(name)
        yield Namespaces(enforce=made["enforce"], warn=made["warn"], audit=made["audit"], own=own)
    finally:
        for name in created:
            kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


# --------------------------------------------------------------------------------------------
# The webhook


@dataclass
class Webhook:
    mode: str
    namespace: str  # where it runs (helm) or the stand-in (local)
    log: Optional[Path] = None
    url: Optional[str] = None  # local mode: where the API server must reach `serve --dev`

    def log_tail(self, lines: int = 40) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _dev_configurations(kubectl: Kubectl) -> dict[str, bool]:
    return {kind: kubectl.get(kind, DEV_NAME) is not None
            for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration")}


def _chart_configurations(kubectl: Kubectl) -> list[str]:
    """Names of webhook configurations (other than the dev ones) with vllm-fit.io webhooks."""
    names = []
    for kind in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
        result = kubectl("get", kind, "-o", "json")
        assert result.ok, str(result)
        for item in result.json().get("items", []):
            hooks = [h.get("name", "") for h in item.get("webhooks") or []]
            if item["metadata"]["name"] != DEV_NAME and any(h.endswith(".vllm-fit.io") for h in hooks):
                names.append(f"{kind}/{item['metadata']['name']}")
    return names


def _stop(process: subprocess.Popen, timeout: float = 20) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def webhook(cluster: Cluster, kubectl: Kubectl, namespaces: Namespaces, tmp_path_factory) -> Any:
    if cluster.mode == "helm":
        found = _chart_configurations(kubectl)
        if not found:
            pytest.fail("helm mode: no webhook configuration with vllm-fit.io webhooks in the cluster; "
                        "install the chart first (e2e/kind.sh helm)")
        ready = kubectl("wait", "--for=condition=Available", "deployment", "--all", "-n", namespaces.own,
                        "--timeout=120s", timeout=130)
        assert ready.ok, f"the webhook Deployment in {namespaces.own} is not Available:\n{ready}"
        hook = Webhook(mode="helm", namespace=namespaces.own)
        _wait_until_effective(kubectl, namespaces, hook)
        yield hook
        return

    leftovers = _chart_configurations(kubectl)
    if leftovers:
        pytest.fail(f"local mode: the cluster has vllm-fit webhooks installed already ({', '.join(leftovers)}); "
                    "they would judge too; use E2E_MODE=helm or uninstall them")
    log = tmp_path_factory.mktemp("vllm-fit-dev") / "serve.log"
    port = int(os.environ.get("E2E_DEV_PORT") or _free_port())
    health_port = int(os.environ.get("E2E_DEV_HEALTH_PORT") or _free_port())
    exempt = [n for n in os.environ.get("VLLM_FIT_EXEMPT_NAMESPACES", "kube-system").split(",") if n]
    kubeconfig = os.pathsep.join(str(p.resolve()) for p in kubeconfig_paths()[1])  # serve runs in REPO
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONUNBUFFERED": "1",
           "VLLM_FIT_EXEMPT_NAMESPACES": ",".join(dict.fromkeys(exempt + ["kube-system", namespaces.own]))}
    command = [sys.executable, "-m", "vllm_fit", "serve", "--dev", "--port", str(port),
               "--health-port", str(health_port)]
    # Same session as pytest: a Ctrl-C reaches the server too, and it unregisters itself.
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    hook = Webhook(mode="local", namespace=namespaces.own, log=log,
                   url=f"https://{env.get('VLLM_FIT_DEV_HOST') or '127.0.0.1'}:{port}")
    try:
        def registered() -> Optional[str]:
            if process.poll() is not None:
                pytest.fail(f"vllm-fit serve --dev exited with {process.returncode}:\n{hook.log_tail()}")
            if '"dev-registered"' not in log.read_text(errors="replace"):
                return "no dev-registered event in its log yet"
            present = _dev_configurations(kubectl)
            return None if all(present.values()) else f"logged dev-registered, but in the cluster: {present}"

        poll("vllm-fit serve --dev registering its webhook configurations", registered)
        _wait_until_effective(kubectl, namespaces, hook)
        yield hook
    finally:
        _stop(process)
        remaining: dict[str, bool] = {}
        try:
            remaining = {k: v for k, v in _dev_configurations(kubectl).items() if v}
        finally:
            for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
                kubectl("delete", kind, DEV_NAME, "--ignore-not-found")
    assert process.returncode == 0, f"vllm-fit serve --dev exited with {process.returncode}:\n{hook.log_tail()}"
    assert not remaining, f"vllm-fit serve --dev left {sorted(remaining)} {DEV_NAME} behind after stopping"


def _wait_until_effective(kubectl: Kubectl, namespaces: Namespaces, hook: Webhook) -> None:
    """The API server loads new webhook configurations asynchronously: retry server-side dry runs
    until the validating one denies TP=1 and the mutating one annotates TP=2."""
    tp1 = placed(manifest("a-deploy-create.yaml"), namespaces.enforce, "e2e-ready-probe")
    tp2 = placed(manifest("b-deploy-update-tp2.yaml"), namespaces.enforce, "e2e-ready-probe")

    def denies() -> Optional[str]:
        result = kubectl.apply(tp1, "--dry-run=server")
        return None if is_denial(result) else f"{result.returncode} {result.stderr.strip() or result.stdout.strip()}"

    def annotates() -> Optional[str]:
        result = kubectl.apply(tp2, "--dry-run=server", "-o", "json")
        if result.ok and vllm_annotations(result.json()):
            return None
        return f"{result.returncode} {result.stderr.strip() or 'no vllm-fit.io annotations'}"

    extra = ""
    if hook.mode == "local":
        extra = (f"\nThe API server must reach {hook.url} (set VLLM_FIT_DEV_HOST to this host's address as the "
                 f"cluster sees it; for kind, the gateway of the `kind` docker network)."
                 f"\nwebhook log:\n{hook.log_tail()}")
    try:
        poll("the validating webhook denying a TP=1 dry run", denies)
        poll("the mutating webhook annotating a TP=2 dry run", annotates)
    except pytest.fail.Exception as exc:
        raise pytest.fail.Exception(f"{exc}{extra}") from None
