"""Just enough of a Kubernetes client for the webhook's own needs, with kopf's login rules.

`cluster_client()` finds credentials the way the webhook's kopf login does (the pod's service
account, else KUBECONFIG or ~/.kube/config, the files merged, the first value winning) and says in
one sentence what is missing. `wait_for_api()` asks the API server once, retrying a refused or
timed-out connection for a bounded time: `vllm-fit serve` calls it before starting kopf, so a
cluster that is not there ends the command with one line instead of minutes of retries.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import aiohttp
import yaml

from ..errors import VllmFitError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
IN_CLUSTER_SERVER = "https://kubernetes.default.svc"  # what kopf's service-account login dials


class ClusterUnreachable(Exception):
    """The API server did not answer within the wait (a failure to run, not bad input)."""


class KopfApiSession:
    """An aiohttp session over kopf's login (`kopf.ConnectionInfo`: the pod's service account, else
    KUBECONFIG). `connection()` returns the current ConnectionInfo (None before login); the session
    is made on first use, in the webhook's event loop, and remade when the credentials change.
    `limit` caps its open connections; `timeout`, when given, bounds every request."""

    def __init__(self, connection: Callable[[], Any], *, limit: int,
                 timeout: Optional[aiohttp.ClientTimeout] = None) -> None:
        self._connection = connection
        self._limit = limit
        self._timeout = timeout
        self._session: Optional[aiohttp.ClientSession] = None
        self._session_for: Any = None

    def session(self) -> tuple[aiohttp.ClientSession, str]:
        """(the session, the API server URL without a trailing slash); ConnectionError before login."""
        info = self._connection()
        if info is None:
            raise ConnectionError("not logged in to the Kubernetes API yet")
        if self._session is None or self._session_for is not info:
            if self._session is not None:
                asyncio.ensure_future(self._session.close())
            extra = {} if self._timeout is None else {"timeout": self._timeout}
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=info.as_ssl_context(), limit=self._limit),
                headers=info.as_http_headers(), auth=info.as_aiohttp_basic_auth(), **extra)
            self._session_for = info
        return self._session, str(info.server).rstrip("/")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class KubeClient:
    """The API server URL, TLS context and auth headers of one set of credentials."""

    def __init__(self, server: str, *, source: str, headers: Optional[dict[str, str]] = None,
                 ssl_context: Any = None, tmp: Optional[tempfile.TemporaryDirectory] = None) -> None:
        self.server = server.rstrip("/")
        self.source = source  # where the credentials came from, for messages
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.ssl = ssl_context
        self._tmp = tmp  # holds client key files written from *-data fields

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_service_account(cls, directory: Path = SERVICE_ACCOUNT) -> "KubeClient":
        token = (directory / "token").read_text().strip()
        context = ssl.create_default_context()
        if (directory / "ca.crt").exists():
            context.load_verify_locations(cafile=str(directory / "ca.crt"))
        return cls(IN_CLUSTER_SERVER, source=f"the pod's service account ({directory})",
                   headers={"Authorization": f"Bearer {token}"} if token else {}, ssl_context=context)

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str) -> "KubeClient":
        """`kubeconfig` as KUBECONFIG spells it: paths joined by os.pathsep, merged, first value wins."""
        paths = [Path(p.strip()).expanduser() for p in kubeconfig.split(os.pathsep) if p.strip()]
        shown = os.pathsep.join(map(str, paths))
        current: Optional[str] = None
        sections: dict[str, dict[str, Any]] = {"contexts": {}, "clusters": {}, "users": {}}
        for path in paths:
            try:
                config = yaml.safe_load(path.read_text()) or {}
            except FileNotFoundError:
                raise VllmFitError(f"no kubeconfig at {path}: set KUBECONFIG to your cluster's kubeconfig") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise VllmFitError(f"cannot read the kubeconfig {path}: {exc}") from None
            except yaml.YAMLError as exc:
                raise VllmFitError(f"the kubeconfig {path} is not valid YAML: {' '.join(str(exc).split())}") from None
            if not isinstance(config, dict):
                raise VllmFitError(f"the kubeconfig {path} is not a kubeconfig (a {type(config).__name__})")
            current = current or config.get("current-context")
            for section, entries in sections.items():
                key = section[:-1]  # contexts -> context
                for item in config.get(section) or []:
                    if isinstance(item, dict) and item.get("name") not in entries:
                        entries[item.get("name")] = item.get(key) or {}
        if not current:
            raise VllmFitError(f"the kubeconfig {shown} sets no current-context (kubectl config use-context NAME)")
        context = sections["contexts"].get(current)
        if context is None:
            raise VllmFitError(f"the kubeconfig {shown}: current-context {current!r} is not among its contexts")
        cluster = sections["clusters"].get(context.get("cluster"))
        if not cluster or not cluster.get("server"):
            raise VllmFitError(f"the kubeconfig {shown}: context {current!r} names no cluster with a server")
        user = sections["users"].get(context.get("user"), {}) or {}
        return cls._from_entries(cluster, user, source=f"the kubeconfig {shown} (context {current})")

    @classmethod
    def _from_entries(cls, cluster: Mapping[str, Any], user: Mapping[str, Any], *, source: str) -> "KubeClient":
        server = str(cluster["server"])
        headers: dict[str, str] = {}
        tmp = tempfile.TemporaryDirectory(prefix="vllm-fit-kube-")

        def write(name: str, data: str) -> str:
            path = Path(tmp.name) / name
            path.write_bytes(base64.b64decode(data))
            path.chmod(0o600)
            return str(path)

        context: Any = None
        try:
            if server.startswith("https"):
                context = ssl.create_default_context()
                if cluster.get("insecure-skip-tls-verify"):
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                elif cluster.get("certificate-authority-data"):
                    context.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
                elif cluster.get("certificate-authority"):
                    context.load_verify_locations(cafile=cluster["certificate-authority"])
                cert, key = user.get("client-certificate"), user.get("client-key")
                if user.get("client-certificate-data"):
                    cert = write("client.crt", user["client-certificate-data"])
                    key = write("client.key", user.get("client-key-data", ""))
                if cert and key:
                    context.load_cert_chain(cert, key)
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise VllmFitError(f"{source}: unusable TLS material ({' '.join(str(exc).split())})") from None
        token = user.get("token") or ((user.get("auth-provider") or {}).get("config") or {}).get("access-token")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif user.get("username") and user.get("password"):
            basic = base64.b64encode(f"{user['username']}:{user['password']}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        elif user.get("exec") and not user.get("client-certificate") and not user.get("client-certificate-data"):
            command = (user.get("exec") or {}).get("command", "an exec plugin")
            raise VllmFitError(f"{source}: the user authenticates through {command}, which vllm-fit does not run; "
                               f"use a kubeconfig with a token or a client certificate")
        return cls(server, source=source, headers=headers, ssl_context=context, tmp=tmp)

    # -- requests -------------------------------------------------------------------------

    def _url(self, obj: dict[str, Any]) -> str:
        plural = obj["kind"].lower() + "s"
        return f"{self.server}/apis/admissionregistration.k8s.io/v1/{plural}"

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
                body = " ".join((await response.text()).split())[:300]
                raise VllmFitError(f"the API server refused to register the {obj['kind']} "
                                   f"{obj['metadata']['name']}: HTTP {response.status} {body}")

    async def delete(self, session: aiohttp.ClientSession, obj: dict[str, Any]) -> int:
        async with session.delete(f"{self._url(obj)}/{obj['metadata']['name']}", ssl=self.ssl) as response:
            return response.status


def cluster_client(env: Optional[Mapping[str, str]] = None, service_account: Path = SERVICE_ACCOUNT) -> KubeClient:
    """The credentials kopf's login would use, or VllmFitError saying what is missing and the fix."""
    env = os.environ if env is None else env
    if (service_account / "token").exists():
        return KubeClient.from_service_account(service_account)
    kubeconfig = env.get("KUBECONFIG")
    default = Path("~/.kube/config").expanduser()
    if not kubeconfig and default.exists():
        kubeconfig = str(default)
    if not kubeconfig:
        raise VllmFitError(f"no Kubernetes credentials: not in a pod (no service account token in {service_account}) "
                           f"and no kubeconfig (KUBECONFIG is unset and {default} does not exist); set KUBECONFIG, "
                           f"or install the webhook in the cluster with the Helm chart")
    return KubeClient.from_kubeconfig(kubeconfig)


