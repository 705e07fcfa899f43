"""What changes with the vLLM version: code behaviour read from vLLM's source.

Each switch cites the first release whose wheel has it (see profiles/README.md, "vLLM memory
accounting by version", for the reading of the source). Measured constants (activation,
non-torch, CUDA graphs) are not here: they live in profiles/vllm-runtime.yaml.
"""

from __future__ import annotations

import re
from functools import lru_cache

from pydantic import BaseModel, ConfigDict

from ..errors import VllmFitError

# The version a launch is judged as when its image states none (`latest`, a digest, a product
# tag): the newest release modelled here. Webhook `default_vllm_version` and the CLI's
# `--vllm-version` override it.
NEWEST_MODELLED_VERSION = "0.34.0"
DEFAULT_VLLM_VERSION = NEWEST_MODELLED_VERSION
# The seed table's release (profiles/measurements/vllm-0.11-h100-seed.md).
SEED_VLLM_VERSION = "0.11.0"


def parse_version(text: str) -> tuple[int, int, int]:
    match = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", str(text).strip())
    if not match:
        raise VllmFitError(f"vLLM version {text!r} is not of the form X.Y.Z")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


class VllmBehaviour(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: str
    # 0.20.0: default --gpu-memory-utilization 0.9 -> 0.92 (together with the CUDA-graph estimate).
    default_gpu_memory_utilization: float
    # 0.20.0: VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS defaults to 1: the estimate is subtracted.
    subtracts_cuda_graph_estimate: bool
    # 0.14.0: requested = ceil(total * util) (vllm/v1/worker/utils.py request_memory).
    requested_is_ceiled: bool
    # 0.21.0: "GPU KV cache size" tokens = int(max_concurrency * max_model_len).
    tokens_from_concurrency: bool
    # 0.29: concurrency = num_blocks / sum over groups of cdiv(usage, page).
    per_group_concurrency_cdiv: bool
    # 0.14.0: the max-seq-len check is done on groups; 0.19.0: it sums all groups, not the first.
    check_uses_groups: bool
    check_sums_all_groups: bool
    # 0.14.0: --max-model-len auto / -1.
    supports_auto_max_model_len: bool
    # 0.11-0.17 --block-size choices; any positive int from 0.18.
    block_size_choices: tuple[int, ...]
    # 0.26: sliding-window reserve uses max_in_flight_tokens (~2x max_num_batched_tokens with async scheduling).
    sliding_window_in_flight_factor: int
    # 0.29: the null block is held back from the checks.
    holds_back_null_block: bool
    # 0.29: B200-class (>= 160 GiB) serve default max_num_batched_tokens 16384.
    large_gpu_batch_tier: bool
    # 0.33: GB10 (compute capability 12.1) stays on the small serve-default tier despite its memory.
    gb10_small_batch_tier: bool
    # The sampler warm-up's top-k/top-p path (v1/sample/ops/topk_topp_sampler.py apply_top_k_top_p):
    # torch sort before 0.17; the Triton kernel from 8 rows in 0.17-0.29; Triton for every row
    # from 0.30 (the `>= 8` test is gone).
    sampler_topk_topp: str
    # Whether the sampler uses FlashInfer's sort-free top-k/top-p kernel when VLLM_USE_FLASHINFER_SAMPLER
    # is unset: V1 before 0.11 did wherever flashinfer was installed (the official image has it;
    # logs say "Using FlashInfer for top-p & top-k sampling"); 0.11-0.21 made it opt-in (PR #26859,
    # envs.py default None -> forward_native); 0.22 defaults it to on again (envs.py default True),
    # on compute capability 7.5-12.1 (FlashInferBackend.supports_compute_capability).
    flashinfer_sampler_default: bool
    # 0.27: profile_cudagraph_memory runs after the memory_profiling context, so its residue no
    # longer lands in "non-torch forward increase"; and the budget becomes requested -
    # (total_consumed + transient peak) (utils/mem_utils.py), which also charges persistent
    # allocations made outside load_model.
    cuda_graph_estimate_outside_profile: bool
    # 0.29: VLLM_ENABLE_STARTUP_PLAN=1 (off by default) saves the measured KV size per
    # fingerprint and later boots reuse it as kv_cache_memory_bytes (v1/worker/startup_plan.py).
    startup_plan: bool
    # 0.34: the extensible KV cache (config/vllm.py _resolve_extensible_kv_cache): on by default on
    # CUDA/ROCm, sized after warm-up and graph capture (v1/worker/extensible_kv_cache.py), and
    # gpu_memory_utilization defaults to None -> 1.0 (config/cache.py resolved_gpu_memory_utilization).
    extensible_kv_cache: bool
    # The V0 engine: the default before 0.8; VLLM_USE_V1=0 selects it until 0.11 removed it.
    v0_engine: bool
    v0_selectable: bool
    # 0.34: only the V2 GPU model runner (v1/worker/gpu/model_runner.py) exists; its sampler
    # warm-up runs twice (model-dtype pass, then the fp32 warm-up-parameter pass).
    model_runner_v2: bool


@lru_cache(maxsize=64)
def behaviour_for(version: str) -> VllmBehaviour:
    v = parse_version(version)
    return VllmBehaviour(
        version=".".join(map(str, v)),
        default_gpu_memory_utilization=0.92 if v >= (0, 20, 0) else 0.9,
        subtracts_cuda_graph_estimate=v >= (0, 20, 0),
        requested_is_ceiled=v >= (0, 14, 0),
        tokens_from_concurrency=v >= (0, 21, 0),
        per_group_concurrency_cdiv=v >= (0, 29, 0),
        check_uses_groups=v >= (0, 14, 0),
        check_sums_all_groups=v >= (0, 19, 0),
        supports_auto_max_model_len=v >= (0, 14, 0),
        block_size_choices=(1, 8, 16, 32, 64, 128) if v < (0, 18, 0) else (),
        sliding_window_in_flight_factor=2 if v >= (0, 26, 0) else 1,
        holds_back_null_block=v >= (0, 29, 0),
        large_gpu_batch_tier=v >= (0, 29, 0),
        gb10_small_batch_tier=v >= (0, 33, 0),
        sampler_topk_topp="sort" if v < (0, 17, 0) else ("triton_from_8_rows" if v < (0, 30, 0) else "triton"),
        flashinfer_sampler_default=v < (0, 11, 0) or v >= (0, 22, 0),
        cuda_graph_estimate_outside_profile=v >= (0, 27, 0),
        startup_plan=v >= (0, 29, 0),
        extensible_kv_cache=v >= (0, 34, 0),
        model_runner_v2=v >= (0, 34, 0),
        v0_engine=v < (0, 8, 0),
        v0_selectable=v < (0, 11, 0),
    )


def newest_modelled(version: str) -> bool:
    return parse_version(version) >= parse_version(NEWEST_MODELLED_VERSION)
