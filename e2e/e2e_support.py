"""Helpers for the e2e suite: a bounded kubectl, the reachability probe, the recorded manifests."""

from __future__ import annotations

import copy
import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
MANIFESTS = REPO / "tests" / "fixtures" / "admission" / "manifests"
DEV_NAME = "vllm-fit-dev"
MODE_LABEL = "vllm-fit.io/mode"
ANNOTATION_PREFIX = "vllm-fit.io/"

MODE = os.environ.get("E2E_MODE", "local")
REQUEST_TIMEOUT = int(os.environ.get("E2E_REQUEST_TIMEOUT", "20"))  # seconds, each kubectl call
READY_TIMEOUT = float(os.environ.get("E2E_READY_TIMEOUT", "60"))  # a new webhook configuration to take effect
PROBE_TIMEOUT = float(os.environ.get("E2E_PROBE_TIMEOUT", "5"))  # is anything answering at the API server


# --------------------------------------------------------------------------------------------
# kubectl


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return (f"kubectl {' '.join(self.args)} -> {self.returncode}\n"
                f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}")


@dataclass
class Kubectl:
    binary: str
    request_timeout: int = REQUEST_TIMEOUT

    def __call__(self, *args: str, input: Optional[str] = None, timeout: Optional[float] = None) -> Result:
        """Run kubectl; each request is limited to request_timeout, the whole command to `timeout`
        (default: request_timeout + 15 s; give more to commands with their own --timeout, like wait)."""
        request_timeout = max(self.request_timeout, int(timeout or 0))
        argv = [self.binary, f"--request-timeout={request_timeout}s", *args]
        try:
            done = subprocess.run(argv, input=input, capture_output=True, text=True,
                                  timeout=(timeout or self.request_timeout) + 15)
        except subprocess.TimeoutExpired as exc:
            why = f"\n(kubectl timed out after {exc.timeout} s)"
            return Result(list(args), 124, _text(exc.stdout), _text(exc.stderr) + why)
        return Result(list(args), done.returncode, done.stdout, done.stderr)

    def apply(self, obj: dict[str, Any], *extra: str) -> Result:
        return self("apply", "-f", "-", *extra, input=json.dumps(obj))

    def get(self, kind: str, name: str, namespace: Optional[str] = None) -> Optional[dict[str, Any]]:
        """The object, or None when it does not exist (any other failure raises)."""
        args = ["get", kind, name, "-o", "json"] + (["-n", namespace] if namespace else [])
        result = self(*args)
        if result.ok:
            return result.json()
        if "NotFound" in result.stderr or "not found" in result.stderr:
            return None
        raise AssertionError(str(result))


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


# --------------------------------------------------------------------------------------------
# Is there a cluster?


def kubeconfig_paths() -> tuple[str, list[Path]]:
    raw = os.environ.get("KUBECONFIG", "")
    if raw:
        return raw, [Path(p).expanduser() for p in raw.split(os.pathsep) if p]
    default = Path("~/.kube/config").expanduser()
    return f"{default} (KUBECONFIG unset)", [default]


def current_server(paths: list[Path]) -> str:
    """The server of the current context, merging the files as kubectl does (first one wins)."""
    current: Optional[str] = None
    contexts: dict[str, dict[str, Any]] = {}
    clusters: dict[str, dict[str, Any]] = {}
    for path in paths:
        if not path.exists():
            continue
        data = yaml.safe_load(path.read_text()) or {}
        current = current or data.get("current-context")
        for item in data.get("contexts") or []:
            contexts.setdefault(item.get("name"), item.get("context") or {})
        for item in data.get("clusters") or []:
            clusters.setdefault(item.get("name"), item.get("cluster") or {})
    if not current:
        raise ValueError("no current-context")
    if current not in contexts:
        raise ValueError(f"current-context {current!r} is not defined")
    cluster = clusters.get(contexts[current].get("cluster"))
    if not cluster or not cluster.get("server"):
        raise ValueError(f"context {current!r} names no cluster with a server")
    return str(cluster["server"]).rstrip("/")


def probe(server: str, timeout: float) -> Optional[str]:
    """None when something answers HTTP at `server` (any status: auth is kubectl's business), else why not.

    Loopback servers are reached directly, like kubectl (Go) does; others honour the proxy variables.
    """
    host = urllib.parse.urlsplit(server).hostname or ""
    handlers: list[Any] = [urllib.request.HTTPSHandler(context=_unverified())]
    if host in ("localhost", "::1") or host.startswith("127."):
        handlers.append(urllib.request.ProxyHandler({}))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(f"{server}/version", timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as exc:
        return str(exc.reason)
    except (OSError, ValueError) as exc:  # timeouts, resets, a malformed URL
        return f"{type(exc).__name__}: {exc}"


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# --------------------------------------------------------------------------------------------
# Manifests


def manifest(name: str) -> dict[str, Any]:
    return yaml.safe_load((MANIFESTS / name).read_text())


def placed(obj: dict[str, Any], namespace: str, name: Optional[str] = None) -> dict[str, Any]:
    """A copy of `obj` in `namespace` (and renamed), nothing else changed."""
    obj = copy.deepcopy(obj)
    obj["metadata"]["namespace"] = namespace
    if name:
        obj["metadata"]["name"] = name
    return obj


def vllm_annotations(obj: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in ((obj.get("metadata") or {}).get("annotations") or {}).items()
            if k.startswith(ANNOTATION_PREFIX)}


def is_denial(result: Result) -> bool:
    return not result.ok and "denied the request" in result.stderr and "vllm-fit" in result.stderr


def poll(what: str, check: Callable[[], Optional[str]], timeout: float = READY_TIMEOUT, every: float = 2.0) -> None:
    """Call `check` until it returns None (done); fail with its last answer after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = "never checked"
    while True:
        answer = check()
        if answer is None:
            return
        last = answer
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not after {timeout:.0f} s; last: {last}")
        time.sleep(every)




@dataclass
class Cluster:
    kubectl: Kubectl
    server: str
    kubeconfig: str
    mode: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])


@dataclass
class Namespaces:
    enforce: str  # no mode label: the cluster default (enforce)
    warn: str  # vllm-fit.io/mode=warn
    audit: str  # vllm-fit.io/mode=audit
    own: str  # the webhook's own namespace: never blocked
