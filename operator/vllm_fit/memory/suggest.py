"""What would work instead: the smallest TP, the longest max-model-len, fp8 KV, multi-node."""

from __future__ import annotations

import math

from .budget import _Evaluation, _evaluate, valid_tensor_parallel_sizes
from .gpu import GIB, GpuSpec
from .model_info import ModelInfo
from .result import Suggestions
from .runtime import RuntimeProfiles
from .settings import Settings


def _with_tp(s: Settings, tp: int, **extra) -> Settings:  # noqa: ANN003
    return s.model_copy(update={"tensor_parallel_size": tp, **extra})


def _suggest(model: ModelInfo, s: Settings, gpu: GpuSpec, profiles: RuntimeProfiles, ev: _Evaluation,
             gpus_per_node: int) -> Suggestions:
    if ev.starts:
        return Suggestions()
    out: dict[str, object] = {}
    # The smallest valid TP at the same settings that starts.
    for tp in valid_tensor_parallel_sizes(model, gpus_per_node):
        if tp == s.tensor_parallel_size:
            continue
        candidate = _evaluate(model, _with_tp(s, tp), gpu, profiles)
        if candidate.starts:
            out["tensor_parallel_size"] = tp
            out["tensor_parallel_kv_cache_gib"] = round(candidate.available_bytes / GIB, 2)
            out["tensor_parallel_max_concurrency"] = round(candidate.concurrency, 2)
            break
    # The longest max-model-len that fits at this TP.
    if not ev.problems and not ev.weights_exceed and ev.available_bytes > 0 and not ev.max_len_fits and ev.layout:
        longest = ev.layout.estimate_max_model_len(ev.check_bytes, s.max_model_len, ev.in_flight, s.behaviour)
        if longest > 0:
            out["max_model_len"] = longest
        if s.kv_cache_dtype_bytes > 1:
            fp8 = _evaluate(model, s.model_copy(update={"kv_cache_dtype": "fp8", "kv_cache_dtype_bytes": 1}), gpu, profiles)
            if fp8.starts:
                out["kv_cache_dtype"] = "fp8"
    # Nothing on one node: the smallest multi-node TP x PP layout.
    if "tensor_parallel_size" not in out and (ev.weights_exceed or ev.available_bytes <= 0):
        tp = max(valid_tensor_parallel_sizes(model, gpus_per_node) or [1])
        for pp in range(2, 17):
            if pp > model.geometry.num_layers:
                break
            candidate = _evaluate(model, s.model_copy(update={"tensor_parallel_size": tp, "pipeline_parallel_size": pp}),
                                  gpu, profiles)
            if candidate.starts:
                out["multi_node"] = {"tensor_parallel_size": tp, "pipeline_parallel_size": pp,
                                     "nodes": math.ceil(tp * pp / gpus_per_node)}
                break
    return Suggestions(**out)

