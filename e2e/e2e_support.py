"""Helpers for the e2e suite: a bounded kubectl, the cluster script, the chart, TLS, the webhook server.

Nothing here is pytest-specific except `poll` (which fails the test) and the skip helpers; the
fixtures in conftest.py put these together. Every external call is bounded: kubectl always gets
--request-timeout and a subprocess timeout, processes are waited for with a limit.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "vllm-fit"
MANIFESTS = REPO / "tests" / "fixtures" / "admission" / "manifests"
E2E_FIXTURES = REPO / "tests" / "fixtures" / "e2e"
MODE_LABEL = "vllm-fit.io/mode"
ANNOTATION_PREFIX = "vllm-fit.io/"
FIELD_MANAGER = "vllm-fit-e2e"
RELEASE = "vllm-fit"  # the Helm release name the suite renders the chart with

MODE = os.environ.get("E2E_MODE", "local")
REQUEST_TIMEOUT = int(os.environ.get("E2E_REQUEST_TIMEOUT", "20"))  # seconds, each kubectl call
READY_TIMEOUT = float(os.environ.get("E2E_READY_TIMEOUT", "60"))  # a new webhook configuration to take effect
PROBE_TIMEOUT = float(os.environ.get("E2E_PROBE_TIMEOUT", "5"))  # is anything answering at the API server
CLUSTER_UP_TIMEOUT = float(os.environ.get("E2E_CLUSTER_UP_TIMEOUT", "300"))  # `cluster up`, shared CPUs included


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


Manifest = Union[dict[str, Any], list[dict[str, Any]]]


@dataclass
class Kubectl:
    """kubectl with a time limit on everything; `kubeconfig` None = kubectl's own default (KUBECONFIG)."""

    binary: str
    kubeconfig: Optional[str] = None
    request_timeout: int = REQUEST_TIMEOUT

    def as_user(self, kubeconfig: str) -> "Kubectl":
        return Kubectl(self.binary, kubeconfig, self.request_timeout)

    def __call__(self, *args: str, input: Optional[str] = None, timeout: Optional[float] = None) -> Result:
        """Run kubectl; each request is limited to request_timeout, the whole command to `timeout`
        (default: request_timeout + 15 s; give more to commands with their own --timeout, like wait)."""
        request_timeout = max(self.request_timeout, int(timeout or 0))
        argv = [self.binary, f"--request-timeout={request_timeout}s"]
        if self.kubeconfig:
            argv.append(f"--kubeconfig={self.kubeconfig}")
        argv += args
        try:
            done = subprocess.run(argv, input=input, capture_output=True, text=True,
                                  timeout=(timeout or self.request_timeout) + 15)
        except subprocess.TimeoutExpired as exc:
            why = f"\n(kubectl timed out after {exc.timeout} s)"
            return Result(list(args), 124, _text(exc.stdout), _text(exc.stderr) + why)
        return Result(list(args), done.returncode, done.stdout, done.stderr)

    def apply(self, obj: Manifest, *extra: str) -> Result:
        """`kubectl apply -f -` (client-side, as a user types it) of one object or a list."""
        return self("apply", "-f", "-", *extra, input=_stream(obj))

    def apply_server_side(self, obj: Manifest, *extra: str, manager: str = FIELD_MANAGER) -> Result:
        """Server-side apply (no last-applied annotation, so CRDs of any size fit)."""
        return self("apply", "--server-side", "--force-conflicts", f"--field-manager={manager}", "-f", "-", *extra,
                    input=_stream(obj))

    def get(self, kind: str, name: str, namespace: Optional[str] = None) -> Optional[dict[str, Any]]:
        """The object, or None when it does not exist (any other failure raises)."""
        args = ["get", kind, name, "-o", "json"] + (["-n", namespace] if namespace else [])
        result = self(*args)
        if result.ok:
            return result.json()
        if "NotFound" in result.stderr or "not found" in result.stderr:
            return None
        raise AssertionError(str(result))

    def items(self, kind: str, namespace: Optional[str] = None, selector: Optional[str] = None) -> list[dict[str, Any]]:
        args = ["get", kind, "-o", "json"] + (["-n", namespace] if namespace else []) + (["-l", selector] if selector else [])
        result = self(*args)
        assert result.ok, str(result)
        return result.json().get("items", [])

    def delete(self, kind: str, name: str, namespace: Optional[str] = None, wait: bool = False) -> Result:
        args = ["delete", kind, name, "--ignore-not-found", f"--wait={str(wait).lower()}"]
        return self(*args + (["-n", namespace] if namespace else []))


