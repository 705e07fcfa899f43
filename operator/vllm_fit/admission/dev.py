"""`vllm-fit serve --dev`: serve on this host and register webhook configurations that point here.

The configurations (named `vllm-fit-dev`) carry the chart's rules, selectors and timeouts with
`clientConfig.url` and a CA made for this run; they are deleted when the server stops
(SIGINT/SIGTERM). failurePolicy is Ignore, so even a killed process cannot block the cluster.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import ssl
import tempfile
from pathlib import Path
from typing import Any, Optional

import aiohttp
import yaml

from ..errors import VllmFitError
from .certs import write_tls
from .config import WebhookConfig
from .operator import run_webhook
from .webhooks import webhook_configurations

log = logging.getLogger("vllm_fit.admission")
DEV_NAME = "vllm-fit-dev"


class KubeClient:
    """Just enough of the Kubernetes API for two cluster-scoped objects, from KUBECONFIG."""

    def __init__(self, kubeconfig: Optional[str] = None) -> None:
        path = Path(kubeconfig or os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]).expanduser()
        try:
            config = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise VllmFitError(f"no kubeconfig at {path} (set KUBECONFIG)") from None
        context_name = config.get("current-context")
        context = next((c["context"] for c in config.get("contexts", []) if c.get("name") == context_name), None)
        if context is None:
            raise VllmFitError(f"{path}: current-context {context_name!r} not found")
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next((u.get("user", {}) for u in config.get("users", []) if u["name"] == context.get("user")), {})
        self.server = cluster["server"].rstrip("/")
        self.headers = {"Content-Type": "application/json"}
        self._tmp = tempfile.TemporaryDirectory(prefix="vllm-fit-kube-")
        self.ssl: Any = None
        if self.server.startswith("https"):
            context_ssl = ssl.create_default_context()
            if cluster.get("insecure-skip-tls-verify"):
                context_ssl.check_hostname = False
                context_ssl.verify_mode = ssl.CERT_NONE
            elif cluster.get("certificate-authority-data"):
                context_ssl.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
            elif cluster.get("certificate-authority"):
                context_ssl.load_verify_locations(cafile=cluster["certificate-authority"])
            cert, key = user.get("client-certificate"), user.get("client-key")
            if user.get("client-certificate-data"):
                cert = self._write("client.crt", base64.b64decode(user["client-certificate-data"]))
                key = self._write("client.key", base64.b64decode(user["client-key-data"]))
            if cert and key:
                context_ssl.load_cert_chain(cert, key)
            self.ssl = context_ssl
        if user.get("token"):
            self.headers["Authorization"] = f"Bearer {user['token']}"

    def _write(self, name: str, data: bytes) -> str:
        path = Path(self._tmp.name) / name
        path.write_bytes(data)
        path.chmod(0o600)
        return str(path)

    async def apply(self, session: aiohttp.ClientSession, obj: dict[str, Any]) -> None:
        """Create, or replace the webhooks of a leftover from an earlier run (merge patch replaces lists)."""
        url = self._url(obj)
        named = f"{url}/{obj['metadata']['name']}"
        async with session.get(named, ssl=self.ssl) as existing:
            exists = existing.status == 200
        if exists:
            request = session.patch(named, data=json.dumps({"webhooks": obj["webhooks"]}), ssl=self.ssl,
                                    headers={"Content-Type": "application/merge-patch+json"})
        else:
            request = session.post(url, data=json.dumps(obj), ssl=self.ssl)
        async with request as response:
            if response.status >= 300:
                raise VllmFitError(f"could not register {obj['kind']}: {response.status} {await response.text()}")

    async def delete(self, session: aiohttp.ClientSession, obj: dict[str, Any]) -> None:
        async with session.delete(f"{self._url(obj)}/{obj['metadata']['name']}", ssl=self.ssl) as response:
            if response.status not in (200, 202, 404):
                log.warning(json.dumps({"event": "dev-cleanup-failed", "kind": obj["kind"], "status": response.status}))

    def _url(self, obj: dict[str, Any]) -> str:
        plural = obj["kind"].lower() + "s"
        return f"{self.server}/apis/admissionregistration.k8s.io/v1/{plural}"


async def run_dev(config: WebhookConfig, *, addr: str, port: int, health_port: int,
                  host: Optional[str] = None, kubeconfig: Optional[str] = None) -> int:
    host = host or os.environ.get("VLLM_FIT_DEV_HOST", "127.0.0.1")
    client = KubeClient(kubeconfig)
    with tempfile.TemporaryDirectory(prefix="vllm-fit-dev-") as tmp:
        tls = write_tls(Path(tmp), hosts=(host, "127.0.0.1", "localhost"))
        ca_bundle = base64.b64encode(tls.ca_pem).decode()
        validating, mutating = webhook_configurations(
            name=DEV_NAME, client_config=lambda path: {"url": f"https://{host}:{port}{path}", "caBundle": ca_bundle},
            exempt_namespaces=config.exempt_namespaces, failure_policy="Ignore",
            timeout_seconds=max(1, min(30, int(config.deadline_seconds) + 3)))
        stop = asyncio.Event()
        ready = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with aiohttp.ClientSession(headers=client.headers, timeout=aiohttp.ClientTimeout(total=15)) as session:
            server = asyncio.create_task(run_webhook(config, certfile=tls.cert_path, keyfile=tls.key_path, addr=addr,
                                                     port=port, health_port=health_port, stop_flag=stop,
                                                     ready_flag=ready))
            try:
                await asyncio.wait([asyncio.create_task(ready.wait()), server], return_when=asyncio.FIRST_COMPLETED)
                if server.done():
                    server.result()
                    return 1
                for obj in (validating, mutating):
                    await client.apply(session, obj)
                log.info(json.dumps({"event": "dev-registered", "name": DEV_NAME, "url": f"https://{host}:{port}"}))
                await server
            finally:
                stop.set()
                for obj in (validating, mutating):
                    await client.delete(session, obj)
                log.info(json.dumps({"event": "dev-unregistered", "name": DEV_NAME}))
                if not server.done():
                    await asyncio.wait_for(server, timeout=10)
    return 0
