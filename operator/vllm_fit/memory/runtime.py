"""The data behind the overheads: measured values by vLLM version band and fitted coefficients.

It lives in profiles/vllm-runtime.yaml; each value carries where it was measured or fitted.
overheads.py turns it into activation, non-torch and CUDA-graph terms for one launch: a
measurement of the very model at the very settings wins, otherwise the terms are computed from
the model's shapes with the fitted coefficients, and non-torch comes from the band by layout.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from ..errors import VllmFitError
from .measured import MeasuredProfile
from .versions import parse_version


class Measured(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    value: float
    source: str


class ByParallelism(BaseModel):
    """A constant that depends on the parallel layout (non-torch memory grows with NCCL)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    tp1: Measured
    tp_multi: Measured  # TP >= 2
    pp_multi: Optional[Measured] = None  # PP >= 2 (TP 1)

    def pick(self, tp: int, pp: int) -> Measured:
        if tp >= 2:
            return self.tp_multi
        if pp >= 2 and self.pp_multi is not None:
            return self.pp_multi
        return self.tp1


class ModelOverride(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    activation_gib: Optional[float] = None
    # keyed by TP size as measured
    non_torch_gib: dict[int, float] = Field(default_factory=dict)
    cuda_graph_gib: dict[int, float] = Field(default_factory=dict)
    source: str
    # For readers of profiles/ (how a measurement was reconciled); never shown in plan output.
    note: Optional[str] = None


class MeasurementPoint(BaseModel):
    """The serve settings the band's activations were measured at (vLLM's dummy batch size)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    max_num_batched_tokens: int
    max_num_seqs: int
    source: str


class Band(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    activation_measured_at: MeasurementPoint
    min_version: str
    max_version: Optional[str] = None  # inclusive upper bound; None = open
    summary: str
    activation_gib: dict[str, Measured]  # architecture name or default_dense/default_moe/default_multimodal
    activation_pp_gib: dict[str, Measured] = Field(default_factory=dict)  # PP >= 2, where measured
    non_torch_gib: ByParallelism
    cuda_graph_gib: Measured  # per-GPU graph pool (estimate subtracted from 0.20; headroom check before)
    models: dict[str, ModelOverride] = Field(default_factory=dict)

    def contains(self, version: str) -> bool:
        v = parse_version(version)
        if v < parse_version(self.min_version):
            return False
        return self.max_version is None or v <= parse_version(self.max_version)


class FittedCoefficients(BaseModel):
    """Coefficients vLLM's code cannot give, fitted on the measurements each source names
    (bench/overheads_fit.py reproduces them; none of VALIDATION.md's logs is among them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    # Bytes torch keeps alive per row x vocab element at the sampler warm-up's peak, by the
    # top-k/top-p path: "sort" (torch sort: fp32 logits, sorted values, int64 indices, masks and
    # the sort's own buffers) or "triton" (vLLM's Triton top-k/top-p kernel, 0.17+).
    sampler_bytes_per_row_vocab: dict[str, Measured]
    # vLLM's CUDA-graph estimate (0.18+): the first FULL capture in fp32 split-KV accumulators
    # (splits x tokens x q width x 4 B), the first PIECEWISE capture's base beyond one layer's
    # transients, and each further graph per decoder layer (MiB).
    cuda_graph: "CudaGraphFit"


class CudaGraphFit(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    full_first_capture_splits: float
    piecewise_first_capture_base_mib: float
    per_graph_per_layer_mib: float
    source: str


FittedCoefficients.model_rebuild()


class RuntimeProfiles(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    bands: tuple[Band, ...]
    fitted: Optional[FittedCoefficients] = None
    cuda_context_gib: Measured  # taken before vLLM's first snapshot: outside util x total
    # Overheads measured on real launches (`vllm-fit logs --write-profile`, `--profiles DIR`),
    # used for a launch with exactly the same key (memory/measured.py).
    measured: tuple["MeasuredProfile", ...] = ()

    def band_for(self, version: str) -> Band:
        memo = self.__dict__.setdefault("_band_memo", {})
        if version not in memo:
            memo[version] = self._band_for(version)
        return memo[version]

    def _band_for(self, version: str) -> Band:
        for band in self.bands:
            if band.contains(version):
                return band
        oldest = min(self.bands, key=lambda b: parse_version(b.min_version))
        if parse_version(version) < parse_version(oldest.min_version):
            return oldest
        raise VllmFitError(f"no runtime profile covers vLLM {version}")
