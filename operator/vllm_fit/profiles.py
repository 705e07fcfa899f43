"""Load the bundled data in profiles/: GPU catalog, runtime constants, model metadata.

The data folder is the repository's `profiles/` in a checkout, and `vllm_fit/profiles_data`
in an installed wheel; `VLLM_FIT_PROFILES` points elsewhere.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import VllmFitError
from .memory.gpu import GpuCatalog, GpuSpec, MigProfile
from .memory.model_info import ModelInfo
from .memory.runtime import RuntimeProfiles


def profiles_dir() -> Path:
    override = os.environ.get("VLLM_FIT_PROFILES")
    if override:
        return Path(override)
    checkout = Path(__file__).resolve().parents[2] / "profiles"
    if (checkout / "gpus.yaml").exists():
        return checkout
    return Path(__file__).resolve().parent / "profiles_data"


def _yaml(path: Path) -> Any:
    try:
        with path.open() as handle:
            return yaml.safe_load(handle)
    except FileNotFoundError:
        raise VllmFitError(f"bundled data file {path} is missing") from None
    except yaml.YAMLError as exc:
        raise VllmFitError(f"{path}: not valid YAML: {exc}") from None


@lru_cache(maxsize=4)
def gpu_catalog(directory: Optional[Path] = None) -> GpuCatalog:
    data = _yaml((directory or profiles_dir()) / "gpus.yaml")
    return GpuCatalog(
        gpus=tuple(GpuSpec(**entry) for entry in data.get("gpus", [])),
        mig_profiles=tuple(MigProfile(**entry) for entry in data.get("mig_profiles", [])),
    )


@lru_cache(maxsize=4)
def runtime_profiles(directory: Optional[Path] = None) -> RuntimeProfiles:
    return RuntimeProfiles(**_yaml((directory or profiles_dir()) / "vllm-runtime.yaml"))


def model_dir_name(model_id: str) -> str:
    return model_id.strip().replace("/", "--")


def load_model_folder(folder: Path, model_id: Optional[str] = None) -> ModelInfo:
    """A bundle folder: config.json plus optional weights.yaml (the format of profiles/models/)."""
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise VllmFitError(f"{folder} has no config.json") from None
    except json.JSONDecodeError as exc:
        raise VllmFitError(f"{config_path}: not valid JSON ({exc})") from None
    facts: dict[str, Any] = {}
    weights_path = folder / "weights.yaml"
    if weights_path.exists():
        facts = _yaml(weights_path) or {}
    caveats: list[str] = []
    params = {str(k): int(v) for k, v in (facts.get("params_by_dtype") or {}).items()}
    if facts.get("params_by_dtype_note"):
        caveats.append(f"parameter split: {facts['params_by_dtype_note']}")
    caveats.extend(str(c) for c in facts.get("caveats") or [])  # bundles written by `vllm-fit models fetch`
    if "CONSTRUCTED" in (folder / "SOURCE.md").read_text() if (folder / "SOURCE.md").exists() else False:
        caveats.append("config.json constructed from documented facts (see its SOURCE.md)")
    return ModelInfo(
        model_id=model_id or facts.get("model") or folder.name.replace("--", "/"),
        config=config,
        params_by_dtype=params,
        safetensors_total_bytes=facts.get("safetensors_total_bytes"),
        source=f"bundled: {folder}",
        caveats=tuple(caveats),
    )
