"""Judging one evaluation: the errors vLLM would raise and the warnings worth a line."""

from __future__ import annotations

from typing import Optional

from .budget import _Evaluation, valid_tensor_parallel_sizes
from ..gpu_catalog import GpuSpec
from ..units import GIB
from .model_info import ModelInfo
from .result import DEFAULT_GPUS_PER_NODE, Reason, Suggestions
from .settings import Settings
from .weights import pad_vocab


def _short(model_id: str) -> str:
    return model_id.rsplit("/", 1)[-1]


# Numbers in sentences carry thousands separators (16,000 tokens); values written as a flag to copy
# stay as vLLM parses them (--max-model-len 18176).

def _max_len_at(s: Settings, sug: Suggestions) -> str:
    tp = sug.max_model_len_tensor_parallel_size or s.tensor_parallel_size
    where = f"at TP={tp}" if tp == s.tensor_parallel_size else f"with --tensor-parallel-size {tp}"
    return f"--max-model-len {sug.max_model_len} fits {where}"


def _fix_text(s: Settings, sug: Suggestions, gpus_per_node: int = DEFAULT_GPUS_PER_NODE) -> str:
    """Every fix, one node first: a TP that fits, a shorter max-model-len, fp8 KV; then more nodes."""
    fixes: list[str] = []
    if sug.tensor_parallel_size:
        fixes.append(f"TP={sug.tensor_parallel_size} gives {sug.tensor_parallel_kv_cache_gib:.2f} GiB "
                     f"({sug.tensor_parallel_max_concurrency:.2f}x concurrency at {s.max_model_len:,} tokens)")
    if sug.max_model_len:
        one_node = "" if sug.tensor_parallel_size or not sug.multi_node else " on one node"
        fixes.append(_max_len_at(s, sug) + one_node)
    if sug.kv_cache_dtype:
        fixes.append(f"--kv-cache-dtype {sug.kv_cache_dtype} fits")
    if sug.multi_node and not sug.tensor_parallel_size:
        m = sug.multi_node
        layout = (f"TP={m['tensor_parallel_size']} x PP={m['pipeline_parallel_size']} over {m['nodes']} nodes "
                  f"(e.g. a LeaderWorkerSet)")
        if fixes:
            fixes.append(f"to keep {s.max_model_len:,} tokens, {layout}")
        else:
            fixes.append(f"no TP on one {gpus_per_node}-GPU node fits; try {layout}")
    return "; ".join(fixes)


def _short_fix(sug: Suggestions) -> str:
    if sug.tensor_parallel_size:
        return f"; TP={sug.tensor_parallel_size} gives {sug.tensor_parallel_kv_cache_gib:.1f} GiB"
    if sug.max_model_len:
        tp = sug.max_model_len_tensor_parallel_size
        return f"; max-model-len {sug.max_model_len:,} fits" + (f" at TP={tp}" if tp else "")
    if sug.multi_node:
        m = sug.multi_node
        return f"; try TP={m['tensor_parallel_size']}xPP={m['pipeline_parallel_size']}"
    return ""


def gpu_count_reason(name: str, tp: int, pp: int, need: int, given: int, fix: Optional[str] = None) -> Reason:
    """GPUs a pod gets against the TPxPPxDP ranks vLLM starts: fewer is fatal (vLLM waits for
    devices that do not exist), more leaves GPUs idle. Needs no model and no GPU type; with them,
    `fix` names the TP that fits the GPUs given (`_gpu_count_fix`)."""
    if given < need:
        fix = fix or f"request {need} GPUs, or lower TPxPPxDP to {given}"
        return Reason(code="gpu-count-mismatch", severity="error",
                      message=f"{name} at TP={tp}" + (f" PP={pp}" if pp > 1 else "")
                              + f": TPxPPxDP needs {need} GPUs but the pod gets {given}; {fix}",
                      summary=f"{name}: needs {need} GPUs (TPxPPxDP), pod gets {given}; {fix}")
    fix = fix or f"request {need} GPU{'s' if need != 1 else ''}"
    return Reason(code="gpu-count-mismatch", severity="warning",
                  message=f"{name}: the pod gets {given} GPUs but TPxPPxDP uses {need}; {given - need} sit idle; {fix}",
                  summary=f"{name}: {given} GPUs requested, TPxPPxDP uses {need}; {fix}")


