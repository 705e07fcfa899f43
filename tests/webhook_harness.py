"""Run the real webhook for tests: `vllm-fit serve` as a process, real TLS, real AdmissionReviews.

kopf asks the API server for resource discovery before it serves webhooks, so a kmock
Kubernetes scaffold (discovery only, nothing else) stands in for the API server.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import kmock
import yaml
from kmock._internal.apps import Server

from vllm_fit.admission.certs import write_tls
from vllm_fit.admission.handlers import RESOURCES

KINDS = {
    "pods": "Pod", "replicationcontrollers": "ReplicationController", "deployments": "Deployment", "statefulsets": "StatefulSet", "replicasets": "ReplicaSet",
    "daemonsets": "DaemonSet", "jobs": "Job", "cronjobs": "CronJob", "leaderworkersets": "LeaderWorkerSet",
    "inferenceservices": "InferenceService", "servingruntimes": "ServingRuntime",
    "clusterservingruntimes": "ClusterServingRuntime", "llminferenceservices": "LLMInferenceService",
    "workspaces": "Workspace",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DiscoveryApi:
    """A kmock Kubernetes API on a thread of its own, answering discovery for our resources.

    `stateful=True` uses kmock's emulator (objects can be created, read and deleted), which the
    --dev registration test needs.
    """

    def __init__(self, stateful: bool = False, configmaps: tuple[dict, ...] = (),
                 namespaces: Optional[dict[str, dict[str, str]]] = None, nodes: Optional[tuple[dict, ...]] = None
                 ) -> None:
        # ConfigMaps the API serves (GET by namespace and name), for the webhook's ConfigMap reads.
        self.configmaps = configmaps
        # Nodes the API lists and watches (None: no nodes resource at all), for the GPU inventory.
        self.nodes = nodes
        self.stateful = stateful or bool(configmaps) or nodes is not None
        self.namespaces = namespaces or {}  # name -> labels, served on GET /api/v1/namespaces/<name>
        self.url: Optional[str] = None
        self._loop = asyncio.new_event_loop()
        self._stop: Optional[asyncio.Event] = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        api_class = kmock.KubernetesEmulator if self.stateful else kmock.KubernetesScaffold
        async with api_class() as scaffold:
            for plural, kind in (("validatingwebhookconfigurations", "ValidatingWebhookConfiguration"),
                                 ("mutatingwebhookconfigurations", "MutatingWebhookConfiguration")):
                scaffold.resources[f"admissionregistration.k8s.io/v1/{plural}"] = {
                    "kind": kind, "namespaced": False, "verbs": ["get", "list", "create", "patch", "delete"]}
            scaffold.resources["v1/configmaps"] = {"kind": "ConfigMap", "namespaced": True,
                                                   "verbs": ["get", "list", "create"]}
            # kopf's namespace observer waits for this resource in discovery before any watch starts.
            scaffold.resources["v1/namespaces"] = {"kind": "Namespace", "namespaced": False, "verbs": ["get", "list"]}
            scaffold.resources["v1/events"] = {"kind": "Event", "namespaced": True,
                                               "verbs": ["get", "list", "create", "patch"]}
            if self.nodes is not None:
                scaffold.resources["v1/nodes"] = {"kind": "Node", "namespaced": False,
                                                   "verbs": ["get", "list", "watch", "create", "delete"]}
                for node in self.nodes:
                    scaffold.objects["v1/nodes", None, node["metadata"]["name"]] = node
            for cm in self.configmaps:
                scaffold.objects["v1/configmaps", cm["metadata"]["namespace"], cm["metadata"]["name"]] = cm
            for name, labels in self.namespaces.items():
                scaffold[f"get /api/v1/namespaces/{name}"] << {
                    "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
            for group, version, plural in RESOURCES:
                key = f"{group}/{version}/{plural}" if group else f"{version}/{plural}"
                scaffold.resources[key] = {"kind": KINDS[plural], "namespaced": plural != "clusterservingruntimes",
                                           "verbs": ["get", "list", "watch", "create", "update", "patch"]}
            async with Server(scaffold) as server:
                self.url = str(server.url)
                self._ready.set()
                await self._stop.wait()

    def start(self) -> "DiscoveryApi":
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("the discovery API did not start")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def create(self, obj: dict[str, Any]) -> None:
        """Store an object in the stateful API as given (its uid included)."""
        import urllib.request

        group_version = obj["apiVersion"]
        plural = next(p for p, k in {**KINDS, "configmaps": "ConfigMap", "nodes": "Node"}.items()
                      if k == obj["kind"])
        base = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
        namespace = obj["metadata"].get("namespace")
        url = f"{self.url.rstrip('/')}{base}{f'/namespaces/{namespace}' if namespace else ''}/{plural}"
        request = urllib.request.Request(url, data=json.dumps(obj).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status in (200, 201), response.status

    def get(self, path: str) -> Any:
        """GET a path of the API (e.g. /apis/apps/v1/namespaces/x/deployments/y) as JSON."""
        import urllib.request

        with urllib.request.urlopen(f"{self.url.rstrip('/')}{path}", timeout=10) as response:
            return json.loads(response.read())

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": {"token": "test-token"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        }))
        return path


class Webhook:
    """`vllm-fit serve` in a subprocess with its own certificates, config and ports."""

    def __init__(self, workdir: Path, kubeconfig: Path, config: dict[str, Any], env: Optional[dict[str, str]] = None,
                 cert_reload_seconds: float = 10.0) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.tls = write_tls(workdir / "tls")
        self.trusted_ca_pem = self.tls.ca_pem  # tests that rotate the certificate add the new CA
        self.port, self.health_port = free_port(), free_port()
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HF_HUB_DISABLE_TELEMETRY": "1", **(env or {})}
        self.cert_reload_seconds = cert_reload_seconds
        self.process: Optional[subprocess.Popen] = None
        self.log_path = workdir / "serve.log"

    def start(self, timeout: float = 40.0) -> "Webhook":
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vllm_fit", "serve", "--config", str(self.workdir / "config.yaml"),
             "--addr", "127.0.0.1", "--port", str(self.port), "--health-port", str(self.health_port),
             "--tls-cert-file", str(self.tls.cert_path), "--tls-key-file", str(self.tls.key_path),
             "--cert-reload-seconds", str(self.cert_reload_seconds)],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vllm-fit serve exited: {self.log_path.read_text()[-3000:]}")
            try:
                status, _ = self.health("/readyz")
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"vllm-fit serve not ready: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if hasattr(self, "_log"):
            self._log.close()

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.trusted_ca_pem.decode())

    def post(self, path: str, body: Any, timeout: float = 10.0) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ssl_context(), timeout=timeout)
        try:
            conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode(errors="replace")

    def health(self, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.health_port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()


FIXTURES = Path(__file__).parent / "fixtures" / "admission"


def deployment_review(obj: dict[str, Any]) -> dict[str, Any]:
    """An AdmissionReview that creates the Deployment `obj` in namespace llm."""
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": str(uuid.uuid4()), "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "namespace": "llm", "operation": "CREATE", "userInfo": {"username": "tester"}, "object": obj,
        "oldObject": None, "dryRun": False}}


def recorded(name_prefix: str) -> dict[str, Any]:
    (path,) = [p for p in FIXTURES.glob(f"{name_prefix}-*.json")]
    return json.loads(path.read_text())


def all_recorded() -> list[Path]:
    return sorted(FIXTURES.glob("[0-9][0-9]-*.json"))
