"""Webhook configuration: a YAML file (the chart's ConfigMap) overridden by VLLM_FIT_* variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Mapping, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import VllmFitError
from ..launch import DEFAULT_VLLM_IMAGES
from ..memory.plan import DEFAULT_CONCURRENCY_THRESHOLD, DEFAULT_GPUS_PER_NODE
from ..memory.versions import DEFAULT_VLLM_VERSION, parse_version

Mode = Literal["enforce", "warn", "audit"]
Policy = Literal["allow", "warn", "deny"]
StrictPolicy = Literal["warn", "deny"]
MODES: tuple[str, ...] = ("enforce", "warn", "audit")


class WebhookConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Mode = "enforce"
    default_gpu: Optional[str] = None
    default_vllm_version: str = DEFAULT_VLLM_VERSION
    # Image patterns (shell-style, on the image name without tag) whose entrypoint runs vLLM's
    # server. `vllm_images` adds to the built-in list; `builtin_vllm_images` replaces that list.
    vllm_images: tuple[str, ...] = ()
    builtin_vllm_images: tuple[str, ...] = DEFAULT_VLLM_IMAGES
    # Also recognise vendor images that run vLLM without the word in the command: by vLLM engine
    # flags in args, a vllm label, container or image name (launch.model.LOOSE_RULES). False keeps
    # only vLLM commands, vllm_images and the KServe/KAITO resources.
    loose_detection: bool = True
    # Read the ConfigMaps a launch takes values from (envFrom, configMapKeyRef, KAITO inference
    # configs) with a namespaced GET (RBAC: get on configmaps). Secrets are never read.
    read_configmaps: bool = True
    concurrency_threshold: float = DEFAULT_CONCURRENCY_THRESHOLD
    gpus_per_node: int = DEFAULT_GPUS_PER_NODE
    deadline_seconds: float = Field(default=2.0, gt=0, le=25)
    unknown_model_policy: Policy = "warn"
    unknown_gpu_policy: Policy = "warn"
    exempt_namespaces: tuple[str, ...] = ("kube-system",)
    # Learn the GPU types from the cluster's Nodes (a watch; RBAC list/watch nodes) for launches
    # whose manifest names none.
    cluster_gpus: bool = True
    model_bundle_dirs: tuple[str, ...] = ()
    # Measured profiles (`vllm-fit logs --write-profile` files; the chart mounts a ConfigMap).
    profiles_dir: Optional[str] = None
    # The observer (opt-in): read the startup log of every vLLM container that becomes Ready,
    # restarts or terminates, and record measured against predicted on its workload
    # (annotations, an Event, metrics). RBAC: pods list/watch, pods/log get, events create,
    # workloads patch (the chart grants them with observer.enabled).
    observer_enabled: bool = False
    observer_log_tail_lines: int = Field(default=5000, ge=100, le=100_000)
    observer_log_limit_bytes: int = Field(default=4 << 20, ge=64 << 10, le=64 << 20)
    observer_log_reads_per_minute: float = Field(default=30.0, gt=0, le=6000)
    # Above this |KV cache error| the Event is PredictionDrift (Warning), else PredictionConfirmed.
    observer_drift_threshold_pct: float = Field(default=5.0, gt=0, le=100)
    # Calibration (opt-in, needs the observer): measured overheads stored in a ConfigMap of the
    # webhook's namespace and used for later launches with the same key.
    calibration_enabled: bool = False
    calibration_configmap: str = Field(default="vllm-fit-calibration", min_length=1, max_length=253)
    calibration_max_entries: int = Field(default=256, ge=1, le=2000)
    calibration_refresh_seconds: float = Field(default=30.0, ge=1, le=3600)
    # The webhook's own namespace (the chart sets it from the pod's; calibration lives there).
    namespace: str = "vllm-fit"
    # The `vllm-fit.io/skip` annotation is the workload author's own: in enforce mode it is
    # honoured only where an admin allowed it, by this key (true) or by labelling the namespace
    # `vllm-fit.io/allow-skip: "true"` (relabelling a namespace needs RBAC on namespaces).
    # null: honoured in warn and audit modes only (there it only silences advice).
    allow_skip_annotation: Optional[bool] = None
    # A container in a vLLM image whose launch cannot be read (a mounted script, `python -c`,
    # an opaque `bash -c`): deny (enforce mode only) or warn.
    unreadable_launch_policy: StrictPolicy = "deny"
    # A review that hits an internal error or cannot finish within the deadline: deny (enforce
    # mode only) or warn. Never a silent admission.
    internal_error_policy: StrictPolicy = "deny"
    # An object past the size/complexity budget below (checked before it is read): deny
    # (enforce mode only) or warn.
    over_budget_policy: StrictPolicy = "deny"
    max_review_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    max_containers: int = Field(default=256, ge=1, le=100_000)
    max_nesting: int = Field(default=64, ge=16, le=400)
    # Connections (the HTTPS listener): how long a client may take to send its headers and its
    # body, how long an idle keep-alive connection stays open, and the caps on open connections
    # and on request bytes held in memory at once.
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    body_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    idle_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    max_connections: int = Field(default=256, ge=1, le=100_000)
    max_inflight_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024, le=4 * 1024 * 1024 * 1024)
    # Serve /metrics on the health port over TLS too (the webhook's own certificate).
    metrics_tls: bool = False
    # Re-judge existing vLLM workloads (kopf watch): mark those enforce mode would deny with an
    # annotation, an Event and a metric. Needs list/watch/patch RBAC (the chart's audit.enabled).
    audit_existing: bool = False

    @property
    def image_patterns(self) -> tuple[str, ...]:
        """Every image pattern that counts as a vLLM image: the built-in list plus vllm_images."""
        return tuple(dict.fromkeys((*self.builtin_vllm_images, *self.vllm_images)))

    @field_validator("default_gpu")
    @classmethod
    def _gpu(cls, value: Optional[str]) -> Optional[str]:
        if value:
            from ..profiles import gpu_catalog

            gpu_catalog().resolve(value)  # an unknown name fails at start, not on every review
        return value

    @field_validator("default_vllm_version")
    @classmethod
    def _version(cls, value: str) -> str:
        parse_version(value)
        return value


_ENV_PREFIX = "VLLM_FIT_"
_LIST_FIELDS = {"vllm_images", "builtin_vllm_images", "exempt_namespaces", "model_bundle_dirs"}


def load_config(path: Optional[Path] = None, env: Optional[Mapping[str, str]] = None) -> WebhookConfig:
    """The file (if any), then VLLM_FIT_<FIELD> variables (lists comma-separated)."""
    env = os.environ if env is None else env
    data: dict[str, object] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise VllmFitError(f"configuration file {path} does not exist") from None
        except yaml.YAMLError as exc:
            raise VllmFitError(f"configuration file {path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise VllmFitError(f"configuration file {path} must hold a mapping")
        data.update(loaded)
    for name in WebhookConfig.model_fields:
        raw = env.get(_ENV_PREFIX + name.upper())
        if raw is None or raw == "":
            continue
        data[name] = [item.strip() for item in raw.split(",") if item.strip()] if name in _LIST_FIELDS else raw
    try:
        return WebhookConfig(**data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {_message(e)}" for e in exc.errors())
        where = f"{path} and VLLM_FIT_* variables" if path is not None else "VLLM_FIT_* variables"
        raise VllmFitError(f"invalid webhook configuration ({where}): {problems}") from None


def _message(error: Mapping[str, object]) -> str:
    text = str(error.get("msg", ""))
    return text.removeprefix("Value error, ")
