"""VLLM_ENABLE_STARTUP_PLAN files (vLLM 0.32+): the KV cache size a boot measured, per rank.

vLLM writes `{VLLM_CACHE_ROOT}/startup_plan/startup_plan_<fingerprint>.json` after its memory
profiling (vllm/v1/worker/startup_plan.py, maybe_save_startup_plan) as
`{"schema": 1|2, "fingerprint": "<16 hex>", "kv_cache_memory_bytes": int,
"free_memory_baseline": int}`. `kv_cache_memory_bytes` is the `--kv-cache-memory` that
reproduces the measured allocation within the requested memory; the fingerprint hashes the
vLLM version, config, device and rank, so one file is one rank of one launch.
"""

from __future__ import annotations

import json
from typing import Optional

from pydantic import BaseModel, ConfigDict

from ..errors import VllmFitError

GIB = float(1 << 30)
KNOWN_SCHEMAS = (1, 2)  # vLLM 0.32 writes 1, 0.34 writes 2; the fields read here are the same


class StartupPlan(BaseModel):
    model_config = ConfigDict(frozen=True)
    schema_version: int
    fingerprint: str
    kv_cache_memory_bytes: int
    free_memory_baseline_bytes: Optional[int] = None
    name: Optional[str] = None  # the file it came from, when known

    @property
    def kv_cache_gib(self) -> float:
        return self.kv_cache_memory_bytes / GIB

    @property
    def free_memory_baseline_gib(self) -> Optional[float]:
        return None if self.free_memory_baseline_bytes is None else self.free_memory_baseline_bytes / GIB


def read_startup_plan(text: str, name: Optional[str] = None) -> StartupPlan:
    """Parse one plan file's text. Raises VllmFitError when it is not a startup plan."""
    where = name or "startup plan"
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise VllmFitError(f"{where}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise VllmFitError(f"{where}: not a vLLM startup plan (expected a JSON object)")
    schema, fingerprint, kv = doc.get("schema"), doc.get("fingerprint"), doc.get("kv_cache_memory_bytes")
    baseline = doc.get("free_memory_baseline")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema not in KNOWN_SCHEMAS:
        raise VllmFitError(f"{where}: unknown startup-plan schema {schema!r} (known: {list(KNOWN_SCHEMAS)})")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise VllmFitError(f"{where}: no fingerprint")
    if not isinstance(kv, int) or isinstance(kv, bool) or kv <= 0:
        raise VllmFitError(f"{where}: kv_cache_memory_bytes must be a positive integer, not {kv!r}")
    if baseline is not None and (not isinstance(baseline, int) or isinstance(baseline, bool) or baseline < 0):
        raise VllmFitError(f"{where}: free_memory_baseline must be a non-negative integer, not {baseline!r}")
    return StartupPlan(schema_version=schema, fingerprint=fingerprint, kv_cache_memory_bytes=kv,
                       free_memory_baseline_bytes=baseline, name=name)
