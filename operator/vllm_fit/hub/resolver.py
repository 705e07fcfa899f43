"""One interface for model metadata, whatever holds it.

`ModelResolver.resolve(model_id, revision)` returns a ModelInfo or raises ModelNotFound (a
VllmFitError, so callers report it like any other bad input). The webhook, `plan` and `check`
all go through this.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Iterable, Optional, Protocol

from ..errors import VllmFitError
from ..memory.model_info import SAFETENSORS_DTYPE_BYTES, ModelInfo
from ..profiles import load_model_folder, model_dir_name, profiles_dir


class ModelNotFound(VllmFitError):
    """No resolver knows the model."""


class ModelResolver(Protocol):
    def resolve(self, model_id: str, revision: Optional[str] = None) -> ModelInfo: ...


class BundledResolver:
    """profiles/models/ plus any extra bundle directories (a mounted ConfigMap in clusters)."""

    def __init__(self, directories: Iterable[Path] = ()) -> None:
        self.directories = [profiles_dir() / "models", *[Path(d) for d in directories]]
        self._cache: dict[str, ModelInfo] = {}

    def known(self) -> list[str]:
        names: set[str] = set()
        for directory in self.directories:
            if directory.is_dir():
                names.update(p.name.replace("--", "/", 1) for p in directory.iterdir() if (p / "config.json").exists())
        return sorted(names)

    def resolve(self, model_id: str, revision: Optional[str] = None) -> ModelInfo:
        key = model_id.strip().lower()
        if key in self._cache:
            return self._cache[key]
        wanted = model_dir_name(model_id).lower()
        for directory in reversed(self.directories):  # extra bundles override the built-in ones
            if not directory.is_dir():
                continue
            for folder in directory.iterdir():
                if folder.name.lower() == wanted and (folder / "config.json").exists():
                    info = load_model_folder(folder)
                    self._cache[key] = info
                    return info
        raise ModelNotFound(f"model {model_id!r} is not in the bundled metadata")


def read_safetensors_header(path: Path) -> dict:
    with path.open("rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise VllmFitError(f"{path}: too short to be a safetensors file")
        (length,) = struct.unpack("<Q", raw)
        if length > 100_000_000:
            raise VllmFitError(f"{path}: safetensors header of {length} bytes is not plausible")
        body = handle.read(length)
    try:
        header = json.loads(body)
    except json.JSONDecodeError as exc:
        raise VllmFitError(f"{path}: safetensors header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise VllmFitError(f"{path}: safetensors header is not a JSON object")
    return header


def params_by_dtype_from_headers(paths: Iterable[Path]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in paths:
        for name, entry in read_safetensors_header(path).items():
            if name == "__metadata__" or not isinstance(entry, dict):
                continue
            shape = entry.get("shape") or []
            dtype = str(entry.get("dtype", "")).upper()
            if dtype not in SAFETENSORS_DTYPE_BYTES:
                raise VllmFitError(f"{path}: tensor {name} has unknown dtype {dtype!r}")
            size = 1
            for dim in shape:
                size *= int(dim)
            counts[dtype] = counts.get(dtype, 0) + size
    return counts


class LocalDirResolver:
    """A local checkpoint directory: config.json plus, when present, safetensors headers or an index."""

    def resolve(self, model_id: str, revision: Optional[str] = None) -> ModelInfo:
        folder = Path(model_id).expanduser()
        if not (folder / "config.json").exists():
            raise ModelNotFound(f"{model_id} is not a directory with a config.json")
        try:
            config = json.loads((folder / "config.json").read_text())
        except json.JSONDecodeError as exc:
            raise VllmFitError(f"{folder / 'config.json'}: not valid JSON ({exc})") from None
        shards = sorted(folder.glob("*.safetensors"))
        caveats: list[str] = []
        params: dict[str, int] = {}
        total_bytes = None
        if shards:
            params = params_by_dtype_from_headers(shards)
        elif (folder / "model.safetensors.index.json").exists():
            index = json.loads((folder / "model.safetensors.index.json").read_text())
            total_bytes = int((index.get("metadata") or {}).get("total_size") or 0) or None
            caveats.append("only the safetensors index: parameter counts estimated from the architecture")
        else:
            caveats.append("only config.json: parameters estimated from the architecture")
        return ModelInfo(model_id=str(folder), config=config, params_by_dtype=params, safetensors_total_bytes=total_bytes,
                         source=f"local directory {folder}", caveats=tuple(caveats))


class ChainResolver:
    """Try resolvers in order; the first that knows the model answers."""

    def __init__(self, resolvers: Iterable[ModelResolver]) -> None:
        self.resolvers = list(resolvers)

    def resolve(self, model_id: str, revision: Optional[str] = None) -> ModelInfo:
        misses: list[str] = []
        for resolver in self.resolvers:
            try:
                return resolver.resolve(model_id, revision)
            except ModelNotFound as exc:
                misses.append(str(exc))
        raise ModelNotFound(f"unknown model {model_id!r}: " + "; ".join(misses))


def default_resolver(extra_bundles: Iterable[Path] = ()) -> ChainResolver:
    return ChainResolver([LocalDirResolver(), BundledResolver(extra_bundles)])