async def wait_for_api(client: KubeClient, wait_seconds: float = 20.0, request_timeout: float = 5.0) -> None:
    """Return once the API server answers `/api`; ClusterUnreachable after `wait_seconds` of refused or
    timed-out connections; VllmFitError at once when it answers but refuses the credentials."""
    deadline = time.monotonic() + wait_seconds
    delay, last = 0.5, "no answer"
    timeout = aiohttp.ClientTimeout(total=request_timeout)
    async with aiohttp.ClientSession(headers=client.headers, timeout=timeout) as session:
        while True:
            try:
                async with session.get(f"{client.server}/api", ssl=client.ssl) as response:
                    if response.status in (401, 403):
                        raise VllmFitError(f"the API server at {client.server} refused the credentials of "
                                           f"{client.source} (HTTP {response.status})")
                    if response.status < 500:
                        return
                    last = f"HTTP {response.status}"
            except aiohttp.ClientSSLError as exc:
                raise VllmFitError(f"TLS with the API server at {client.server} failed "
                                   f"({' '.join(str(exc).split())[:200]}); check {client.source}") from None
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                cause = getattr(exc, "os_error", None) or exc  # aiohttp's own text names its SSLContext object
                last = " ".join(str(cause).split())[:200] or type(exc).__name__
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ClusterUnreachable(f"cannot reach the Kubernetes API server at {client.server} "
                                         f"({last}) after {wait_seconds:g} s; is the cluster up, and does "
                                         f"{client.source} point at it?")
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 4.0)
