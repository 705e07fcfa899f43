"""What would work instead: the smallest TP, the longest max-model-len (on one node first), fp8 KV,
multi-node, and the TP that matches the GPUs a pod is given."""

from __future__ import annotations

import math
from typing import Optional

from .budget import _Evaluation, _evaluate, valid_tensor_parallel_sizes
from ..gpu_catalog import GpuSpec
from ..units import GIB
from .model_info import ModelInfo
from .result import Suggestions
from .runtime import RuntimeProfiles
from .settings import Settings


def _with_tp(s: Settings, tp: int, **extra) -> Settings:  # noqa: ANN003
    return s.model_copy(update={"tensor_parallel_size": tp, **extra})


def _longest_max_model_len(ev: _Evaluation) -> int:
    """vLLM's estimated maximum model length for this evaluation (0 when nothing fits)."""
    s = ev.settings
    if ev.problems or ev.weights_exceed or ev.available_bytes <= 0 or ev.layout is None:
        return 0
    return ev.layout.estimate_max_model_len(ev.check_bytes, s.max_model_len, ev.in_flight, s.behaviour)


def longest_schedulable_max_model_len(ev: _Evaluation) -> int:
    """The longest max-model-len of which the KV cache holds at least one whole request (concurrency
    >= 1). Versions whose startup check reads only the first KV cache group (0.14-0.18) start with
    less, and then never schedule a request of that length."""
    s, layout = ev.settings, ev.layout
    if layout is None or ev.num_blocks <= 0:
        return 0
    lo, hi, best = 1, s.max_model_len, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if layout.max_concurrency(ev.num_blocks, mid, ev.in_flight, s.behaviour) >= 1:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def _shorter_on_one_node(model: ModelInfo, s: Settings, gpu: GpuSpec, profiles: RuntimeProfiles, ev: _Evaluation,
                         gpus_per_node: int) -> Optional[tuple[int, int]]:
    """(TP, max-model-len): the smallest TP on one node where a shorter max-model-len starts, with the
    longest such length; the launch's own TP first."""
    sizes = [s.tensor_parallel_size] + [tp for tp in valid_tensor_parallel_sizes(model, gpus_per_node)
                                        if tp > s.tensor_parallel_size]
    for tp in sizes:
        if tp * s.pipeline_parallel_size > gpus_per_node:
            break
        candidate = ev if tp == s.tensor_parallel_size else _evaluate(model, _with_tp(s, tp), gpu, profiles)
        longest = _longest_max_model_len(candidate)
        if longest <= 0:
            continue
        shorter = _evaluate(model, _with_tp(s, tp, max_model_len=longest), gpu, profiles)
        if shorter.starts:
            return tp, longest
    return None


def tensor_parallel_for_gpus(model: ModelInfo, s: Settings, gpu: GpuSpec, profiles: RuntimeProfiles,
                             gpus_given: int) -> Optional[int]:
    """The largest valid TP whose TPxPPxDP is the GPUs given (or fits in them) and that starts."""
    per_tp = s.pipeline_parallel_size * (s.data_parallel_size_local or s.data_parallel_size)
    for tp in sorted(valid_tensor_parallel_sizes(model, max(gpus_given // per_tp, 1)), reverse=True):
        if tp * per_tp > gpus_given or tp == s.tensor_parallel_size:
            continue
        if _evaluate(model, _with_tp(s, tp), gpu, profiles).starts:
            return tp
    return None


def _suggest(model: ModelInfo, s: Settings, gpu: GpuSpec, profiles: RuntimeProfiles, ev: _Evaluation,
             gpus_per_node: int, gpus_given: Optional[int] = None) -> Suggestions:
    out: dict[str, object] = {}
    if gpus_given is not None and gpus_given != s.gpus_per_replica:
        out["tensor_parallel_size_for_gpus_given"] = tensor_parallel_for_gpus(model, s, gpu, profiles, gpus_given)
    if ev.starts:
        # It starts, but a request of max-model-len may still never fit the KV cache (see above).
        if ev.layout is not None and ev.num_blocks > 0 and ev.concurrency < 1:
            longest = longest_schedulable_max_model_len(ev)
            if longest > 0:
                out["max_model_len"] = longest
                out["max_model_len_tensor_parallel_size"] = s.tensor_parallel_size
        return Suggestions(**out)
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
        longest = _longest_max_model_len(ev)
        if longest > 0:
            out["max_model_len"] = longest
            out["max_model_len_tensor_parallel_size"] = s.tensor_parallel_size
        if s.kv_cache_dtype_bytes > 1:
            fp8 = _evaluate(model, s.model_copy(update={"kv_cache_dtype": "fp8", "kv_cache_dtype_bytes": 1}), gpu, profiles)
            if fp8.starts:
                out["kv_cache_dtype"] = "fp8"
    if "tensor_parallel_size" not in out and not ev.problems:
        # No TP on one node starts as asked. One node first: a shorter max-model-len at the smallest
        # TP where one fits; then, keeping the length, the smallest multi-node TP x PP layout.
        if "max_model_len" not in out:
            single = _shorter_on_one_node(model, s, gpu, profiles, ev, gpus_per_node)
            if single is not None:
                out["max_model_len_tensor_parallel_size"], out["max_model_len"] = single
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