def gpu_count_fix(need: int, given: int, tp_fit: Optional[int], uses: int = 0) -> str:
    """What to change when the pod's GPUs and TPxPPxDP disagree: the request, or `tp_fit`, a TP
    that fits the GPUs given (using `uses` of them), when one does."""
    request = f"request {need} GPU{'s' if need != 1 else ''}"
    if tp_fit:
        return f"{request}, or set --tensor-parallel-size {tp_fit} ({uses} GPU{'s' if uses != 1 else ''}), which fits"
    if given < need:
        return f"{request}; no valid TP fits {given} GPU{'s' if given != 1 else ''}"
    return request


def _gpu_count_fix(s: Settings, sug: Suggestions, need: int, given: int) -> str:
    tp = sug.tensor_parallel_size_for_gpus_given
    return gpu_count_fix(need, given, tp, tp * need // s.tensor_parallel_size if tp else 0)


def _reasons(model: ModelInfo, s: Settings, gpu: GpuSpec, ev: _Evaluation, sug: Suggestions,
             gpus_given: Optional[int], threshold: float) -> list[Reason]:
    reasons: list[Reason] = []
    name = _short(model.model_id)
    where = f"{name} at TP={s.tensor_parallel_size}" + (f" PP={s.pipeline_parallel_size}" if s.pipeline_parallel_size > 1 else "")
    where += f" on {gpu.name}"
    fix = _fix_text(s, sug)
    then = f"; {fix}" if fix else ""
    if ev.problems:
        valid = valid_tensor_parallel_sizes(model, max(DEFAULT_GPUS_PER_NODE, s.tensor_parallel_size))
        fitting = (f"; TP={sug.tensor_parallel_size} fits on {gpu.name} ({sug.tensor_parallel_kv_cache_gib:.2f} GiB "
                   f"KV cache)" if sug.tensor_parallel_size else "")
        reasons.append(Reason(code="invalid-parallelism", severity="error",
                              message=f"{where}: {ev.problems[0]}; valid TP sizes: {', '.join(map(str, valid))}{fitting}",
                              summary=f"{name}: TP={s.tensor_parallel_size} is invalid; valid TP: {', '.join(map(str, valid))}"))
    if gpus_given is not None and gpus_given != s.gpus_per_replica:
        need = s.gpus_per_replica
        reasons.append(gpu_count_reason(name, s.tensor_parallel_size, s.pipeline_parallel_size, need, gpus_given,
                                        _gpu_count_fix(s, sug, need, gpus_given)))
    if ev.unified_free_tight:
        reasons.append(Reason(
            code="unified-memory-free", severity="warning",
            message=f"{where}: --gpu-memory-utilization {s.gpu_memory_utilization} asks for "
                    f"{ev.requested_bytes / GIB:.2f} GiB of {gpu.name}'s unified memory; the host typically leaves only "
                    f"about {ev.physical_bytes / GIB:.2f} GiB free at startup, so vLLM may refuse to start (Free memory "
                    f"on device ... is less than desired GPU memory utilization); lower it if it does",
            summary=f"{name}: util {s.gpu_memory_utilization} may exceed the free unified memory of {gpu.name}"))
    if ev.free_memory_short:
        reasons.append(Reason(
            code="insufficient-free-memory", severity="error",
            message=f"{where}: --gpu-memory-utilization {s.gpu_memory_utilization} asks for "
                    f"{ev.requested_bytes / GIB:.2f} GiB but only {ev.physical_bytes / GIB:.2f} GiB is free after the "
                    f"CUDA context (vLLM: Free memory on device ... is less than desired GPU memory utilization)",
            summary=f"{name}: util {s.gpu_memory_utilization} asks more than the free "
                    f"{ev.physical_bytes / GIB:.2f} GiB of {gpu.name}"))
    if ev.kv_memory_exceeds_gpu:
        reasons.append(Reason(
            code="kv-cache-memory-exceeds-gpu", severity="error",
            message=f"{where}: --kv-cache-memory-bytes {s.kv_cache_memory_bytes / GIB:.2f} GiB on top of "
                    f"{ev.stage.weights_bytes / GIB:.2f} GiB weights and {ev.constants.activation_gib:.2f} GiB activation "
                    f"exceeds the {ev.physical_bytes / GIB:.2f} GiB free (vLLM allocates it unchecked and runs out of "
                    f"memory)",
            summary=f"{name}: --kv-cache-memory-bytes does not fit beside the weights on {gpu.name}"))
    w_gib = ev.weights.load_peak_bytes / GIB
    if ev.weights_exceed:
        reasons.append(Reason(code="weights-exceed-gpu", severity="error",
                              message=f"{where}: weights need {w_gib:.2f} GiB per GPU but only "
                                      f"{ev.physical_bytes / GIB:.2f} GiB is free after the CUDA context; "
                                      f"OOM while loading{then}",
                              summary=f"{name}: {w_gib:.1f} GiB weights/GPU exceed {gpu.name} at TP={s.tensor_parallel_size}"
                                      + _short_fix(sug)))
    elif ev.available_bytes <= 0 and not ev.problems and not ev.free_memory_short:
        c = ev.constants
        reasons.append(Reason(code="no-kv-cache-memory", severity="error",
                              message=f"{where}: {ev.stage.weights_bytes / GIB:.2f} GiB weights + {c.activation_gib:.2f} "
                                      f"activation + {c.non_torch_gib:.2f} non-torch leave "
                                      f"{ev.available_bytes / GIB:.2f} GiB of the {ev.requested_bytes / GIB:.2f} GiB budget "
                                      f"for the KV cache (vLLM: No available memory for the cache blocks){then}",
                              summary=f"{name}: no KV cache memory at TP={s.tensor_parallel_size} "
                                      f"({ev.available_bytes / GIB:.2f} GiB)" + _short_fix(sug)))
    elif not ev.max_len_fits and not ev.problems and ev.layout is not None:
        need = ev.layout.bytes_needed(s.max_model_len, ev.in_flight, s.behaviour)
        longest = ev.layout.estimate_max_model_len(ev.check_bytes, s.max_model_len, ev.in_flight, s.behaviour)
        reasons.append(Reason(code="max-model-len-exceeds-kv-cache", severity="error",
                              message=f"{where}: one {s.max_model_len:,}-token request needs {need / GIB:.2f} GiB of KV "
                                      f"cache but only {ev.available_bytes / GIB:.2f} GiB is available; vLLM's estimated "
                                      f"maximum model length is {longest:,}{then}",
                              summary=f"{name}: max-model-len {s.max_model_len:,} needs {need / GIB:.2f} GiB KV, "
                                      f"{ev.available_bytes / GIB:.2f} available" + _short_fix(sug)))
    fits_so_far = not any(r.severity == "error" for r in reasons)
    if fits_so_far and not ev.cuda_graph_subtracted and not s.enforce_eager and not ev.free_memory_short:
        headroom = gpu.total_bytes * (1 - s.gpu_memory_utilization) - (gpu.total_bytes - ev.physical_bytes)
        sampler = min(s.max_num_seqs, s.max_num_batched_tokens) * pad_vocab(model.geometry.vocab_size) * 4
        graphs = max(ev.constants.cuda_graph_gib, 0.0) * GIB
        if graphs + sampler > headroom:
            reasons.append(Reason(code="cuda-graph-headroom", severity="warning",
                                  message=f"{name}: CUDA graphs (~{graphs / GIB:.2f} GiB) + sampler warm-up "
                                          f"({sampler / GIB:.2f} GiB) may not fit the {headroom / GIB:.2f} GiB left by "
                                          f"--gpu-memory-utilization {s.gpu_memory_utilization}",
                                  summary=f"{name}: CUDA graphs + sampler may not fit the "
                                          f"{headroom / GIB:.2f} GiB left by util {s.gpu_memory_utilization}"))
    if fits_so_far and ev.layout is not None and ev.num_blocks > 0 and ev.concurrency < 1:
        # vLLM 0.14-0.18 check only the first KV cache group at startup: it starts, and then a
        # request of max-model-len never gets the blocks it needs.
        first_group = s.behaviour.check_uses_groups and not s.behaviour.check_sums_all_groups
        why = (f"vLLM {s.vllm_version} starts because its startup check reads only the first KV cache group"
               if first_group else "vLLM starts")
        fix = f"; {_max_len_at(s, sug)}" if sug.max_model_len else ""
        reasons.append(Reason(code="max-model-len-unschedulable", severity="warning",
                              message=f"{where}: one {s.max_model_len:,}-token request can never be scheduled: the "
                                      f"{ev.available_bytes / GIB:.2f} GiB KV cache holds {ev.concurrency:.2f}x of one "
                                      f"({why}){fix}",
                              summary=f"{name}: a {s.max_model_len:,}-token request never fits the KV cache "
                                      f"({ev.concurrency:.2f}x)" + _short_fix(sug)))
    elif fits_so_far and ev.layout is not None and ev.concurrency < threshold:
        reasons.append(Reason(code="low-concurrency", severity="warning",
                              message=f"{name}: only {ev.concurrency:.2f}x concurrency at {s.max_model_len:,} tokens "
                                      f"({ev.available_bytes / GIB:.2f} GiB KV cache); threshold {threshold:g}x",
                              summary=f"{name}: only {ev.concurrency:.2f}x concurrency at {s.max_model_len:,} tokens "
                                      f"({ev.available_bytes / GIB:.2f} GiB KV)"))
    return reasons

