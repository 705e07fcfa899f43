"""List the cluster's Nodes through a kubeconfig (for `vllm-fit check --cluster`).

A thin adapter on the standard library: the kubeconfig's current context (or `context`),
its server and CA, and the user's client certificate, bearer token (or token file) or basic
credentials. exec/auth-provider plugins are not run; for those clusters export the Nodes with
`kubectl get nodes -o yaml` and pass the file with `--nodes FILE`.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Optional

import yaml

from ..errors import VllmFitError

TIMEOUT_SECONDS = 15.0
PAGE = 500


def _kubeconfig_path(path: Optional[str]) -> Path:
    if path:
        return Path(path)
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), "")
    return Path(first) if first else Path.home() / ".kube" / "config"


def _named(items: Any, name: str, what: str, source: Path) -> dict:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item.get(what) or {}
    raise VllmFitError(f"{source}: no {what} named {name!r}")


def _material(entry: dict, key: str, base: Path) -> tuple[Optional[str], Optional[bytes]]:
    """(path, data) for a kubeconfig `key` / `key-data` pair (paths relative to the file)."""
    data = entry.get(f"{key}-data")
    if data:
        return None, base64.b64decode(data)
    path = entry.get(key)
    if path:
        resolved = Path(path) if Path(path).is_absolute() else base / path
        return str(resolved), None
    return None, None


def list_nodes(kubeconfig: Optional[str] = None, context: Optional[str] = None) -> list[dict[str, Any]]:
    """Every Node of the kubeconfig's cluster (GET /api/v1/nodes, paginated)."""
    source = _kubeconfig_path(kubeconfig)
    try:
        config = yaml.safe_load(source.read_text()) or {}
    except OSError as exc:
        raise VllmFitError(f"cannot read kubeconfig {source}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise VllmFitError(f"kubeconfig {source} is not valid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise VllmFitError(f"kubeconfig {source} is not a mapping")
    name = context or config.get("current-context")
    if not name:
        raise VllmFitError(f"kubeconfig {source} has no current-context (give --context)")
    ctx = _named(config.get("contexts"), name, "context", source)
    cluster = _named(config.get("clusters"), ctx.get("cluster"), "cluster", source)
    user = _named(config.get("users"), ctx.get("user"), "user", source) if ctx.get("user") else {}
    server = str(cluster.get("server") or "").rstrip("/")
    if not server.startswith(("https://", "http://")):
        raise VllmFitError(f"kubeconfig {source}: cluster {ctx.get('cluster')!r} has no server URL")
    if user.get("exec") or user.get("auth-provider"):
        raise VllmFitError(f"kubeconfig {source}: user {ctx.get('user')!r} authenticates with a plugin, which "
                           f"vllm-fit does not run; save `kubectl get nodes -o yaml` and pass it with --nodes FILE")
    base = source.parent
    context_ssl = ssl.create_default_context()
    ca_path, ca_data = _material(cluster, "certificate-authority", base)
    if cluster.get("insecure-skip-tls-verify"):
        context_ssl.check_hostname = False
        context_ssl.verify_mode = ssl.CERT_NONE
    elif ca_path or ca_data:
        context_ssl.load_verify_locations(cafile=ca_path, cadata=ca_data.decode() if ca_data else None)
    headers = {"Accept": "application/json"}
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, cert_data = _material(user, "client-certificate", base)
        key_path, key_data = _material(user, "client-key", base)
        if cert_data:
            cert_path = os.path.join(tmp, "client.crt")
            Path(cert_path).write_bytes(cert_data)
        if key_data:
            key_path = os.path.join(tmp, "client.key")
            Path(key_path).write_bytes(key_data)
            os.chmod(key_path, 0o600)
        if cert_path:
            try:
                context_ssl.load_cert_chain(cert_path, key_path)
            except (OSError, ssl.SSLError) as exc:
                raise VllmFitError(f"kubeconfig {source}: cannot load the client certificate: {exc}") from None
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = Path(user["tokenFile"]).read_text().strip()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif user.get("username") and user.get("password"):
            basic = base64.b64encode(f"{user['username']}:{user['password']}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        nodes: list[dict[str, Any]] = []
        cont = ""
        while True:
            query = {"limit": str(PAGE)}
            if cont:
                query["continue"] = cont
            url = f"{server}/api/v1/nodes?{urllib.parse.urlencode(query)}"
            request = urllib.request.Request(url, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS, context=context_ssl) as response:
                    page = json.loads(response.read())
            except urllib.error.HTTPError as exc:
                raise VllmFitError(f"listing Nodes at {server} failed: HTTP {exc.code} {exc.reason}") from None
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                reason = getattr(exc, "reason", exc)
                raise VllmFitError(f"cannot reach the API server {server}: {reason}") from None
            except json.JSONDecodeError:
                raise VllmFitError(f"the API server {server} did not answer with JSON") from None
            nodes.extend(n for n in page.get("items") or [] if isinstance(n, dict))
            cont = (page.get("metadata") or {}).get("continue") or ""
            if not cont:
                return nodes


def nodes_from_file(path: str) -> list[dict[str, Any]]:
    """Nodes saved with `kubectl get nodes -o yaml|json` (a List, or Node documents)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise VllmFitError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise VllmFitError(f"{path} is not valid YAML/JSON: {exc}") from None
    nodes: list[dict[str, Any]] = []
    for doc in docs:
        if isinstance(doc, dict) and isinstance(doc.get("items"), list):
            nodes.extend(n for n in doc["items"] if isinstance(n, dict) and n.get("kind", "Node") == "Node")
        elif isinstance(doc, dict) and doc.get("kind") == "Node":
            nodes.append(doc)
    if not nodes:
        raise VllmFitError(f"{path} holds no Node objects")
    return nodes
