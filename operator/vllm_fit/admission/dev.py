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
import tempfile
from pathlib import Path
from typing import Any, Optional

import aiohttp

from .certs import write_tls
from .config import WebhookConfig
from .kube import KubeClient, cluster_client
from .operator import run_webhook
from .webhooks import webhook_configurations

log = logging.getLogger("vllm_fit.admission")
DEV_NAME = "vllm-fit-dev"


async def _unregister(client: KubeClient, session: aiohttp.ClientSession, obj: dict[str, Any]) -> None:
    """Best effort: failurePolicy Ignore means a leftover never blocks the cluster, and the next run replaces it."""
    try:
        status = await client.delete(session, obj)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        status = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    if status not in (200, 202, 404):
        log.warning(json.dumps({"event": "dev-cleanup-failed", "kind": obj["kind"], "name": DEV_NAME,
                                "status": status, "fix": f"kubectl delete {obj['kind'].lower()} {DEV_NAME}"}))


async def run_dev(config: WebhookConfig, *, addr: str, port: int, health_port: int,
                  host: Optional[str] = None, client: Optional[KubeClient] = None) -> int:
    host = host or os.environ.get("VLLM_FIT_DEV_HOST", "127.0.0.1")
    client = client or cluster_client()
    with tempfile.TemporaryDirectory(prefix="vllm-fit-dev-") as tmp:
        tls = write_tls(Path(tmp), hosts=(host, "127.0.0.1", "localhost"))
        ca_bundle = base64.b64encode(tls.ca_pem).decode()
        validating, mutating = webhook_configurations(
            name=DEV_NAME, client_config=lambda path: {"url": f"https://{host}:{port}{path}", "caBundle": ca_bundle},
            exempt_namespaces=config.exempt_namespaces, failure_policy="Ignore", image_patterns=config.image_patterns,
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
            registered: list[dict[str, Any]] = []
            try:
                await asyncio.wait([asyncio.create_task(ready.wait()), server], return_when=asyncio.FIRST_COMPLETED)
                if server.done():
                    server.result()
                    return 1
                for obj in (validating, mutating):
                    registered.append(obj)  # a half-done create is cleaned up too
                    await client.apply(session, obj)
                log.info(json.dumps({"event": "dev-registered", "name": DEV_NAME, "url": f"https://{host}:{port}"}))
                await server
            finally:
                stop.set()
                for obj in registered:
                    await _unregister(client, session, obj)
                if registered:
                    log.info(json.dumps({"event": "dev-unregistered", "name": DEV_NAME}))
                if not server.done():
                    await asyncio.wait_for(server, timeout=10)
    return 0
