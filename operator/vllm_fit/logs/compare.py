"""Measured (a vLLM startup log) against predicted (the plan for the same launch), per term."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict

from ..memory.result import MemoryPlan
from .model import SEED_FIGURES, MemoryFigures, StartupLog


class Comparison(BaseModel):
    model_config = ConfigDict(frozen=True)
    predicted: dict[str, Optional[float]]
    error_pct: dict[str, Optional[float]]  # (predicted - measured) / |measured|; None where either is missing
    kv_error_pct: Optional[float]
    kv_within: Optional[bool]  # None: the log prints no KV cache figure to compare
    predicted_fits: bool
    started: Optional[bool]  # False: the log shows a failed start; None: neither a failure nor a KV cache
    failed_where_fit: bool
    started_where_rejected: bool = False  # a false rejection: what enforce mode must never do

    @property
    def ok(self) -> bool:
        return not self.failed_where_fit and not self.started_where_rejected and self.kv_within is not False


def predicted_figures(plan: MemoryPlan) -> dict[str, Optional[float]]:
    p, kv = plan.per_gpu, plan.kv_cache
    return {
        "weights_gib": p.weights_gib,
        "activation_gib": p.activation_gib,
        "non_torch_gib": p.non_torch_gib,
        "cuda_graph_gib": p.cuda_graph_gib,
        "kv_cache_gib": p.kv_cache_gib,
        "kv_cache_tokens": float(kv.tokens),
        "gpu_blocks": float(kv.blocks),
        "max_concurrency": kv.max_concurrency,
        "max_model_len": float(kv.max_model_len),
    }


def error_pct(predicted: Optional[float], measured: Optional[float]) -> Optional[float]:
    if predicted is None or measured is None or measured == 0:
        return None
    return round(100.0 * (predicted - measured) / abs(measured), 2)


def _kv_error(predicted: dict[str, Optional[float]], m: MemoryFigures) -> Optional[float]:
    """The KV cache in GiB where the log prints it, else in tokens, else in blocks."""
    for key in ("kv_cache_gib", "kv_cache_tokens", "gpu_blocks"):
        err = error_pct(predicted[key], getattr(m, key))
        if err is not None:
            return err
    return None


def compare(log: StartupLog, plan: MemoryPlan, max_error_pct: float) -> Comparison:
    predicted = predicted_figures(plan)
    m = log.measured
    errors = {key: error_pct(predicted[key], getattr(m, key)) for key in SEED_FIGURES}
    kv_err = _kv_error(predicted, m)
    started: Optional[bool]
    if log.failure is not None:
        started = False
    elif m.kv_cache_gib is not None or m.kv_cache_tokens is not None or m.gpu_blocks is not None:
        started = True
    else:
        started = None
    fits = plan.verdict.fits
    return Comparison(
        predicted=predicted,
        error_pct=errors,
        kv_error_pct=kv_err,
        kv_within=None if kv_err is None or started is False else abs(kv_err) <= max_error_pct,
        predicted_fits=fits,
        started=started,
        failed_where_fit=started is False and fits,
        started_where_rejected=started is True and not fits,
    )
