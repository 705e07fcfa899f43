"""The one place that talks to the Hugging Face Hub (through `huggingface_hub`).

A fetch reads, for one model and revision: the model info (commit sha and the file list with
sizes), config.json, and the safetensors headers (one ranged GET `bytes=0-100000` per file,
a second one only for headers past 100 kB) - never the weights, never model code.

It uses the library's bounded primitives rather than `get_safetensors_metadata` /
`hf_hub_download`: those retry a hanging Hub for minutes whatever their timeout says, and the
HEAD probes they add are answered by the file list we already have. Every request here has
`settings.request_timeout`; the caller's deadline is enforced one level up (HubResolver).
"""

from __future__ import annotations

import inspect
import json
import os
import queue
import threading
import time
from typing import Any, Callable, Optional

from .. import __version__
from ..errors import VllmFitError
from ..memory.geometry import geometry_from_config, text_config
from ..memory.model_info import SAFETENSORS_DTYPE_BYTES, ModelInfo
from ..memory.weights import architecture_params
from .cache import DEFAULT_REVISION, HubRecord
from .errors import (BUNDLE_HINT, HubAccessDenied, HubBadResponse, HubError, HubModelNotFound, HubOffline,
                     HubUnavailable)
from .settings import HubSettings

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
SHARD_READERS = 8
_TORCH_TO_SAFETENSORS = {"bfloat16": "BF16", "float16": "F16", "half": "F16", "float32": "F32", "float": "F32"}
_TRANSPORT_MODULES = ("httpx", "httpcore", "requests", "urllib3", "ssl", "socket", "h11", "h2", "anyio")


def _hf():
    """Import huggingface_hub with telemetry off (it is read at import time, and patched if already imported)."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import huggingface_hub
        from huggingface_hub import constants
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise HubOffline("huggingface_hub cannot be imported (it is a dependency of vllm-fit: reinstall it); "
                         f"only bundled and cached models are known ({exc})") from None
    constants.HF_HUB_DISABLE_TELEMETRY = True
    return huggingface_hub


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _status(exc: BaseException) -> Optional[int]:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _is_transport(exc: BaseException) -> bool:
    for cls in type(exc).__mro__:
        if cls.__module__.split(".")[0].startswith(_TRANSPORT_MODULES):  # httpx, httpx2, requests, ...
            return True
    return isinstance(exc, (ConnectionError, TimeoutError, OSError)) and not _status(exc)


def translate(exc: BaseException, model_id: str, revision: str, settings: HubSettings) -> HubError:
    """The library's (version-dependent) exceptions as our distinct types."""
    if isinstance(exc, HubError):
        return exc
    names, status = _names(exc), _status(exc)
    where = f"{model_id!r} (revision {revision}) on {settings.endpoint}"
    token_hint = ("set HF_TOKEN or VLLM_FIT_HF_TOKEN_FILE to a token that has accepted the model's licence"
                  if settings.token is None else f"the token from {settings.token_source} was refused or lacks access")
    if "OfflineModeIsEnabled" in names:
        return HubOffline(f"{where}: the Hub client is in offline mode (HF_HUB_OFFLINE)")
    if "GatedRepoError" in names or "DisabledRepoError" in names:
        return HubAccessDenied(f"{where} is gated or disabled (HTTP {status}): {token_hint}")
    if "RevisionNotFoundError" in names:
        return HubModelNotFound(f"{where}: revision {revision!r} does not exist (HTTP {status})")
    if "HFValidationError" in names:
        return HubModelNotFound(f"{model_id!r} is not a Hugging Face model id ({exc})")
    if status in (401, 403):
        return HubAccessDenied(f"{where}: HTTP {status} - the model is gated or private, or does not exist "
                               f"(the Hub answers 401 for all three without a token): {token_hint}")
    if status == 404 or "RepositoryNotFoundError" in names:
        return HubModelNotFound(f"{where}: no such model (HTTP {status or 404})")
    if status is not None and (status >= 500 or status == 429):
        return HubUnavailable(f"{where}: the Hub answered HTTP {status}; try again later")
    if status is not None:
        return HubBadResponse(f"{where}: unexpected HTTP {status} from the Hub ({_short(exc)})")
    if _is_transport(exc):
        kind = "timed out" if "timeout" in type(exc).__name__.lower() else "unreachable"
        return HubUnavailable(f"{where}: the Hub is {kind} ({type(exc).__name__}: {_short(exc)}); "
                              f"check HF_ENDPOINT and the network, or {BUNDLE_HINT}")
    if isinstance(exc, (ValueError, KeyError, TypeError)) or "SafetensorsParsingError" in names:
        return HubBadResponse(f"{where}: the Hub's answer is not usable ({type(exc).__name__}: {_short(exc)})")
    return HubError(f"{where}: {type(exc).__name__}: {_short(exc)}")


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


