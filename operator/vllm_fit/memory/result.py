"""What a plan returns: per-GPU memory, the KV cache, the verdict, suggestions and how each
overhead was derived. Plain frozen models, no logic beyond small accessors."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

# "info": a fact about the launch that is no problem (e.g. an accelerator vllm-fit does not model).
Severity = Literal["error", "warning", "info"]
DEFAULT_CONCURRENCY_THRESHOLD = 2.0
DEFAULT_GPUS_PER_NODE = 8


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True)
    code: str
    severity: Severity
    message: str  # one line with the numbers and the fix
    summary: str = ""  # the same under ~120 characters, for admission warnings

    def short(self) -> str:
        return self.summary or self.message


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True)
    fits: bool
    reasons: tuple[Reason, ...] = ()

    @property
    def errors(self) -> tuple[Reason, ...]:
        return tuple(r for r in self.reasons if r.severity == "error")

    @property
    def warnings(self) -> tuple[Reason, ...]:
        return tuple(r for r in self.reasons if r.severity == "warning")

    @property
    def problems(self) -> tuple[Reason, ...]:
        """Errors and warnings (what a user must read); info notes left out."""
        return tuple(r for r in self.reasons if r.severity != "info")


class PerGpu(BaseModel):
    model_config = ConfigDict(frozen=True)
    weights_gib: float
    activation_gib: float
    non_torch_gib: float
    cuda_graph_gib: float
    requested_gib: float
    kv_cache_gib: float


class KvCache(BaseModel):
    model_config = ConfigDict(frozen=True)
    bytes_per_token: int
    block_size: int
    blocks: int
    tokens: int
    max_model_len: int
    max_concurrency: float
    kv_cache_dtype: str
    groups: tuple[str, ...] = ()
    bytes_needed_for_max_model_len: int = 0


class Suggestions(BaseModel):
    model_config = ConfigDict(frozen=True)
    tensor_parallel_size: Optional[int] = None
    tensor_parallel_kv_cache_gib: Optional[float] = None
    tensor_parallel_max_concurrency: Optional[float] = None
    max_model_len: Optional[int] = None
    # The TP at which `max_model_len` fits (the launch's own, or the smallest on one node that does).
    max_model_len_tensor_parallel_size: Optional[int] = None
    kv_cache_dtype: Optional[str] = None
    multi_node: Optional[dict[str, int]] = None
    # With a GPU count that does not match TPxPPxDP: the largest valid TP that fits the GPUs given and starts.
    tensor_parallel_size_for_gpus_given: Optional[int] = None


class MemoryPlan(BaseModel):
    """The result: per-GPU memory, the KV cache, a verdict with reasons, and suggestions."""

    model_config = ConfigDict(frozen=True)
    model: str
    vllm_version: str
    profile_band: str
    # How the version was decided: "image tag", "stated", or "default: ..." (see plan()).
    vllm_version_source: str = ""
    gpu: dict[str, object]
    parallel: dict[str, int]
    per_gpu: PerGpu
    kv_cache: KvCache
    verdict: Verdict
    suggestions: Suggestions
    settings: dict[str, object] = Field(default_factory=dict)
    # How each overhead was derived: per term its GiB, kind (computed/fitted/measured), a one-line
    # derivation and its parts; plus the budget identity used.
    derivation: dict[str, object] = Field(default_factory=dict)
    sources: dict[str, str] = Field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # False when vLLM refuses the arguments themselves (invalid values, TP/PP the model cannot
    # split over, fewer GPUs than TPxPPxDP): the memory figures above are then not what vLLM
    # would log (it never gets that far) and are not shown; the reasons carry the fix.
    valid: bool = True

    def to_json_dict(self) -> dict[str, object]:
        data = self.model_dump(mode="json")
        if not self.valid:  # no figures for a launch vLLM refuses before it measures memory
            data["per_gpu"] = data["kv_cache"] = data["derivation"] = None
        return data