def _stream(obj: Manifest) -> str:
    items = obj if isinstance(obj, list) else [obj]
    return "\n---\n".join(json.dumps(item) for item in items)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


# --------------------------------------------------------------------------------------------
# Which cluster?


def kubeconfig_paths() -> tuple[str, list[Path]]:
    raw = os.environ.get("KUBECONFIG", "")
    return raw, [Path(p).expanduser() for p in raw.split(os.pathsep) if p]


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


class ClusterScript:
    """A script with `up [--controller-manager]` (prints the admin kubeconfig's path), `down [--wipe]`
    and `env` (prints `export PATH=<dir with a matching kubectl>:...`), like ../shared/k8s/cluster.

    `start(preinstall)` runs `up` on a thread, so that the control plane boots while other tests
    run, and then `kubectl create`s `preinstall` (YAML) in it: what the cluster had before vllm-fit
    came (e.g. KServe's CRDs, megabytes the API server takes a while to digest). `wait()` returns
    the kubeconfig; `preinstalled` is that create's Result (None: nothing asked or not got there)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.started = False
        self.preinstalled: Optional[Result] = None
        self._thread: Optional[threading.Thread] = None
        self._up: Optional[subprocess.Popen] = None
        self._kubeconfig: Optional[Path] = None
        self._error: Optional[str] = None

    def start(self, preinstall: Optional[str] = None) -> None:
        if self._thread is not None:
            return
        self.started = True
        self._thread = threading.Thread(target=self._boot, args=(preinstall,), daemon=True)
        self._thread.start()

    def _boot(self, preinstall: Optional[str]) -> None:
        try:
            self._up = subprocess.Popen([str(self.path), "up", "--controller-manager"], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
            try:
                out, err = self._up.communicate(timeout=CLUSTER_UP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._up.kill()
                out, err = self._up.communicate()
                self._error = f"{self.path} up: not ready after {CLUSTER_UP_TIMEOUT:.0f} s\n{err}"
                return
            if self._up.returncode != 0:
                self._error = f"{self.path} up --controller-manager exited with {self._up.returncode}:\n{err}"
                return
            lines = [line.strip() for line in out.splitlines() if line.strip()]
            if not lines or not Path(lines[-1]).is_file():
                self._error = f"{self.path} up printed no kubeconfig path: {out!r}"
                return
            self._kubeconfig = Path(lines[-1])
            binary = self.kubectl() if preinstall else None
            if preinstall and binary:
                self.preinstalled = Kubectl(binary, str(self._kubeconfig))("create", "-f", "-", input=preinstall,
                                                                          timeout=240)
        except Exception as exc:  # noqa: BLE001 - reported by wait()
            self._error = f"{self.path} up: {type(exc).__name__}: {exc}"

    def wait(self) -> Path:
        """The kubeconfig once `up` (and any preinstall) is done; RuntimeError if it failed."""
        self.start()
        assert self._thread is not None
        self._thread.join(timeout=CLUSTER_UP_TIMEOUT + 300)
        if self._thread.is_alive():
            raise RuntimeError(f"{self.path} up: still running after {CLUSTER_UP_TIMEOUT + 300:.0f} s")
        if self._error or self._kubeconfig is None:
            raise RuntimeError(self._error or "no kubeconfig")
        return self._kubeconfig

    def kubectl(self) -> Optional[str]:
        """The kubectl that `env` puts first on PATH, if there is one."""
        done = subprocess.run([str(self.path), "env"], capture_output=True, text=True, timeout=120)
        for line in done.stdout.splitlines():
            if line.startswith("export PATH="):
                first = line.split("=", 1)[1].split(":", 1)[0].strip("'\"")
                candidate = Path(first) / "kubectl"
                if candidate.is_file() and os.access(candidate, os.X_OK):
                    return str(candidate)
        return None

    def stop(self) -> str:
        """`down --wipe`; returns its stderr (empty when all went well)."""
        if not self.started:
            return ""
        if self._up is not None and self._up.poll() is None:
            self._up.kill()
            self._up.wait(timeout=30)
        if self._thread is not None:
            self._thread.join(timeout=60)
        done = subprocess.run([str(self.path), "down", "--wipe"], capture_output=True, text=True, timeout=180)
        self.started = False
        return done.stderr if done.returncode else ""


def cluster_script_from_env() -> tuple[Optional[str], Optional[Path]]:
    """VLLM_FIT_E2E_CLUSTER as given, and the script it names (relative to the working directory,
    then to the repository), or None when it names nothing there."""
    raw = os.environ.get("VLLM_FIT_E2E_CLUSTER", "").strip()
    if not raw:
        return None, None
    for base in (Path.cwd(), REPO):
        candidate = (base / raw).resolve() if not Path(raw).is_absolute() else Path(raw)
        if candidate.is_file():
            return raw, candidate
    return raw, None


# --------------------------------------------------------------------------------------------
# Manifests

# Published CRDs (tests/fixtures/e2e/SOURCE.md), file -> CRD name. KServe's are in the cluster before
# the webhook is installed (with a cluster script they are created while tests/ runs: the API
# server takes tens of seconds over their schemas); LWS's comes while the webhook runs.
PREINSTALLED_CRDS = {
    "kserve-v0.20.0-inferenceservices.crd.yaml.xz": "inferenceservices.serving.kserve.io",
    "kserve-v0.20.0-llminferenceservices.crd.yaml.xz": "llminferenceservices.serving.kserve.io",
}
LATE_CRDS = {
    "lws-v0.10.0-leaderworkersets.crd.yaml.xz": "leaderworkersets.leaderworkerset.x-k8s.io",
}


def manifest(name: str) -> dict[str, Any]:
    """A recorded admission manifest (tests/fixtures/admission/manifests/NAME)."""
    return yaml.safe_load((MANIFESTS / name).read_text())


def e2e_fixture_text(name: str) -> str:
    """tests/fixtures/e2e/NAME as text (.yaml, or .yaml.xz for the large published CRDs: hand those
    to kubectl as they are, parsing megabytes of schema in Python takes long)."""
    path = E2E_FIXTURES / name
    if name.endswith(".xz"):
        import lzma

        return lzma.decompress(path.read_bytes()).decode()
    return path.read_text()


def e2e_fixture(name: str) -> list[dict[str, Any]]:
    """Every object of tests/fixtures/e2e/NAME."""
    return [doc for doc in yaml.safe_load_all(e2e_fixture_text(name)) if doc]


def placed(obj: dict[str, Any], namespace: Optional[str], name: Optional[str] = None) -> dict[str, Any]:
    """A copy of `obj` in `namespace` (None: cluster-scoped) and renamed, nothing else changed."""
    obj = copy.deepcopy(obj)
    if namespace is None:
        obj["metadata"].pop("namespace", None)
    else:
        obj["metadata"]["namespace"] = namespace
    if name:
        obj["metadata"]["name"] = name
    return obj


def vllm_annotations(obj: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in ((obj.get("metadata") or {}).get("annotations") or {}).items()
            if k.startswith(ANNOTATION_PREFIX)}


def is_denial(result: Result) -> bool:
    """kubectl failed because vllm-fit's validating webhook said no (not because it could not be called)."""
    return (not result.ok and "denied the request" in result.stderr and "vllm-fit" in result.stderr
            and "failed calling webhook" not in result.stderr)


