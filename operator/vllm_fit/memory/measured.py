"""Overheads measured on a real launch (a vLLM startup log), used for later launches with the
same key instead of the band's constants.

The key holds what the three measured terms depend on: the model, the GPU, the exact vLLM
release, the parallel layout and the settings vLLM profiles with (its dummy batch of
max_num_batched_tokens / max_num_seqs, the activation dtype, quantization, CUDA graphs on or
off). A launch that differs in any of them is planned from the band as before.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict

from ..gpu_catalog import GpuSpec
from .settings import Settings


class MeasuredKey(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    model: str
    gpu: str  # catalog name (or the device name vLLM's GPU reported)
    vllm_version: str
    tensor_parallel_size: int
    pipeline_parallel_size: int = 1
    data_parallel_size: int = 1
    max_num_batched_tokens: int
    max_num_seqs: int
    dtype: str
    quantization: Optional[str] = None
    enforce_eager: bool = False

    @classmethod
    def of(cls, model_id: str, s: Settings, gpu: GpuSpec) -> "MeasuredKey":
        return cls(model=model_id, gpu=gpu.name, vllm_version=s.vllm_version,
                   tensor_parallel_size=s.tensor_parallel_size, pipeline_parallel_size=s.pipeline_parallel_size,
                   data_parallel_size=s.data_parallel_size, max_num_batched_tokens=s.max_num_batched_tokens,
                   max_num_seqs=s.max_num_seqs, dtype=s.dtype, quantization=s.quantization,
                   enforce_eager=s.enforce_eager)


class MeasuredProfile(BaseModel):
    """One launch's measured per-GPU overheads (GiB), with where they were measured."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    key: MeasuredKey
    activation_gib: Optional[float] = None
    non_torch_gib: Optional[float] = None
    cuda_graph_gib: Optional[float] = None
    cuda_graph_estimated: bool = False  # the figure is vLLM's estimate, not a capture
    # What the same launch measured otherwise; kept to compare, not used to plan.
    weights_gib: Optional[float] = None
    kv_cache_gib: Optional[float] = None
    kv_cache_tokens: Optional[int] = None
    source: str  # the log it was read from (a file, a pod), and when


def find_measured(measured: tuple[MeasuredProfile, ...], model_id: Optional[str], s: Settings,
                  gpu: GpuSpec) -> Optional[MeasuredProfile]:
    """The last entry whose key equals this launch's (later files and entries win)."""
    if not measured or not model_id:
        return None
    key = MeasuredKey.of(model_id, s, gpu)
    found = None
    for entry in measured:
        if entry.key == key:
            found = entry
    return found
