"""vLLM's Prometheus /metrics as vllm-fit reads it: the KV cache it allocated and how full it is.

- `vllm:cache_config_info{...} 1`: an info gauge whose labels are CacheConfig.metrics_info()
  (every CacheConfig field as a string): num_gpu_blocks, block_size, cache_dtype,
  gpu_memory_utilization, ... (V0 0.6+, V1), one series per engine (label `engine`, V1).
- `vllm:kv_cache_usage_perc` (0.9.2+) / `vllm:gpu_cache_usage_perc` (before; hidden from 0.11):
  the fraction of blocks in use, 1 = 100 %.
"""

from __future__ import annotations

import math
import re
from typing import Optional

from pydantic import BaseModel, ConfigDict

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\S+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
USAGE_METRICS = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")


class EngineCache(BaseModel):
    model_config = ConfigDict(frozen=True)
    engine: str  # "" where the series has no engine label (V0)
    num_gpu_blocks: Optional[int] = None
    block_size: Optional[int] = None
    cache_dtype: Optional[str] = None
    gpu_memory_utilization: Optional[float] = None
    kv_cache_usage: Optional[float] = None  # fraction of blocks in use
    usage_metric: Optional[str] = None


class VllmMetrics(BaseModel):
    model_config = ConfigDict(frozen=True)
    model_name: Optional[str] = None
    engines: tuple[EngineCache, ...] = ()

    @property
    def first(self) -> Optional[EngineCache]:
        return self.engines[0] if self.engines else None


def _labels(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        if not m:
            break
        out[m.group(1)] = m.group(2).replace('\\"', '"').replace("\\\\", "\\").replace("\\n", "\n")
        pos = m.end()
    return out


def _int(text: Optional[str]) -> Optional[int]:
    try:
        return int(float(text)) if text not in (None, "None", "") else None
    except ValueError:
        return None


def _float(text: Optional[str]) -> Optional[float]:
    try:
        value = float(text) if text not in (None, "None", "") else None
    except ValueError:
        return None
    return value if value is None or math.isfinite(value) else None


def parse_vllm_metrics(text: str) -> VllmMetrics:
    """Read a Prometheus text exposition; series vllm-fit does not use are skipped."""
    info: dict[str, dict[str, str]] = {}
    usage: dict[str, tuple[float, str]] = {}
    model_name: Optional[str] = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line.strip())
        if not m or not m.group("name").startswith("vllm:"):
            continue
        name, labels = m.group("name"), _labels(m.group("labels") or "")
        engine = labels.get("engine", "")
        model_name = model_name or labels.get("model_name")
        if name == "vllm:cache_config_info":
            info[engine] = labels
        elif name in USAGE_METRICS:
            value = _float(m.group("value"))
            # The current name wins over the deprecated one when a server exports both.
            if value is not None and (engine not in usage or name == USAGE_METRICS[0]):
                usage[engine] = (value, name)
    engines = []
    for engine in sorted(set(info) | set(usage), key=lambda e: (len(e), e)):
        labels = info.get(engine, {})
        value, metric = usage.get(engine, (None, None))
        engines.append(EngineCache(
            engine=engine, num_gpu_blocks=_int(labels.get("num_gpu_blocks")), block_size=_int(labels.get("block_size")),
            cache_dtype=labels.get("cache_dtype"), gpu_memory_utilization=_float(labels.get("gpu_memory_utilization")),
            kv_cache_usage=value, usage_metric=metric))
    return VllmMetrics(model_name=model_name, engines=tuple(engines))


def blocks_for_tokens(tokens: int, block_size: int) -> int:
    """Blocks one request of `tokens` tokens occupies (full attention: ceil(tokens / block))."""
    return -(-tokens // block_size)