def webhook_call_failed(result: Result) -> bool:
    """kubectl failed because the API server could not call a vllm-fit webhook (failurePolicy Fail)."""
    return not result.ok and "failed calling webhook" in result.stderr and "vllm-fit.io" in result.stderr


def warnings_of(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Warning:") and "vllm-fit" in line]


def poll(what: str, check: Callable[[], Optional[str]], timeout: float = READY_TIMEOUT, every: float = 0.5) -> None:
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


# --------------------------------------------------------------------------------------------
# TLS for a webhook server on this host


class ServingTls:
    """A CA and a serving certificate for `host` (an IP SAN for addresses), as files the server reads.

    `rotate()` issues a new leaf from the same CA (what cert-manager does on renewal);
    `new_ca()` makes a second CA (for CA rotation: publish both in caBundle, then switch the leaf)."""

    def __init__(self, directory: Path, host: str) -> None:
        from vllm_fit.admission.certs import make_ca

        self.directory = directory
        self.host = host
        directory.mkdir(parents=True, exist_ok=True)
        self.cert_path = directory / "tls.crt"
        self.key_path = directory / "tls.key"
        self.ca_key, self.ca_cert = make_ca("vllm-fit-e2e-ca", days=1)
        self.rotate()

    @property
    def ca_pem(self) -> str:
        from vllm_fit.admission.certs import pem

        return pem(self.ca_cert).decode()

    def new_ca(self) -> tuple[Any, Any]:
        from vllm_fit.admission.certs import make_ca

        return make_ca(f"vllm-fit-e2e-ca-{uuid.uuid4().hex[:4]}", days=1)

    def rotate(self, ca: Optional[tuple[Any, Any]] = None) -> str:
        """Write a new leaf (signed by `ca`, default the current CA, which it then becomes);
        returns its SHA-256 fingerprint. Files are replaced atomically (rename), key first."""
        from vllm_fit.admission.certs import key_pem, make_serving_cert, pem

        if ca is not None:
            self.ca_key, self.ca_cert = ca
        hosts = list(dict.fromkeys([self.host, "127.0.0.1", "localhost"]))
        key, cert = make_serving_cert(self.ca_key, self.ca_cert, hosts, days=1)
        for path, data in ((self.key_path, key_pem(key)), (self.cert_path, pem(cert))):
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.chmod(0o600)
            tmp.replace(path)
        return fingerprint(pem(cert))


def fingerprint(cert_pem: bytes) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_pem.decode())).hexdigest()


