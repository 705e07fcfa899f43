"""The HTTPS server for admission reviews, and the plain-HTTP health/metrics server.

`AdmissionServer` is a kopf WebhookServer (kopf's TLS set-up, kopf's request handling) that
changes three things a production webhook needs:
- certificates are reloaded in place when the mounted files change: the same SSL context
  gets the new chain, so the listener never closes and no request is dropped (kopf's own
  reload restarts the site);
- every body is checked to be an AdmissionReview before kopf sees it; anything else gets a
  400 with a reason, never a 500;
- every review is answered within the deadline: past it, or on an internal error, the
  request is admitted with a warning saying why (the configured failure policy of the
  webhook configuration still governs timeouts on the API server side).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import ssl
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Optional

import aiohttp.web
import kopf
from kopf._core.engines import admission as kopf_admission
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .metrics import WebhookMetrics

log = logging.getLogger("vllm_fit.admission")

MAX_BODY_BYTES = 16 * 1024 * 1024  # an AdmissionReview carries object and oldObject (etcd caps each ~1.5 MiB)


class BadReview(ValueError):
    pass


def validate_review(data: Any) -> dict[str, Any]:
    """Check the shape kopf relies on; raise BadReview with what is wrong."""
    if not isinstance(data, dict):
        raise BadReview("body is not a JSON object")
    if data.get("kind") != "AdmissionReview":
        raise BadReview(f"kind is {data.get('kind')!r}, not AdmissionReview")
    if data.get("apiVersion") not in ("admission.k8s.io/v1", "admission.k8s.io/v1beta1"):
        raise BadReview(f"apiVersion {data.get('apiVersion')!r} is not admission.k8s.io/v1")
    request = data.get("request")
    if not isinstance(request, dict):
        raise BadReview("request is missing or not an object")
    if not isinstance(request.get("uid"), str) or not request["uid"]:
        raise BadReview("request.uid is missing")
    resource = request.get("resource")
    if not isinstance(resource, dict) or not all(isinstance(resource.get(k), str) for k in ("group", "version", "resource")):
        raise BadReview("request.resource must have string group, version and resource")
    if not isinstance(request.get("userInfo"), dict):
        raise BadReview("request.userInfo is missing")
    if not isinstance(request.get("operation"), str):
        raise BadReview("request.operation is missing")
    new, old = request.get("object"), request.get("oldObject")
    if new is None and old is None:
        raise BadReview("request has neither object nor oldObject")
    for name, value in (("object", new), ("oldObject", old)):
        if value is not None and not isinstance(value, dict):
            raise BadReview(f"request.{name} is not an object")
        if isinstance(value, dict) and not isinstance(value.get("metadata", {}), dict):
            raise BadReview(f"request.{name}.metadata is not an object")
    return data


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def trim_for_review(data: dict[str, Any]) -> None:
    """Drop what no judgement reads and kopf would otherwise copy and diff on every call:
    managedFields and kubectl's last-applied copy of the whole object. Annotation paths stay
    valid for the mutating patch (the annotations map itself is kept)."""
    request = data["request"]
    for key in ("object", "oldObject"):
        obj = request.get(key)
        if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict):
            meta = obj["metadata"]
            meta.pop("managedFields", None)
            if isinstance(meta.get("annotations"), dict):
                meta["annotations"].pop(LAST_APPLIED, None)


def admit(data: dict[str, Any], warnings: tuple[str, ...] = ()) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": data["request"]["uid"], "allowed": True}
    if warnings:
        response["warnings"] = list(warnings)
    return {"apiVersion": data.get("apiVersion", "admission.k8s.io/v1"), "kind": "AdmissionReview",
            "response": response}


def admit_with_warning(data: dict[str, Any], warning: str) -> dict[str, Any]:
    return {
        "apiVersion": data.get("apiVersion", "admission.k8s.io/v1"),
        "kind": "AdmissionReview",
        "response": {"uid": data["request"]["uid"], "allowed": True, "warnings": [warning]},
    }


def _fingerprint(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"missing")
    return digest.hexdigest()


class AdmissionServer(kopf.WebhookServer):
    def __init__(self, *, deadline_seconds: float, metrics: WebhookMetrics, reload_interval: float = 10.0,
                 on_ready: Optional[Callable[[], None]] = None,
                 needs_review: Optional[Callable[[dict[str, Any], str], bool]] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.needs_review = needs_review
        self.deadline_seconds = deadline_seconds
        self.metrics = metrics
        self.reload_interval = reload_interval
        self.on_ready = on_ready

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        cadata, context = self._build_ssl()
        path = self.path.rstrip("/") if self.path else ""

        async def serve(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
            return await self._serve_review(fn, request)

        app = aiohttp.web.Application(client_max_size=MAX_BODY_BYTES)
        app.add_routes([aiohttp.web.post(f"{path}/{{id:.*}}", serve)])
        runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            port = self.port or self._allocate_free_port()
            site = aiohttp.web.TCPSite(runner, self.addr or None, port, ssl_context=context, reuse_address=True)
            await site.start()
            scheme = "http" if context is None else "https"
            host = self.host or self._get_accessible_addr(self.addr)
            config = kopf.WebhookClientConfig(url=self._build_url(scheme, host, port, self.path or ""))
            if cadata is not None:
                import base64

                config["caBundle"] = base64.b64encode(cadata).decode("ascii")
            log.info(json.dumps({"event": "listening", "url": self._build_url(scheme, self.addr or "*", port, "")}))
            if self.on_ready:
                self.on_ready()
            yield config
            await self._reload_certificates_forever(context)
        finally:
            await runner.cleanup()

    async def _reload_certificates_forever(self, context: Optional[ssl.SSLContext]) -> None:
        if context is None or self.certfile is None or self.pkeyfile is None:
            await asyncio.Event().wait()
            return
        files = [Path(self.certfile), Path(self.pkeyfile)]
        seen = _fingerprint(files)
        while True:
            await asyncio.sleep(self.reload_interval)
            current = _fingerprint(files)
            if current == seen:
                continue
            try:
                context.load_cert_chain(self.certfile, self.pkeyfile, self.password)
            except (OSError, ssl.SSLError) as exc:
                # Mid-rotation (cert written, key not yet): keep serving the old pair, retry next tick.
                log.warning(json.dumps({"event": "certificate-reload-failed", "error": str(exc)}))
                continue
            seen = current
            log.info(json.dumps({"event": "certificate-reloaded", "certfile": str(self.certfile)}))

    async def _serve_review(self, fn: kopf.WebhookFn, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        webhook = request.match_info.get("id")
        try:
            raw = await request.read()
            text = raw.decode("utf-8")
            data = validate_review(json.loads(text))
        except UnicodeDecodeError:
            self.metrics.errors.labels("bad-request").inc()
            return aiohttp.web.json_response({"error": "body is not UTF-8"}, status=400)
        except json.JSONDecodeError as exc:
            self.metrics.errors.labels("bad-request").inc()
            return aiohttp.web.json_response({"error": f"body is not JSON: {exc}"}, status=400)
        except BadReview as exc:
            self.metrics.errors.labels("bad-request").inc()
            return aiohttp.web.json_response({"error": f"not an AdmissionReview: {exc}"}, status=400)
        except RecursionError:
            self.metrics.errors.labels("bad-request").inc()
            return aiohttp.web.json_response({"error": "body is nested too deeply"}, status=400)
        except aiohttp.web.HTTPException:
            raise
        review_request = data["request"]
        subject = review_request["object"] if review_request.get("object") is not None else review_request["oldObject"]
        if review_request.get("subResource") or (self.needs_review is not None and not self.needs_review(subject, text)):
            # Subresources (scale, status) carry no launch; objects that never mention vLLM are
            # admitted untouched without the handler machinery.
            kind = (review_request.get("kind") or {}).get("kind", "") if isinstance(review_request.get("kind"), dict) else ""
            self.metrics.reviews.labels(webhook or "", str(kind), "none", "-", "allow").inc()
            return aiohttp.web.json_response(admit(data))
        trim_for_review(data)
        headers = dict(request.headers)
        sslpeer = request.transport.get_extra_info("peercert") if request.transport else None
        try:
            response = await asyncio.wait_for(fn(data, webhook=webhook, sslpeer=sslpeer, headers=headers),
                                              timeout=self.deadline_seconds)
        except asyncio.TimeoutError:
            self.metrics.errors.labels("deadline").inc()
            response = admit_with_warning(data, f"vllm-fit: not judged within {self.deadline_seconds:g}s; admitted")
        except kopf_admission.UnknownResourceError:
            # A kind whose API appeared after this process scanned discovery (e.g. the LWS or KServe
            # CRDs installed later). Never block it for that; a restart picks the API up.
            self.metrics.errors.labels("unknown-resource").inc()
            resource = review_request.get("resource") or {}
            log.warning(json.dumps({"event": "unknown-resource", "resource": resource}))
            response = admit_with_warning(
                data, f"vllm-fit: {resource.get('resource')}.{resource.get('group')} appeared after the webhook "
                      f"started; not checked until it restarts")
        except kopf_admission.AmbiguousResourceError as exc:
            return aiohttp.web.json_response({"error": str(exc)}, status=409)
        except kopf_admission.WebhookError as exc:
            self.metrics.errors.labels("bad-request").inc()
            return aiohttp.web.json_response({"error": str(exc)}, status=400)
        except Exception as exc:  # never let one review take the server down
            self.metrics.errors.labels("internal").inc()
            log.exception("review failed")
            response = admit_with_warning(data, f"vllm-fit: internal error ({type(exc).__name__}); admitted")
        return aiohttp.web.json_response(response)


class HealthServer:
    """/healthz (process up), /readyz (webhook listener up), /metrics on plain HTTP."""

    def __init__(self, metrics: WebhookMetrics, port: int, addr: str = "0.0.0.0") -> None:
        self.metrics = metrics
        self.port = port
        self.addr = addr
        self.ready = False
        self.started = time.time()
        self._runner: Optional[aiohttp.web.AppRunner] = None

    async def start(self) -> None:
        app = aiohttp.web.Application()
        app.add_routes([
            aiohttp.web.get("/healthz", self._healthz),
            aiohttp.web.get("/readyz", self._readyz),
            aiohttp.web.get("/metrics", self._metrics),
        ])
        self._runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await aiohttp.web.TCPSite(self._runner, self.addr, self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, _: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"status": "ok", "uptime_seconds": round(time.time() - self.started, 1)})

    async def _readyz(self, _: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"ready": self.ready}, status=200 if self.ready else 503)

    async def _metrics(self, _: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(body=generate_latest(self.metrics.registry),
                                    headers={"Content-Type": CONTENT_TYPE_LATEST})
