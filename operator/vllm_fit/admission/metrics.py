"""Prometheus metrics of the webhook (served on the health port at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

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
