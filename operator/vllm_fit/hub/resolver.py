"""One interface for model metadata, whatever holds it.

`ModelResolver.resolve(model_id, revision, timeout=None)` returns a ModelInfo or raises
ModelNotFound (a VllmFitError, so callers report it like any other bad input); it and the Hub's
failures, its subclasses, live in hub/errors.py. The webhook, `plan` and `check` all go through
`default_resolver()`: local directory -> bundled (+ extra bundle dirs) -> cache -> Hub.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Optional, Protocol, Union

from ..errors import VllmFitError
from ..memory.model_info import SAFETENSORS_DTYPE_BYTES, ModelInfo
from ..profiles import load_model_folder, model_dir_name, profiles_dir
from .errors import ModelNotFound


if TYPE_CHECKING:  # pragma: no cover
    from .hub_resolver import HubResolver


class ModelResolver(Protocol):
    """`timeout` (seconds) bounds the lookup; resolvers without I/O may ignore it."""

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
    """Try resolvers in order; the first that knows the model answers.

    When none does, the error is of the most specific type any of them raised (a Hub
    failure such as HubAccessDenied or HubTimeout wins over a plain "not bundled").
    """

    def __init__(self, resolvers: Iterable[ModelResolver]) -> None:
        self.resolvers = list(resolvers)

    @property
    def hub(self) -> Optional["HubResolver"]:
        from .hub_resolver import HubResolver

        return next((r for r in self.resolvers if isinstance(r, HubResolver)), None)

    def resolve(self, model_id: str, revision: Optional[str] = None, timeout: Optional[float] = None) -> ModelInfo:
        misses: list[ModelNotFound] = []
        for resolver in self.resolvers:
            try:
                if timeout is None:
                    return resolver.resolve(model_id, revision)
                return resolver.resolve(model_id, revision, timeout=timeout)  # type: ignore[call-arg]
            except ModelNotFound as exc:
                misses.append(exc)
        raise self._unknown(model_id, misses)

    async def aresolve(self, model_id: str, revision: Optional[str] = None, timeout: Optional[float] = None) -> ModelInfo:
        """For asyncio callers (the webhook): the Hub step waits without blocking the event loop."""
        misses: list[ModelNotFound] = []
        for resolver in self.resolvers:
            try:
                if hasattr(resolver, "aresolve"):
                    return await resolver.aresolve(model_id, revision, timeout=timeout)  # type: ignore[attr-defined]
                return resolver.resolve(model_id, revision)  # local files only: fast
            except ModelNotFound as exc:
                misses.append(exc)
        raise self._unknown(model_id, misses)

    @staticmethod
    def _unknown(model_id: str, misses: list[ModelNotFound]) -> ModelNotFound:
        specific = [m for m in misses if type(m) is not ModelNotFound]
        kind = type(specific[-1]) if specific else ModelNotFound
        return kind(f"unknown model {model_id!r}: " + "; ".join(str(m) for m in misses))


def default_resolver(extra_bundles: Iterable[Path] = (), *, hub: Union[bool, "HubResolver", None] = None,
                     env: Optional[Mapping[str, str]] = None, local_dirs: bool = True) -> ChainResolver:
    """local directory -> bundled (+ extra_bundles + $VLLM_FIT_MODEL_BUNDLE_DIRS) -> cache -> Hub.

    `hub`: None/True builds a HubResolver from the environment (HF_ENDPOINT, HF_TOKEN,
    VLLM_FIT_HF_TOKEN_FILE, HF_HUB_OFFLINE, VLLM_FIT_CACHE_DIR, ...; see hub/settings.py);
    False leaves the Hub and the cache out; a HubResolver is used as given (keep one per
    process: its memory cache and single flight live in it). Building it imports nothing from
    huggingface_hub; that happens at the first real Hub request.
    """
    from .hub_resolver import HubResolver
    from .settings import HubSettings, bundle_dirs_from_env

    bundles: list[Path] = []
    for folder in [*map(Path, extra_bundles), *bundle_dirs_from_env(env)]:
        if folder not in bundles:
            bundles.append(folder)
    # local_dirs=False for the webhook: a path in a manifest names a folder inside the vLLM pod.
    resolvers: list[ModelResolver] = [*([LocalDirResolver()] if local_dirs else []), BundledResolver(bundles)]
    if hub is not False:
        resolvers.append(hub if isinstance(hub, HubResolver) else HubResolver(HubSettings.from_env(env)))
    return ChainResolver(resolvers)
