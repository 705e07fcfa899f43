"""The HTTPS server for admission reviews, and the health/metrics server.

`AdmissionServer` is a kopf WebhookServer (kopf's TLS set-up, kopf's request handling) that
changes what a production webhook needs:
- certificates are reloaded in place when the mounted files change: the same SSL context
  gets the new chain, so the listener never closes and no request is dropped (kopf's own
  reload restarts the site); TLS 1.2 is the minimum;
- its own accept loop: at most `max_connections` open (more are closed at once, before TLS),
  TLS handshakes, headers and bodies each within a timeout, idle keep-alive connections closed,
  request bodies read into one buffer against a process-wide byte budget and freed (and
  given back to the OS) when the client goes away;
- every body is decoded on a worker thread within a size/complexity budget before kopf sees
  it; anything that is not an AdmissionReview gets a 400 with a reason, an AdmissionReview
  past the budget an answer by `over_budget_policy`;
- every review is answered within the deadline: past it, or on an internal error, by
  `internal_error_policy` (deny in enforce mode by default), never a silent admission.

The AdmissionReview bodies themselves (validation, trimming, admit/deny answers) are envelope.py's.

`HealthServer` answers /healthz, /readyz and /metrics from a thread and event loop of its own,
so probes are answered while a review runs; /healthz fails when the review loop has stalled.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Optional

import aiohttp.web
import kopf
from aiohttp.web_protocol import RequestHandler
from kopf._core.engines import admission as kopf_admission
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .config import WebhookConfig
from .envelope import (BadReview, admit, admit_with_warning, deny, trim_for_review, validate_review,
                       with_forbidden_reason)
from .handlers import internal_error_text
from .limits import ByteBudget, Inspection, Trimmer, inspect_body
from .metrics import WebhookMetrics

log = logging.getLogger("vllm_fit.admission")

TLS_HANDSHAKE_TIMEOUT_SECONDS = 10.0
_READ_CHUNK = 64 * 1024


def _fingerprint(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"missing")
    return digest.hexdigest()


class _Connection(RequestHandler):
    """aiohttp's per-connection protocol, plus a timeout on a request's headers (aiohttp has
    none: a client sending one byte a second would hold the connection forever) and a future
    the accept loop waits on to know the connection is gone."""

    def __init__(self, manager: Any, *, header_timeout: float, on_timeout: Callable[[str], None],
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.header_timeout = header_timeout
        self.on_timeout = on_timeout
        self.header_timer: Optional[asyncio.TimerHandle] = None
        self.closed: asyncio.Future = asyncio.get_event_loop().create_future()

    def data_received(self, data: bytes) -> None:
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:
            self._cancel_header_timer()
        elif self.header_timer is None and self._current_request is None and not self._messages and data:
            # The first bytes of a request's headers: all of them must follow within the timeout.
            self.header_timer = asyncio.get_event_loop().call_later(self.header_timeout, self._headers_too_slow, count)

    def _headers_too_slow(self, count: int) -> None:
        self.header_timer = None
        if self._request_count == count and self.transport is not None:
            self.on_timeout("header-timeout")
            self.force_close()

    def _cancel_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)
        if not self.closed.done():
            self.closed.set_result(None)


class AdmissionServer(kopf.WebhookServer):
    def __init__(self, *, config: WebhookConfig, metrics: WebhookMetrics, reload_interval: float = 10.0,
                 on_ready: Optional[Callable[[], None]] = None,
                 needs_review: Optional[Callable[[dict[str, Any], str], bool]] = None,
                 extra_contexts: Optional[list[ssl.SSLContext]] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.extra_contexts = list(extra_contexts or [])  # e.g. /metrics over TLS: rotated together
        self.config = config
        self.needs_review = needs_review
        self.deadline_seconds = config.deadline_seconds
        self.metrics = metrics
        self.reload_interval = reload_interval
        self.on_ready = on_ready
        self.budget = ByteBudget(config.max_inflight_body_bytes)
        self._budget_freed: Optional[asyncio.Condition] = None
        self.open_connections = 0
        # One body decoded at a time: a document of tiny objects decodes to ~20x its size.
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vllm-fit-decode")
        self.ssl_context: Optional[ssl.SSLContext] = None
        self.trimmer = Trimmer()

    def _build_ssl(self) -> tuple[Optional[bytes], Optional[ssl.SSLContext]]:
        cadata, context = super()._build_ssl()
        if context is not None:
            context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ssl_context = context
        return cadata, context

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        cadata, context = self._build_ssl()
        path = self.path.rstrip("/") if self.path else ""
        loop = asyncio.get_running_loop()
        self._budget_freed = asyncio.Condition()

        async def serve(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
            return await self._serve_review(fn, request)

        app = aiohttp.web.Application()
        app.add_routes([aiohttp.web.post(f"{path}/{{id:.*}}", serve)])
        # keepalive_timeout closes idle connections (also those that never send a byte);
        # lingering_time=0: a request whose body was not read closes its connection.
        handler_options = {"keepalive_timeout": self.config.idle_timeout_seconds, "lingering_time": 0,
                           "access_log": None}
        runner = aiohttp.web.AppRunner(app, handle_signals=False, **handler_options)
        await runner.setup()
        manager = runner.server
        assert manager is not None

        def on_timeout(stage: str) -> None:
            self.metrics.connections_closed.labels(stage).inc()

        def factory() -> _Connection:
            return _Connection(manager, loop=loop, header_timeout=self.config.header_timeout_seconds,
                               on_timeout=on_timeout, **handler_options)

        port = self.port or self._allocate_free_port()
        listener = _listen(self.addr or "0.0.0.0", port)
        accepting = asyncio.create_task(self._accept_forever(listener, factory, context))
        try:
            scheme = "http" if context is None else "https"
            host = self.host or self._get_accessible_addr(self.addr)
            config = kopf.WebhookClientConfig(url=self._build_url(scheme, host, port, self.path or ""))
            if cadata is not None:
                config["caBundle"] = base64.b64encode(cadata).decode("ascii")
            log.info(json.dumps({"event": "listening", "url": self._build_url(scheme, self.addr or "*", port, "")}))
            if self.on_ready:
                self.on_ready()
            yield config
            await self._reload_certificates_forever(context)
        finally:
            accepting.cancel()
            listener.close()
            await runner.cleanup()
            self._decoder.shutdown(wait=False, cancel_futures=True)

    async def _accept_forever(self, listener: socket.socket, factory: Callable[[], _Connection],
                              context: Optional[ssl.SSLContext]) -> None:
        loop = asyncio.get_running_loop()
        connections: set[asyncio.Task] = set()
        try:
            while True:
                try:
                    sock, _ = await loop.sock_accept(listener)
                except OSError as exc:  # EMFILE and friends: back off, keep listening
                    log.warning(json.dumps({"event": "accept-failed", "error": str(exc)}))
                    await asyncio.sleep(0.1)
                    continue
                if self.open_connections >= self.config.max_connections:
                    sock.close()  # before TLS: a full server costs a flood nothing
                    self.metrics.connections_closed.labels("over-capacity").inc()
                    continue
                self.open_connections += 1
                self.metrics.open_connections.set(self.open_connections)
                task = loop.create_task(self._connection(sock, factory, context))
                connections.add(task)
                task.add_done_callback(connections.discard)
        finally:
            for task in connections:
                task.cancel()

    async def _connection(self, sock: socket.socket, factory: Callable[[], _Connection],
                          context: Optional[ssl.SSLContext]) -> None:
        loop = asyncio.get_running_loop()
        try:
            try:
                _, protocol = await loop.connect_accepted_socket(
                    factory, sock, ssl=context,
                    ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_SECONDS if context is not None else None)
            except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError):
                self.metrics.connections_closed.labels("tls-handshake").inc()
                sock.close()
                return
            await protocol.closed
        finally:
            self.open_connections -= 1
            self.metrics.open_connections.set(self.open_connections)

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
                for each in [context, *self.extra_contexts]:
                    each.load_cert_chain(self.certfile, self.pkeyfile, self.password)
            except (OSError, ssl.SSLError) as exc:
                # Mid-rotation (cert written, key not yet): keep serving the old pair, retry next tick.
                log.warning(json.dumps({"event": "certificate-reload-failed", "error": str(exc)}))
                continue
            seen = current
            log.info(json.dumps({"event": "certificate-reloaded", "certfile": str(self.certfile)}))

    # ------------------------------------------------------------ one request

    def _mode(self, webhook: Optional[str]) -> Optional[str]:
        """The mode the path judges in; None for the mutating webhook (it never denies)."""
        if not webhook or webhook == "mutate":
            return None
        if webhook.startswith("validate-"):
            return webhook.removeprefix("validate-")
        return self.config.mode

    def _fallback(self, uid: str, api_version: str, webhook: Optional[str], text: str, policy_key: str
                  ) -> dict[str, Any]:
        """The answer when the object cannot be judged: deny in enforce mode when the policy says so,
        else admit with a warning that says why (never silently)."""
        mode = self._mode(webhook)
        if getattr(self.config, policy_key) == "deny" and mode == "enforce":
            return deny(uid, f"{text}; denied ({policy_key}: deny)", api_version)
        response: dict[str, Any] = {"uid": uid, "allowed": True}
        if mode not in (None, "audit"):
            response["warnings"] = [f"{text}; admitted ({policy_key}: warn)"[:300]]
        return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}

    async def _reserve(self, size: int) -> bool:
        """Take `size` bytes of the in-flight budget, waiting up to the body timeout for others to finish."""
        assert self._budget_freed is not None
        if size > self.budget.limit:
            return False
        async with self._budget_freed:
            try:
                await asyncio.wait_for(self._budget_freed.wait_for(lambda: self.budget.reserve(size)),
                                       timeout=self.config.body_timeout_seconds)
            except asyncio.TimeoutError:
                return False
        return True

    async def _release(self, size: int) -> None:
        assert self._budget_freed is not None
        self.budget.release(size)
        self.metrics.inflight_body_bytes.set(self.budget.used)
        async with self._budget_freed:
            self._budget_freed.notify_all()

    async def _read_head(self, request: aiohttp.web.Request, size: int) -> bytes:
        head = b""
        try:
            async with asyncio.timeout(self.config.body_timeout_seconds):
                while len(head) < size:
                    chunk = await request.content.readany()
                    if not chunk:
                        break
                    head += chunk[: size - len(head)]
        except (asyncio.TimeoutError, ConnectionError, aiohttp.ClientError):
            pass
        return head

    async def _discard(self, request: aiohttp.web.Request, limit: int) -> None:
        dropped = 0
        try:
            async with asyncio.timeout(self.config.body_timeout_seconds):
                while dropped < limit:
                    chunk = await request.content.readany()
                    if not chunk:
                        return
                    dropped += len(chunk)
        except (asyncio.TimeoutError, ConnectionError, aiohttp.ClientError):
            pass

    async def _read_body(self, request: aiohttp.web.Request) -> tuple[Optional[bytearray], Optional[aiohttp.web.Response]]:
        """The whole body in one buffer (no copies, no doubling), or the error response."""
        limit = self.config.max_review_bytes
        length = request.content_length
        reserved = length if length is not None else _READ_CHUNK
        if not await self._reserve(reserved):
            self.metrics.connections_closed.labels("body-budget").inc()
            return None, _closing(aiohttp.web.json_response(
                {"error": "too many request bytes in flight; retry"}, status=503, headers={"Retry-After": "1"}))
        self.metrics.inflight_body_bytes.set(self.budget.used)
        buffer = bytearray(length) if length is not None else bytearray()
        try:
            async with asyncio.timeout(self.config.body_timeout_seconds):
                if length is not None:
                    view, pos = memoryview(buffer), 0
                    try:
                        while pos < length:
                            chunk = await request.content.readany()
                            if not chunk:
                                break
                            n = min(len(chunk), length - pos)
                            view[pos:pos + n] = chunk[:n]
                            pos += n
                    finally:
                        view.release()
                    if pos < length:
                        buffer.clear()
                        return None, _closing(aiohttp.web.json_response({"error": "body ended early"}, status=400))
                else:
                    while True:
                        chunk = await request.content.readany()
                        if not chunk:
                            break
                        if len(buffer) + len(chunk) > limit:
                            buffer.clear()
                            return None, _closing(aiohttp.web.json_response({"error": "body too large"}, status=413))
                        if len(buffer) + len(chunk) > reserved:
                            more = max(len(chunk), _READ_CHUNK * 4)
                            if not await self._reserve(more):
                                return None, _closing(aiohttp.web.json_response(
                                    {"error": "too many request bytes in flight; retry"}, status=503))
                            reserved += more
                        buffer += chunk
        except asyncio.TimeoutError:
            buffer.clear()
            self.metrics.connections_closed.labels("body-timeout").inc()
            return None, _closing(aiohttp.web.json_response({"error": "request body not received in time"},
                                                            status=408))
        except BaseException:
            # Free the storage now: the exception's traceback (kept by aiohttp's payload reader)
            # holds this frame, and with it the buffer, until the cycle collector runs.
            buffer.clear()
            raise
        finally:
            # The buffer stays referenced by the caller only on success; the budget covers the read.
            await self._release(reserved)
        return buffer, None

    async def _serve_review(self, fn: kopf.WebhookFn, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        webhook = request.match_info.get("id")
        length = request.content_length
        if length is not None and length > self.config.max_review_bytes:
            # Too big to take in. The uid is at the front: read that much, answer by policy, close.
            self.metrics.errors.labels("over-budget").inc()
            found = inspect_body(await self._read_head(request, 4096), max_nesting=4, max_containers=0)
            if found.uid is None:
                return _closing(aiohttp.web.json_response({"error": "body too large"}, status=413))
            text = (f"vllm-fit: this request is too large to judge ({length} bytes; the budget is "
                    f"{self.config.max_review_bytes}, max_review_bytes)")
            # Read the rest and drop it (no memory kept), so that the client gets the answer rather
            # than a reset connection; a body past 64 MiB or the body timeout is cut off.
            await self._discard(request, 64 * 1024 * 1024)
            return _closing(aiohttp.web.json_response(
                self._fallback(found.uid, found.api_version, webhook, text, "over_budget_policy")))
        try:
            buffer, error = await self._read_body(request)
        except (ConnectionError, aiohttp.ClientError):  # the client went away mid-upload
            self.metrics.connections_closed.labels("aborted-upload").inc()
            self.trimmer.request()
            return _closing(aiohttp.web.Response(status=400))  # never sent: the peer is gone
        if error is not None:
            self.trimmer.request()
            return error
        assert buffer is not None
        loop = asyncio.get_running_loop()
        inspection: Inspection = await loop.run_in_executor(
            self._decoder, lambda: inspect_body(buffer, max_nesting=self.config.max_nesting,
                                                max_containers=self.config.max_containers))
        big = len(buffer) > 1024 * 1024
        del buffer
        try:
            return await self._answer(fn, request, webhook, inspection)
        finally:
            del inspection
            if big:
                self.trimmer.request()

    async def _answer(self, fn: kopf.WebhookFn, request: aiohttp.web.Request, webhook: Optional[str],
                      inspection: Inspection) -> aiohttp.web.StreamResponse:
        if inspection.over_budget is not None:
            self.metrics.errors.labels("over-budget").inc()
            if inspection.uid is None:
                return aiohttp.web.json_response({"error": f"not an AdmissionReview: {inspection.over_budget}"},
                                                 status=400)
            if inspection.text and self.needs_review is not None and not self.needs_review({}, inspection.text):
                return aiohttp.web.json_response(admit({"apiVersion": inspection.api_version,
                                                        "request": {"uid": inspection.uid}}))
            text = f"vllm-fit: this object is too large or complex to judge: {inspection.over_budget}"
            log.warning(json.dumps({"event": "over-budget", "webhook": webhook, "uid": inspection.uid,
                                    "why": inspection.over_budget}))
            return aiohttp.web.json_response(
                self._fallback(inspection.uid, inspection.api_version, webhook, text, "over_budget_policy"))
        if inspection.bad_request is not None:
            self.metrics.errors.labels("bad-request").inc()
            return aiohttp.web.json_response({"error": inspection.bad_request}, status=400)
        try:
            data = validate_review(inspection.data)
        except BadReview as exc:
            self.metrics.errors.labels("bad-request").inc()
            return aiohttp.web.json_response({"error": f"not an AdmissionReview: {exc}"}, status=400)
        text = inspection.text
        review_request = data["request"]
        subject = review_request["object"] if review_request.get("object") is not None else review_request["oldObject"]
        sub = review_request.get("subResource")
        if (sub and sub != "ephemeralcontainers") or (
                self.needs_review is not None and not self.needs_review(subject, text)):
            # Subresources (scale, status) carry no launch; objects that never mention vLLM are
            # admitted untouched without the handler machinery.
            kind = (review_request.get("kind") or {}).get("kind", "") if isinstance(review_request.get("kind"), dict) else ""
            self.metrics.reviews.labels(webhook or "", str(kind), "none", "-", "allow").inc()
            return aiohttp.web.json_response(admit(data))
        trim_for_review(data)
        headers = dict(request.headers)
        sslpeer = request.transport.get_extra_info("peercert") if request.transport else None
        uid, api_version = review_request["uid"], data.get("apiVersion", "admission.k8s.io/v1")
        try:
            response = await asyncio.wait_for(fn(data, webhook=webhook, sslpeer=sslpeer, headers=headers),
                                              timeout=self.deadline_seconds)
        except asyncio.TimeoutError:
            self.metrics.errors.labels("deadline").inc()
            response = self._fallback(uid, api_version, webhook,
                                      f"vllm-fit: not judged within {self.deadline_seconds:g}s",
                                      "internal_error_policy")
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
        except Exception as exc:  # never let one review take the server down, nor pass unjudged
            self.metrics.errors.labels("internal").inc()
            log.exception("review failed")
            response = self._fallback(uid, api_version, webhook, internal_error_text(type(exc).__name__),
                                      "internal_error_policy")
        try:
            body = json.dumps(with_forbidden_reason(response))
        except (TypeError, ValueError) as exc:  # e.g. a lone surrogate: never an HTTP error
            self.metrics.errors.labels("internal").inc()
            body = json.dumps(self._fallback(uid, api_version, webhook, internal_error_text(type(exc).__name__),
                                             "internal_error_policy"))
        return aiohttp.web.Response(text=body, content_type="application/json")


def _closing(response: aiohttp.web.Response) -> aiohttp.web.Response:
    response.force_close()
    return response


def _listen(addr: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    listener = socket.create_server((addr, port), family=family, backlog=1024)
    listener.setblocking(False)
    return listener


class HealthServer:
    """/healthz (the process and its review loop are alive), /readyz (the webhook listener is up),
    /metrics; on a thread and event loop of their own, so a long review never delays a probe.

    /healthz turns 503 when the review loop has not ticked for `stall_seconds` (a review stuck
    in a loop would otherwise keep a dead webhook "healthy").
    """

    def __init__(self, metrics: WebhookMetrics, port: int, addr: str = "0.0.0.0",
                 ssl_context: Optional[Callable[[], Optional[ssl.SSLContext]]] = None,
                 stall_seconds: float = 30.0) -> None:
        self.metrics = metrics
        self.port = port
        self.addr = addr
        self.ready = False
        self.started = time.time()
        self.stall_seconds = stall_seconds
        self.heartbeat = time.monotonic()
        self._ssl_context = ssl_context
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._beat: Optional[asyncio.Task] = None

    async def start(self) -> None:
        self._beat = asyncio.create_task(self._beat_forever())
        started = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(started, failure), name="vllm-fit-health",
                                        daemon=True)
        self._thread.start()
        await asyncio.to_thread(started.wait, 15)
        if failure:
            raise failure[0]

    async def _beat_forever(self) -> None:
        while True:
            self.heartbeat = time.monotonic()
            await asyncio.sleep(1.0)

    def _run(self, started: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(started))
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            failure.append(exc)
            started.set()
        finally:
            loop.close()

    async def _serve(self, started: threading.Event) -> None:
        self._stop = asyncio.Event()
        app = aiohttp.web.Application()
        app.add_routes([
            aiohttp.web.get("/healthz", self._healthz),
            aiohttp.web.get("/readyz", self._readyz),
            aiohttp.web.get("/metrics", self._metrics),
        ])
        runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None, keepalive_timeout=15)
        await runner.setup()
        try:
            context = self._ssl_context() if self._ssl_context else None
            await aiohttp.web.TCPSite(runner, self.addr, self.port, reuse_address=True, ssl_context=context).start()
            started.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    async def stop(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)

    async def _healthz(self, _: aiohttp.web.Request) -> aiohttp.web.Response:
        stalled = time.monotonic() - self.heartbeat
        if stalled > self.stall_seconds:
            return aiohttp.web.json_response({"status": "stalled", "review_loop_silent_seconds": round(stalled, 1)},
                                             status=503)
        return aiohttp.web.json_response({"status": "ok", "uptime_seconds": round(time.time() - self.started, 1)})

    async def _readyz(self, _: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"ready": self.ready}, status=200 if self.ready else 503)

    async def _metrics(self, _: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(body=generate_latest(self.metrics.registry),
                                    headers={"Content-Type": CONTENT_TYPE_LATEST})
