"""Prometheus metrics of the webhook (served on the health port at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.review_seconds = Histogram(
            "vllm_fit_admission_review_duration_seconds", "Time to answer one admission review",
            ["webhook", "kind"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.reviews = Counter(
            "vllm_fit_admission_reviews_total", "Admission reviews answered, by kind, verdict and mode",
            ["webhook", "kind", "verdict", "mode", "decision"], registry=self.registry)
        self.lookups = Counter(
            "vllm_fit_model_lookups_total", "Model metadata lookups by outcome", ["outcome"], registry=self.registry)
        self.lookup_seconds = Histogram(
            "vllm_fit_model_lookup_duration_seconds", "Model metadata lookup time", buckets=_LATENCY_BUCKETS,
            registry=self.registry)
        self.configmap_reads = Counter(
            "vllm_fit_configmap_reads_total",
            "ConfigMaps a launch reads, by outcome (cached, read, missing, timeout, error)", ["outcome"],
            registry=self.registry)
        self.errors = Counter(
            "vllm_fit_admission_errors_total", "Requests that could not be judged", ["stage"], registry=self.registry)
        self.skips = Counter(
            "vllm_fit_admission_skips_total", "Objects not judged because an opt-out was honoured or a verified "
            "controller owns them", ["reason"], registry=self.registry)
        self.connections_closed = Counter(
            "vllm_fit_webhook_connections_closed_total", "Connections or requests cut off by a limit",
            ["stage"], registry=self.registry)
        self.open_connections = Gauge(
            "vllm_fit_webhook_open_connections", "Open HTTPS connections", registry=self.registry)
        self.inflight_body_bytes = Gauge(
            "vllm_fit_webhook_inflight_body_bytes", "Request body bytes held in memory", registry=self.registry)
        self.audit_flagged = Gauge(
            "vllm_fit_audit_would_deny", "Existing workloads that enforce mode would deny now", ["kind"],
            registry=self.registry)
        self.audit_reviews = Counter(
            "vllm_fit_audit_reviews_total", "Existing workloads re-judged by the audit", ["kind", "decision"],
            registry=self.registry)
