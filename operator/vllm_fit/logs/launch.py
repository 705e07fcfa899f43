"""The vLLM arguments a startup log shows, as flags `parse_vllm_args` reads: the same launch
re-planned. vLLM prints its non-default arguments (0.8+: `non-default args: {...}`, V0:
`args: Namespace(...)`) and the resolved engine config; what neither says is left to vLLM's
defaults, as for any launch."""

from __future__ import annotations

import json
from typing import Optional

from ..launch.model import MEMORY_FIELDS
from ..gpu_catalog import GpuCatalog, GpuSpec
from .model import StartupLog

# Engine-config keys (the "Initializing ... with config:" line) that are launch arguments.
_ENGINE_CONFIG_FLAGS = {
    "tensor_parallel_size": "tensor_parallel_size",
    "pipeline_parallel_size": "pipeline_parallel_size",
    "data_parallel_size": "data_parallel_size",
    "max_seq_len": "max_model_len",
    "dtype": "dtype",
    "quantization": "quantization",
    "enforce_eager": "enforce_eager",
    "kv_cache_dtype": "kv_cache_dtype",
}


def _flag(name: str, value: object) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag] if value else []
    if value is None or value == "auto" and name in ("kv_cache_dtype", "dtype"):
        return []
    if isinstance(value, (dict, list)):
        return [flag, json.dumps(value)]
    return [flag, str(value)]


def log_model(log: StartupLog) -> Optional[str]:
    for source in (log.non_default_args or {}, log.engine_config):
        for key in ("model", "model_tag"):
            value = source.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def launch_flags(log: StartupLog) -> list[str]:
    """vLLM flags for the launch the log shows (the model excluded: see log_model)."""
    stated: dict[str, object] = {}
    for key, value in (log.non_default_args or {}).items():
        if key in MEMORY_FIELDS and value is not None:
            stated[key] = value
    for key, field in _ENGINE_CONFIG_FLAGS.items():
        if field not in stated and log.engine_config.get(key) not in (None, "None"):
            stated[field] = log.engine_config[key]
    if "gpu_memory_utilization" not in stated and log.gpu_memory_utilization is not None:
        stated["gpu_memory_utilization"] = log.gpu_memory_utilization
    if "max_model_len" not in stated and log.measured.max_model_len is not None:
        stated["max_model_len"] = log.measured.max_model_len
    argv: list[str] = []
    for key, value in stated.items():
        argv += _flag(key, value)
    return argv


def modelled_version(logged: Optional[str]) -> Optional[str]:
    """The release to model for a logged version ("0.11.1.dev3+g1234" -> "0.11.1")."""
    if not logged:
        return None
    core = logged.split("+")[0]
    parts = core.split(".")
    if len(parts) >= 2 and all(p.isdigit() for p in parts[:2]):
        return ".".join(p for p in parts[:3] if p.isdigit()) or None
    return None


def log_gpu(log: StartupLog, catalog: GpuCatalog) -> Optional[GpuSpec]:
    """The GPU the log names, else the catalog GPU with the total memory the log prints."""
    gpu = None
    if log.gpu_name:
        short = log.gpu_name.replace("NVIDIA ", "").replace("GeForce ", "").strip()
        gpu = catalog.find(log.gpu_name) or catalog.find(short)
    total = log.measured.total_gib
    if gpu is None and total:
        # vLLM prints the total torch reports, to 2 decimals; variants of one GPU (SXM, PCIe)
        # share it and plan alike, so the catalog's first match is taken.
        matches = [g for g in catalog.gpus if abs(g.total_bytes / (1 << 30) - total) < 0.006]
        gpu = matches[0] if matches else catalog.resolve(f"{total}GiB")
    return gpu
