"""What a launch states: the vLLM arguments a manifest or command line gives, nothing filled in."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

# The launch fields that change memory, with vLLM's own argument names (dashes -> underscores).
MEMORY_FIELDS: tuple[str, ...] = (
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "data_parallel_size",
    "data_parallel_size_local",
    "gpu_memory_utilization",
    "max_model_len",
    "block_size",
    "kv_cache_dtype",
    "dtype",
    "quantization",
    "enforce_eager",
    "max_num_seqs",
    "max_num_batched_tokens",
    "kv_cache_memory_bytes",
    "enable_expert_parallel",
    "cpu_offload_gb",
    "num_gpu_blocks_override",
    "disable_sliding_window",
    "disable_hybrid_kv_cache_manager",
    "kv_transfer_config",
    "kv_events_config",
    "limit_mm_per_prompt",
    "skip_mm_profiling",
    "distributed_executor_backend",
    "enable_extensible_kv_cache",
)


class VllmLaunch(BaseModel):
    """One `vllm serve` (or legacy api_server) invocation as stated.

    `None` means the launch does not set the value; defaults are vLLM's business and are
    applied by the memory model for the vLLM version in force. `max_model_len == -1` is
    `--max-model-len auto`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Optional[str] = None
    revision: Optional[str] = None
    tensor_parallel_size: Optional[int] = None
    pipeline_parallel_size: Optional[int] = None
    data_parallel_size: Optional[int] = None
    data_parallel_size_local: Optional[int] = None  # DP ranks in this pod (multi-node data parallel)
    gpu_memory_utilization: Optional[float] = None
    max_model_len: Optional[int] = None
    block_size: Optional[int] = None
    kv_cache_dtype: Optional[str] = None
    dtype: Optional[str] = None
    quantization: Optional[str] = None
    enforce_eager: Optional[bool] = None
    max_num_seqs: Optional[int] = None
    max_num_batched_tokens: Optional[int] = None
    kv_cache_memory_bytes: Optional[int] = None
    enable_expert_parallel: Optional[bool] = None
    cpu_offload_gb: Optional[float] = None
    num_gpu_blocks_override: Optional[int] = None
    disable_sliding_window: Optional[bool] = None
    disable_hybrid_kv_cache_manager: Optional[bool] = None
    # Present only to know they are set: vLLM turns the hybrid KV cache manager off for them.
    kv_transfer_config: Optional[str] = None
    kv_events_config: Optional[str] = None
    # Multimodal profiling: a JSON of items per modality (all 0 = text only) and the skip flag.
    limit_mm_per_prompt: Optional[str] = None
    skip_mm_profiling: Optional[bool] = None
    distributed_executor_backend: Optional[str] = None  # mp, ray, uni, external_launcher
    enable_extensible_kv_cache: Optional[bool] = None  # 0.34+; --no-enable-extensible-kv-cache turns it off
    vllm_version: Optional[str] = None
    # How vllm_version was decided: "image-tag", "default", "cli", "annotation" (None: not recorded).
    vllm_version_source: Optional[str] = None
    # VLLM_* environment variables that change memory (e.g. VLLM_ALLOW_LONG_MAX_MODEL_LEN).
    env: dict[str, str] = Field(default_factory=dict)
    # Values that exist but cannot be known here (valueFrom, envFrom, --config files), by flag.
    unresolved: tuple[str, ...] = ()
    # Where each stated value came from, e.g. {"max_model_len": "args[3]"}.
    sources: dict[str, str] = Field(default_factory=dict)

    def stated(self) -> dict[str, object]:
        """Only the memory-relevant values the launch sets."""
        return {name: getattr(self, name) for name in MEMORY_FIELDS if getattr(self, name) is not None}


GpuTypeSource = Literal[
    "annotation",
    "node-selector",
    "node-affinity",
    "gke-accelerator",
    "amd-label",
    "instance-type",
    "mig-resource",
    "default",
    "cli",
    "cluster",  # not stated: the GPUs of the cluster's Nodes the pod can be scheduled on
    "unknown",
]


class GpuRequest(BaseModel):
    """The GPUs one replica of a launch gets, and how their type was decided."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: Optional[int] = None  # GPUs per replica (for LeaderWorkerSet: per group): vLLM's world
    per_pod: Optional[int] = None  # GPUs each pod of the replica requests (None: not stated per pod)
    pods: int = 1  # pods that make one replica (LeaderWorkerSet size, multi-node LLMInferenceService)
    resource: Optional[str] = None  # e.g. "nvidia.com/gpu", "amd.com/gpu", "nvidia.com/mig-3g.40gb"
    type: Optional[str] = None  # a GPU catalog name or alias, or a size such as "40GiB"
    type_source: GpuTypeSource = "unknown"


# How a container was recognised as vLLM. The first three are certain; the others ("loose")
# recognise vendor images whose entrypoint runs vLLM without the word in the command, and can be
# turned off (`find_launches(loose=False)`, the webhook's `loose_detection: false`).
DetectionRule = Literal[
    "command",  # the command or args run `vllm serve` / vLLM's OpenAI server module (also in sh -c)
    "image",  # args (or nothing) on an image whose entrypoint is vLLM's server (vllm_images)
    "resource",  # a resource whose controller runs vLLM: KServe, LLMInferenceService, KAITO
    "engine-flags",  # loose: args-only, `--model` with a vLLM engine flag (TP, utilization, max-model-len)
    "label",  # loose: the pod is labelled app.kubernetes.io/name=vllm or app=vllm
    "container-name",  # loose: the container is named vllm (or vllm-*, *-vllm)
    "image-name",  # loose: the image's own name has "vllm" as a word (vendor vLLM builds)
]
LOOSE_RULES: frozenset[str] = frozenset({"engine-flags", "label", "container-name", "image-name"})


class ReplicaMember(BaseModel):
    """One kind of pod in a multi-pod replica (LeaderWorkerSet group, multi-node LLMInferenceService)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    container: str  # "<template>/<container>", e.g. "worker/vllm"
    role: Literal["leader", "worker"]
    pods: int  # how many pods of the replica run this template
    gpus_per_pod: int
    headless: bool = False  # `vllm serve --headless`: engine ranks only, no API server
    data_parallel_ranks_per_pod: Optional[int] = None  # --data-parallel-size-local in this pod
    # The data-parallel rank of this member's first pod (each next pod starts ranks_per_pod later).
    data_parallel_start_rank: Optional[int] = None

class Placement(BaseModel):
    """Where the scheduler may put the pod: what restricts it to some Nodes (as the pod spec says)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    node_selector: dict[str, str] = Field(default_factory=dict)
    # requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms (ORed), as given
    node_affinity_terms: Optional[tuple[dict, ...]] = None
    tolerations: tuple[dict, ...] = ()
    node_name: Optional[str] = None  # spec.nodeName: placed on that Node, the scheduler bypassed
