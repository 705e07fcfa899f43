"""What one started (or failed) vLLM container tells about vllm-fit's prediction for it.

Pure: a startup log already read, the plan for the same launch (or why there is none), and
whether vllm-fit let the launch in. The in-cluster observer (admission/observer.py) fetches the
log, plans, and carries the result to annotations, an Event and metrics.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict

from ..memory.result import MemoryPlan
from .compare import Comparison, compare
from .model import StartupLog

ObservationReason = Literal["PredictionConfirmed", "PredictionDrift", "AdmittedLaunchFailed", "NotCompared"]

# Failures that are the memory model's business; an image pull or a bad flag is not.
MEMORY_FAILURES = frozenset({
    "no_kv_cache_memory", "max_model_len_too_long", "insufficient_free_memory",
    "cuda_oom_loading", "cuda_oom_profiling", "cuda_oom_cuda_graph", "cuda_oom",
})

MEASURED_KV_ANNOTATION = "vllm-fit.io/measured-kv-cache-gib"
MEASURED_WEIGHTS_ANNOTATION = "vllm-fit.io/measured-weights-gib"
PREDICTION_ERROR_ANNOTATION = "vllm-fit.io/prediction-error"
OBSERVED_FROM_ANNOTATION = "vllm-fit.io/observed-from"
OBSERVATION_ANNOTATIONS = (MEASURED_KV_ANNOTATION, MEASURED_WEIGHTS_ANNOTATION, PREDICTION_ERROR_ANNOTATION,
                           OBSERVED_FROM_ANNOTATION)


class Observation(BaseModel):
    model_config = ConfigDict(frozen=True)
    reason: ObservationReason
    event_type: Literal["Normal", "Warning"]
    message: str
    kv_error_pct: Optional[float] = None
    measured_kv_cache_gib: Optional[float] = None
    measured_weights_gib: Optional[float] = None
    failure_code: Optional[str] = None
    annotations: dict[str, str] = {}


def _percent(value: float) -> str:
    return f"{value:+.1f}%"


def observe(log: StartupLog, plan: Optional[MemoryPlan], *, admitted: bool, source: str,
            drift_threshold_pct: float = 5.0, unplanned_why: str = "") -> Observation:
    """Judge the prediction against what vLLM logged.

    `admitted`: vllm-fit let this launch in without saying it would fail (a fit or a warning that
    is not about memory). `source` names the pod and container the log came from.
    """
    m = log.measured
    annotations = {OBSERVED_FROM_ANNOTATION: source}
    if m.kv_cache_gib is not None:
        annotations[MEASURED_KV_ANNOTATION] = f"{m.kv_cache_gib:.2f}"
    if m.weights_gib is not None:
        annotations[MEASURED_WEIGHTS_ANNOTATION] = f"{m.weights_gib:.2f}"
    failure = log.failure
    if failure is not None and failure.code in MEMORY_FAILURES:
        said_fit = plan.verdict.fits if plan is not None else admitted
        if admitted and said_fit:
            return Observation(
                reason="AdmittedLaunchFailed", event_type="Warning", failure_code=failure.code,
                measured_weights_gib=m.weights_gib, annotations=annotations,
                message=f"vLLM failed to start ({failure.code}: {failure.line[:160]}) in {source}, "
                        "a launch vllm-fit admitted as fitting")
        return Observation(
            reason="PredictionConfirmed", event_type="Normal", failure_code=failure.code,
            measured_weights_gib=m.weights_gib, annotations=annotations,
            message=f"vLLM failed to start ({failure.code}) in {source}, as vllm-fit predicted")
    if plan is None:
        return Observation(reason="NotCompared", event_type="Normal", annotations=annotations,
                           measured_kv_cache_gib=m.kv_cache_gib, measured_weights_gib=m.weights_gib,
                           message=f"vLLM started in {source}; not compared: {unplanned_why or 'no plan'}")
    comparison: Comparison = compare(log, plan, drift_threshold_pct)
    err = comparison.kv_error_pct
    if err is None:
        return Observation(reason="NotCompared", event_type="Normal", annotations=annotations,
                           measured_weights_gib=m.weights_gib,
                           message=f"the log of {source} prints no KV cache size to compare")
    annotations[PREDICTION_ERROR_ANNOTATION] = _percent(err)
    predicted = comparison.predicted.get("kv_cache_gib")
    what = (f"KV cache measured {m.kv_cache_gib:.2f} GiB, predicted {predicted:.2f} GiB"
            if m.kv_cache_gib is not None and predicted is not None else "KV cache")
    if abs(err) <= drift_threshold_pct:
        return Observation(reason="PredictionConfirmed", event_type="Normal", kv_error_pct=err,
                           measured_kv_cache_gib=m.kv_cache_gib, measured_weights_gib=m.weights_gib,
                           annotations=annotations, message=f"{what} ({_percent(err)}) in {source}")
    return Observation(reason="PredictionDrift", event_type="Warning", kv_error_pct=err,
                       measured_kv_cache_gib=m.kv_cache_gib, measured_weights_gib=m.weights_gib,
                       annotations=annotations,
                       message=f"{what} ({_percent(err)}, above {drift_threshold_pct:g}%) in {source}")
