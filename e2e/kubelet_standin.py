"""A stand-in for the kubelet's log endpoint, so that `pods/log` works on a cluster with no kubelet.

The API server answers `GET /api/v1/namespaces/NS/pods/POD/log` by calling the kubelet of the
pod's node at the node's address and `status.daemonEndpoints.kubeletEndpoint.Port`:
`https://ADDRESS:PORT/containerLogs/NS/POD/CONTAINER?tailLines=..&previous=..`. This serves
exactly that, over TLS, from texts the test sets. The API server here is started without
`--kubelet-certificate-authority`, so it does not verify the serving certificate (a
self-signed one is made per run); the request still goes through the real API server, its
authorization of `pods/log` and its parameters.

Use it only where the API server runs on this host (the loopback cluster of `.ci/run`).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubelet-standin")])
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "kubelet.crt", directory / "kubelet.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class KubeletStandIn:
    """`logs[(namespace, pod, container, previous)] = text`; `requests` records what was asked."""

    def __init__(self) -> None:
        self.logs: dict[tuple[str, str, str, bool], str] = {}
        self.requests: list[dict[str, object]] = []
        self._dir = tempfile.TemporaryDirectory(prefix="kubelet-standin-")
        cert, key = _self_signed(Path(self._dir.name))
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                parts = [unquote(p) for p in url.path.split("/") if p]
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                previous = query.get("previous") == "true"
                standin.requests.append({"path": url.path, "query": query})
                text: Optional[str] = None
                if len(parts) == 4 and parts[0] == "containerLogs":
                    text = standin.logs.get((parts[1], parts[2], parts[3], previous))
                if text is None:
                    self.send_error(404, "no such container log")
                    return
                if "tailLines" in query:
                    text = "".join(text.splitlines(keepends=True)[-int(query["tailLines"]):])
                body = text.encode()
                if "limitBytes" in query:
                    body = body[: int(query["limitBytes"])]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="kubelet-standin", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._dir.cleanup()
