"""Run the webhook: kopf in standalone mode whose only job is admission, plus the health server."""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from pathlib import Path
from typing import Optional

import kopf

from ..hub.resolver import ModelResolver, default_resolver
from ..profiles import gpu_catalog, runtime_profiles_with, vllm_flag_table
from .config import WebhookConfig
from .configmaps import ApiConfigMaps, ConfigMapReader
from .audit import register_audit
from .handlers import register
from .lookups import KubeLookup
from .limits import tune_allocator
from .metrics import WebhookMetrics
from .nodes import NodeStore
from .observer import Observer, ObserverApi, ObserverMetrics, register_observer
from .review import Reviewer
from .server import AdmissionServer, HealthServer


def configure_logging(level: str = "INFO") -> None:
    """Our review lines are JSON already; kopf's own chatter is kept to warnings."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours = logging.getLogger("vllm_fit")
    ours.handlers[:] = [handler]
    ours.setLevel(level)
    ours.propagate = False
    kopf.configure(log_format=kopf.LogFormat.JSON, verbose=False)
    for name in ("kopf", "aiohttp.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # A denial is kopf's "handler failed permanently"; our own review line already records it.
    logging.getLogger("kopf.objects").setLevel(logging.CRITICAL)


async def run_webhook(
    config: WebhookConfig,
    *,
    certfile: Optional[Path],
    keyfile: Optional[Path],
    addr: str = "0.0.0.0",
    port: int = 9443,
    health_port: int = 8080,
    cert_reload_seconds: float = 10.0,
    resolver: Optional[ModelResolver] = None,
    stop_flag: Optional[asyncio.Event] = None,
    ready_flag: Optional[asyncio.Event] = None,
    insecure: bool = False,
) -> None:
    tune_allocator()
    metrics = WebhookMetrics()
    health_context: Optional[ssl.SSLContext] = None
    if config.metrics_tls and certfile is not None and keyfile is not None and not insecure:
        health_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        health_context.minimum_version = ssl.TLSVersion.TLSv1_2
        health_context.load_cert_chain(str(certfile), str(keyfile))
    health = HealthServer(metrics, health_port, addr=addr, ssl_context=lambda: health_context)
    login: dict[str, Optional[kopf.ConnectionInfo]] = {"info": None}
    api_configmaps = ApiConfigMaps(lambda: login["info"])
    catalog = gpu_catalog()
    cluster = KubeLookup(lambda: login["info"])
    # Model paths in a manifest are paths inside the vLLM pod: never read them on the webhook's disk.
    reviewer = Reviewer(config, resolver or default_resolver((Path(d) for d in config.model_bundle_dirs),
                                                             local_dirs=False),
                        catalog, runtime_profiles_with(config.profiles_dir), metrics=metrics,
                        configmaps=ConfigMapReader(api_configmaps, metrics=metrics) if config.read_configmaps else None,
                        flag_table=vllm_flag_table(), nodes=NodeStore(catalog) if config.cluster_gpus else None,
                        cluster=cluster)
    registry = kopf.OperatorRegistry()
    register(registry, reviewer, metrics)
    observer_api: Optional[ObserverApi] = None
    if config.observer_enabled:
        observer_api = ObserverApi(lambda: login["info"])
        register_observer(registry, Observer(config, reviewer, observer_api, ObserverMetrics(metrics.registry),
                                             own_namespace=config.namespace))
    if config.audit_existing:
        register_audit(registry, reviewer, metrics)

    def on_ready() -> None:
        health.ready = True
        if ready_flag is not None:
            ready_flag.set()

    server = AdmissionServer(addr=addr, port=port, certfile=certfile, pkeyfile=keyfile, insecure=insecure,
                             config=config, metrics=metrics, reload_interval=cert_reload_seconds, on_ready=on_ready,
                             needs_review=reviewer.needs_review,
                             extra_contexts=[health_context] if health_context is not None else [])

    @kopf.on.login(registry=registry)
    def _login(**kwargs: object) -> Optional[kopf.ConnectionInfo]:
        # In a pod the service account; elsewhere KUBECONFIG (kopf's own readers, no client library).
        # The same credentials serve the reads of reviews (admission/configmaps.py, admission/kube.py).
        login["info"] = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        return login["info"]

    @kopf.on.startup(registry=registry)
    def _settings(settings: kopf.OperatorSettings, **_: object) -> None:
        settings.admission.server = server
        settings.admission.managed = None  # the Helm chart (or --dev) owns the webhook configurations
        settings.scanning.disabled = True  # no CRD watching: discovery once at start is enough
        # No Events from an admission path; the audit (opt-in) posts its own Warning Events only.
        settings.posting.enabled = config.audit_existing
        settings.posting.level = logging.WARNING

    await health.start()
    try:
        await kopf.operator(registry=registry, standalone=True, clusterwide=True, stop_flag=stop_flag)
    finally:
        health.ready = False
        await health.stop()
        await api_configmaps.close()
        if observer_api is not None:
            await observer_api.close()
        await cluster.close()
