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
from .launch.flags import FlagTable
from .gpu_catalog import GpuCatalog, GpuSpec, MigProfile
from .memory.measured import MeasuredProfile
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
def vllm_flag_table(directory: Optional[Path] = None) -> FlagTable:
    """The options each vLLM release accepts (vllm-flags.yaml, from scripts/gen_vllm_flags.py)."""
    path = (directory or profiles_dir()) / "vllm-flags.yaml"
    try:
        return FlagTable.from_data(_yaml(path) or {})
    except (ValueError, AttributeError) as exc:
        raise VllmFitError(f"{path}: {exc}") from None


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


# ---------------------------------------------------------------- measured profiles (--profiles DIR)

PROFILES_DIR_ENV = "VLLM_FIT_EXTRA_PROFILES"  # where the webhook finds the chart's ConfigMap


def load_measured_profiles(directory: Path) -> tuple["MeasuredProfile", ...]:
    """Every measured profile in DIR's *.yaml/*.yml files (sorted by name; later entries win)."""
    from .logs.profile import parse_profile_file

    if not directory.exists():
        raise VllmFitError(f"--profiles {directory}: no such directory")
    if not directory.is_dir():
        raise VllmFitError(f"--profiles {directory}: not a directory")
    entries: list[MeasuredProfile] = []
    # A ConfigMap volume holds its files as symlinks into a ..data directory: follow them, skip the dot entries.
    for path in sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith(".")):
        try:
            text = path.read_text()
        except OSError as exc:
            raise VllmFitError(f"{path}: cannot read ({exc.strerror})") from None
        entries.extend(parse_profile_file(text, str(path)))
    return tuple(entries)


@lru_cache(maxsize=8)
def _runtime_profiles_with(directory: Optional[str], mtime: float) -> RuntimeProfiles:
    base = runtime_profiles()
    if directory is None:
        return base
    extra = load_measured_profiles(Path(directory))
    return base.model_copy(update={"measured": base.measured + extra})


def runtime_profiles_with(directory: Optional[str]) -> RuntimeProfiles:
    """The bundled runtime profiles plus the measured profiles in `directory` (None: none).
    Reloaded when the directory changes (a ConfigMap update)."""
    if directory is None:
        return runtime_profiles()
    try:
        mtime = max([Path(directory).stat().st_mtime] + [p.stat().st_mtime for p in Path(directory).iterdir()])
    except OSError:
        mtime = 0.0
    return _runtime_profiles_with(directory, mtime)


def write_measured_profile(path: Path, entry: "MeasuredProfile") -> None:
    """Add `entry` to the profile file at `path` (replacing one with the same key), atomically."""
    from .logs.profile import merged_entries, parse_profile_file, profile_file_text

    existing: tuple[MeasuredProfile, ...] = ()
    if path.exists():
        try:
            existing = parse_profile_file(path.read_text(), str(path))
        except OSError as exc:
            raise VllmFitError(f"{path}: cannot read ({exc.strerror})") from None
    text = profile_file_text(merged_entries(existing, entry))
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise VllmFitError(f"{path}: cannot write ({exc.strerror})") from None