class _Client:
    def __init__(self, settings: HubSettings) -> None:
        self.hf = _hf()
        self.settings = settings
        self.api = self.hf.HfApi(endpoint=settings.endpoint, token=settings.token,
                                 library_name="vllm-fit", library_version=__version__)

    def _headers(self) -> dict[str, str]:
        return self.hf.utils.build_hf_headers(token=self.settings.token, library_name="vllm-fit",
                                               library_version=__version__)

    def get_json(self, model_id: str, filename: str, revision: str) -> Any:
        url = self.hf.hf_hub_url(model_id, filename, revision=revision, endpoint=self.settings.endpoint)
        response = self.hf.utils.get_session().get(url, headers=self._headers(), timeout=self.settings.request_timeout)
        self.hf.utils.hf_raise_for_status(response)
        try:
            return json.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HubBadResponse(f"{model_id!r}: {filename} at {revision} is not valid JSON ({exc})") from None

    def safetensors_header(self, model_id: str, filename: str, revision: str):
        extra = {}
        if "timeout" in inspect.signature(self.api.parse_safetensors_file_metadata).parameters:  # not in 0.30
            extra["timeout"] = self.settings.request_timeout
        return self.api.parse_safetensors_file_metadata(model_id, filename, revision=revision, **extra)


def _parallel(func: Callable[[str], Any], items: list[str]) -> dict[str, Any]:
    """func over items in daemon threads (a stuck read never keeps the process alive)."""
    results: dict[str, Any] = {}
    errors: list[BaseException] = []
    work: "queue.Queue[str]" = queue.Queue()
    for item in items:
        work.put(item)

    def worker() -> None:
        while not errors:
            try:
                item = work.get_nowait()
            except queue.Empty:
                return
            try:
                results[item] = func(item)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

    threads = [threading.Thread(target=worker, daemon=True, name="vllm-fit-hub-shard")
               for _ in range(min(SHARD_READERS, len(items)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def _bin_fallback(config: dict, files: dict[str, Optional[int]]) -> tuple[dict[str, int], list[str]]:
    """No safetensors: the .bin file sizes over the dtype's width, if that agrees with the architecture."""
    bins = {name: size for name, size in files.items()
            if "/" not in name and name.endswith(".bin") and name.startswith("pytorch_model")}
    try:
        computed = architecture_params(geometry_from_config(config))
    except VllmFitError:
        computed = None
    text = text_config(config)
    dtype_name = str(text.get("torch_dtype") or config.get("torch_dtype") or text.get("dtype") or config.get("dtype") or "")
    dtype = _TORCH_TO_SAFETENSORS.get(dtype_name.lower())
    if bins and all(size for size in bins.values()) and dtype:
        total = sum(bins.values())
        estimate = int(total / SAFETENSORS_DTYPE_BYTES[dtype])
        note = (f"no safetensors in the repository: parameters estimated from {len(bins)} .bin file(s) of "
                f"{total:,} bytes at {dtype_name} ({estimate:,}); the estimate is rougher")
        if computed and 0.9 <= estimate / computed <= 1.5:
            return {dtype: estimate}, [note]
        return {}, [note + f", and it disagrees with the architecture ({computed or 0:,}), which is used instead"]
    return {}, ["no safetensors (and no usable .bin sizes) in the repository: weights estimated from the "
                "architecture alone; the estimate is rougher"]


def _shard_names(client: "_Client", model_id: str, sha: str, files: Optional[dict[str, Optional[int]]]) -> list[str]:
    """The safetensors files holding the model, from the file list (or by asking, for a mirror without one)."""
    if files is not None and SINGLE_FILE in files:
        return [SINGLE_FILE]
    if files is None:
        try:
            client.safetensors_header(model_id, SINGLE_FILE, sha)
            return [SINGLE_FILE]
        except BaseException as exc:  # noqa: BLE001
            if _status(exc) != 404:
                raise
    if files is not None and INDEX_FILE not in files:
        return []
    try:
        index = client.get_json(model_id, INDEX_FILE, sha)
    except BaseException as exc:  # noqa: BLE001
        if files is None and _status(exc) == 404:
            return []
        raise
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise HubBadResponse(f"{model_id!r}: {INDEX_FILE} at {sha} has no weight_map")
    return sorted(set(map(str, weight_map.values())))


def fetch_from_hub(settings: HubSettings, model_id: str, revision: Optional[str] = None) -> HubRecord:
    """One model's metadata from the Hub. Raises a HubError subtype; never downloads weights."""
    asked = revision or DEFAULT_REVISION
    if settings.offline:
        raise HubOffline(f"{model_id!r}: offline mode (HF_HUB_OFFLINE), and the model is neither bundled nor cached")
    try:
        client = _Client(settings)
        info = client.api.model_info(model_id, revision=revision, files_metadata=True,
                                     timeout=settings.request_timeout)
        sha = getattr(info, "sha", None) or asked
        siblings = getattr(info, "siblings", None)
        files: Optional[dict[str, Optional[int]]] = None
        if siblings is not None:
            files = {}
            for s in siblings:
                lfs = getattr(s, "lfs", None)
                files[s.rfilename] = getattr(s, "size", None) or (getattr(lfs, "size", None) if lfs else None)
            if "config.json" not in files:
                raise HubModelNotFound(f"{model_id!r} (revision {asked}) has no config.json: not a model vLLM "
                                       "loads from the Hub as is (a GGUF or adapter repository?)")
        config = client.get_json(model_id, "config.json", sha)
        if not isinstance(config, dict):
            raise HubBadResponse(f"{model_id!r}: config.json at {sha} is not a JSON object")

        caveats: list[str] = []
        params: dict[str, int] = {}
        total_bytes: Optional[int] = None
        durable = True
        shards = _shard_names(client, model_id, sha, files)
        headers = None
        if shards:
            try:
                headers = _parallel(lambda name: client.safetensors_header(model_id, name, sha), shards)
            except BaseException as exc:  # noqa: BLE001 - a parse failure degrades, anything else is raised
                if "SafetensorsParsingError" not in _names(exc):
                    raise
                durable = False
                caveats.append(f"the safetensors headers could not be read ({_short(exc, 160)}): weights "
                               "estimated from the architecture alone; the estimate is rougher")
        if headers:
            total_bytes = 0
            for meta in headers.values():
                for dtype, count in meta.parameter_count.items():
                    params[dtype] = params.get(dtype, 0) + int(count)
                for tensor in meta.tensors.values():
                    start, end = tensor.data_offsets
                    total_bytes += int(end) - int(start)
        elif durable:
            params, caveats = _bin_fallback(config, files or {})
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one of our types
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise translate(exc, model_id, asked, settings) from None

    url = f"{settings.endpoint}/{model_id}"
    model = ModelInfo(model_id=model_id, config=config, params_by_dtype=params, safetensors_total_bytes=total_bytes or None,
                      source=f"hub: {url} @ {sha}", caveats=tuple(caveats))
    return HubRecord(info=model, model_id=model_id, revision=asked, sha=sha, url=url, fetched_at=time.time(),
                     durable=durable)
