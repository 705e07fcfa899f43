"""What a vLLM startup log says: frozen records the reader returns and the CLI and observer use."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

Engine = Literal["V0", "V1"]
FailureCode = Literal[
    "no_kv_cache_memory",
    "max_model_len_too_long",
    "insufficient_free_memory",
    "cuda_oom_loading",
    "cuda_oom_profiling",
    "cuda_oom_cuda_graph",
    "cuda_oom",
    "engine_failed",
]
CudaGraphSource = Literal["captured", "estimated"]

# The figures of the seed's table, in the order reports print them.
SEED_FIGURES = (
    "weights_gib",
    "activation_gib",
    "non_torch_gib",
    "cuda_graph_gib",
    "kv_cache_gib",
    "kv_cache_tokens",
    "gpu_blocks",
    "max_concurrency",
    "max_model_len",
)
# Figures that belong to one rank (each worker profiles its own GPU); the rest are engine-wide.
PER_RANK_FIGURES = (
    "weights_gib",
    "activation_gib",
    "non_torch_gib",
    "weights_and_non_torch_gib",
    "cuda_graph_gib",
    "cuda_graph_estimate_gib",
    "kv_cache_gib",
    "total_gib",
    "free_gib",
    "requested_gib",
)


class MemoryFigures(BaseModel):
    """One rank's (or the engine's) figures as the log prints them; None = the log does not say."""

    model_config = ConfigDict(frozen=True)
    weights_gib: Optional[float] = None
    activation_gib: Optional[float] = None
    non_torch_gib: Optional[float] = None
    weights_and_non_torch_gib: Optional[float] = None  # "consumed memory (weights + non-torch)"
    cuda_graph_gib: Optional[float] = None  # captured, else vLLM's estimate (see cuda_graph_source)
    cuda_graph_source: Optional[CudaGraphSource] = None
    cuda_graph_estimate_gib: Optional[float] = None
    kv_cache_gib: Optional[float] = None
    kv_cache_tokens: Optional[int] = None
    gpu_blocks: Optional[int] = None
    max_concurrency: Optional[float] = None
    max_model_len: Optional[int] = None
    total_gib: Optional[float] = None
    free_gib: Optional[float] = None
    requested_gib: Optional[float] = None


class RankFigures(BaseModel):
    model_config = ConfigDict(frozen=True)
    rank: str  # the log's own prefix, e.g. "VllmWorker TP1 pid=1431"; "" for unprefixed lines
    figures: MemoryFigures


class StartupFailure(BaseModel):
    model_config = ConfigDict(frozen=True)
    code: FailureCode
    line: str  # the log line that shows it (prefixes and colours removed)


class StartupPlanEvent(BaseModel):
    """A VLLM_ENABLE_STARTUP_PLAN line: a plan applied to this boot, or saved by it."""

    model_config = ConfigDict(frozen=True)
    action: Literal["applied", "saved"]
    fingerprint: Optional[str] = None
    path: Optional[str] = None
    kv_cache_memory_bytes: Optional[int] = None


class StartupLog(BaseModel):
    """Everything `read_startup_log` found. `measured` holds rank 0's figures where ranks
    differ (or the first rank that prints a figure rank 0 does not); `ranks` lists every rank
    that printed its own figures when more than one did."""

    model_config = ConfigDict(frozen=True)
    vllm_version: Optional[str] = None
    engine: Optional[Engine] = None
    gpu_name: Optional[str] = None
    gpu_memory_utilization: Optional[float] = None
    measured: MemoryFigures = Field(default_factory=MemoryFigures)
    ranks: tuple[RankFigures, ...] = ()
    failure: Optional[StartupFailure] = None
    non_default_args: Optional[dict[str, object]] = None  # vLLM's "non-default args: {...}"
    non_default_args_line: Optional[str] = None
    engine_config: dict[str, object] = Field(default_factory=dict)  # from "Initializing ... with config:"
    startup_plan: tuple[StartupPlanEvent, ...] = ()
    notes: tuple[str, ...] = ()  # how derived figures were derived

    @property
    def gpu_total_gib(self) -> Optional[float]:
        return self.measured.total_gib

    def to_json_dict(self) -> dict[str, object]:
        """The `vllm-fit logs -o json` shape (without the prediction)."""
        measured = self.measured.model_dump(mode="json")
        return {
            "vllm_version": self.vllm_version,
            "engine": self.engine,
            "gpu": {"name": self.gpu_name, "total_gib": self.measured.total_gib},
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "measured": measured,
            "ranks": [{"rank": r.rank, **r.figures.model_dump(mode="json")} for r in self.ranks],
            "failure": self.failure.model_dump(mode="json") if self.failure else None,
            "non_default_args": self.non_default_args,
            "engine_config": self.engine_config,
            "startup_plan": [e.model_dump(mode="json") for e in self.startup_plan],
            "notes": list(self.notes),
        }