def served_fingerprint(host: str, port: int, timeout: float = 5) -> Optional[str]:
    """SHA-256 of the certificate a TLS server presents now, or None when nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with _unverified().wrap_socket(sock, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    return hashlib.sha256(der).hexdigest() if der else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# The chart


def helm_template(values: dict[str, Any], namespace: str, release: str = RELEASE,
                  helm: Optional[str] = None) -> list[dict[str, Any]]:
    """`helm template` of the repository's chart with `values` (a values file, so nested keys work)."""
    import tempfile

    binary = helm or os.environ.get("HELM") or "helm"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="e2e-values-") as handle:
        yaml.safe_dump(values, handle)
        handle.flush()
        done = subprocess.run([binary, "template", release, str(CHART), "--namespace", namespace, "-f", handle.name],
                              capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"helm template failed:\n{done.stderr}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def merge_values(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_values(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# The chart objects the suite applies: what a webhook running outside the cluster needs. The
# Deployment, Service, PodDisruptionBudget and TLS Secret are for an in-cluster server (no kubelet
# here to run it; e2e/kind.sh installs the whole chart).
APPLIED_KINDS = ("ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                 "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")


# --------------------------------------------------------------------------------------------
# The webhook server on this host


def token_kubeconfig(admin: Kubectl, namespace: str, service_account: str, path: Path,
                     duration: str = "3h") -> Path:
    """A kubeconfig that authenticates as the ServiceAccount (a TokenRequest token), for the
    admin's current cluster: what the chart's pod would run as."""
    token = admin("create", "token", service_account, "-n", namespace, f"--duration={duration}")
    assert token.ok, str(token)
    view = admin("config", "view", "--raw", "--minify", "-o", "json")
    assert view.ok, str(view)
    cluster = view.json()["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": f"system:serviceaccount:{namespace}:{service_account}",
                   "user": {"token": token.stdout.strip()}}],
        "contexts": [{"name": "sa", "context": {"cluster": "cluster", "namespace": namespace,
                                                "user": f"system:serviceaccount:{namespace}:{service_account}"}}],
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@dataclass
class ServerProcess:
    """`vllm-fit serve` on this host: the same command the chart's Deployment runs, with the
    ConfigMap's config file, the ServiceAccount's credentials and a certificate for `host`."""

    workdir: Path
    host: str
    port: int
    health_port: int
    tls: ServingTls
    kubeconfig: Path
    config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    process: Optional[subprocess.Popen] = None
    starts: int = 0
    started_at: float = 0.0  # time.monotonic() of the last start

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / f"serve-{self.starts}.log"

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("serve-*.log"),
                                                                       key=lambda p: p.stat().st_mtime))

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def command(self) -> list[str]:
        config_file = self.workdir / "config.yaml"
        config_file.write_text(yaml.safe_dump(self.config))
        loopback = self.host.startswith("127.") or self.host in ("localhost", "::1")
        return [sys.executable, "-m", "vllm_fit", "serve", "--config", str(config_file),
                "--addr", "127.0.0.1" if loopback else "0.0.0.0", "--port", str(self.port),
                "--health-port", str(self.health_port), "--tls-cert-file", str(self.tls.cert_path),
                "--tls-key-file", str(self.tls.key_path), "--cert-reload-seconds", "1"]

    def start(self, wait: bool = True) -> None:
        assert not self.running, "already running"
        self.starts += 1
        # Not the developer's KUBECONFIG: the ServiceAccount's. No Hub: bundled models only.
        env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_FIT_")}
        env.update({"KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1", "VLLM_FIT_HUB": "0",
                    "HF_HUB_OFFLINE": "1", "VLLM_FIT_CACHE_DIR": str(self.workdir / "cache"), **self.env})
        self.started_at = time.monotonic()
        with self.log.open("w") as out:
            self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        if wait:
            self.wait_ready()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> Optional[str]:
        """None when /readyz says ready, else why not."""
        if self.process is None:
            return "not started"
        if self.process.poll() is not None:
            pytest.fail(f"vllm-fit serve exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                    f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as response:
                return None if response.status == 200 else f"/readyz {response.status}"
        except urllib.error.HTTPError as exc:
            return f"/readyz {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return f"/readyz: {exc}"

    def wait_ready(self, timeout: float = 90) -> None:
        poll("vllm-fit serve to be ready (/readyz)", self.ready, timeout=timeout, every=0.25)

    def stop(self, timeout: float = 20) -> Optional[int]:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status (None if never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def metrics(self) -> str:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"http://127.0.0.1:{self.health_port}/metrics", timeout=5) as response:
            return response.read().decode()


@contextlib.contextmanager
def restoring(*actions: Callable[[], Any]) -> Iterator[None]:
    """Run `actions` on the way out, even after a failure, and fail only for the first error."""
    try:
        yield
    finally:
        errors = []
        for action in actions:
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - every restore step gets its chance
                errors.append(exc)
        if errors:
            raise errors[0]


@dataclass
class Cluster:
    kubectl: Kubectl
    server: str
    kubeconfig: str
    mode: str
    source: str  # how the suite found it: "VLLM_FIT_E2E_CLUSTER=..." or "KUBECONFIG=..."
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])


@dataclass
class Namespaces:
    enforce: str  # no mode label: the cluster default (enforce)
    warn: str  # vllm-fit.io/mode=warn
    audit: str  # vllm-fit.io/mode=audit
    own: str  # the webhook's own (release) namespace: never blocked
