"""Model metadata fetched from the Hub, kept on disk in the bundle format of profiles/models/.

A cached entry is a folder `<cache>/models/<org>--<name>/<revision>/` holding config.json and
weights.yaml (with `fetched_at`, `sha`, `revision`). The same two files, written elsewhere by
`vllm-fit models fetch --out DIR`, are a bundle for an air-gapped cluster.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import quote, unquote

import yaml

from ..errors import VllmFitError
from ..memory.model_info import ModelInfo
from ..profiles import load_model_folder, model_dir_name

DEFAULT_REVISION = "main"
_SHA = re.compile(r"[0-9a-f]{40}")


def is_commit_sha(revision: Optional[str]) -> bool:
    return bool(revision and _SHA.fullmatch(revision))


def cache_key(model_id: str, revision: Optional[str]) -> tuple[str, str]:
    return model_id.strip().lower(), (revision or DEFAULT_REVISION)


@dataclass(frozen=True)
class HubRecord:
    """One lookup's result with where and when it came from."""

    info: ModelInfo
    model_id: str
    revision: str  # as asked for (branch, tag or sha)
    sha: Optional[str]  # the commit it resolved to
    url: str
    fetched_at: float  # epoch seconds
    # False when the facts are degraded by a fault that may pass (an unreadable header):
    # such a record is served for a short time and never written to disk.
    durable: bool = True

    def fresh(self, ttl: float, now: Optional[float] = None) -> bool:
        if is_commit_sha(self.revision):
            return True  # a commit never changes
        return ((now if now is not None else time.time()) - self.fetched_at) < ttl

    @property
    def fetched_date(self) -> str:
        return datetime.fromtimestamp(self.fetched_at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def weights_yaml(self) -> dict:
        info = self.info
        facts: dict = {"model": self.model_id, "revision": self.revision, "sha": self.sha}
        if info.params_by_dtype:
            facts["params_by_dtype"] = dict(info.params_by_dtype)
            facts["total_params"] = sum(info.params_by_dtype.values())
        if info.safetensors_total_bytes:
            facts["safetensors_total_bytes"] = info.safetensors_total_bytes
        facts["source"] = f"{self.url} @ {self.sha or self.revision} (revision {self.revision}), fetched {self.fetched_date}"
        facts["fetched_at"] = round(self.fetched_at, 3)
        if info.caveats:
            facts["caveats"] = list(info.caveats)
        return facts


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_bundle(folder: Path, record: HubRecord) -> Path:
    """config.json + weights.yaml (weights.yaml last: its presence marks a complete entry)."""
    _atomic_write(folder / "config.json", json.dumps(record.info.config, indent=2) + "\n")
    header = ("# Weight facts: parameter counts by safetensors dtype as huggingface_hub.get_safetensors_metadata\n"
              "# reports them, and total tensor bytes. Written by `vllm-fit models fetch`.\n")
    _atomic_write(folder / "weights.yaml", header + yaml.safe_dump(record.weights_yaml(), sort_keys=False, width=120))
    return folder


def read_bundle(folder: Path) -> Optional[HubRecord]:
    """A cached entry, or None when the folder is not a complete, readable entry."""
    weights = folder / "weights.yaml"
    if not (weights.is_file() and (folder / "config.json").is_file()):
        return None
    try:
        facts = yaml.safe_load(weights.read_text()) or {}
        info = load_model_folder(folder)
    except (OSError, yaml.YAMLError, VllmFitError):
        return None
    source = str(facts.get("source") or "")
    info = info.model_copy(update={"source": f"cache: {source}" if source else f"cache: {folder}"})
    revision = str(facts.get("revision") or DEFAULT_REVISION)
    return HubRecord(info=info, model_id=str(facts.get("model") or info.model_id), revision=revision,
                     sha=facts.get("sha"), url=source.split(" @ ")[0], fetched_at=float(facts.get("fetched_at") or 0))


class DiskCache:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @property
    def models_dir(self) -> Path:
        return self.directory / "models"

    def folder(self, model_id: str, revision: Optional[str]) -> Path:
        return self.models_dir / model_dir_name(model_id).lower() / quote(revision or DEFAULT_REVISION, safe="")

    def load(self, model_id: str, revision: Optional[str]) -> Optional[HubRecord]:
        return read_bundle(self.folder(model_id, revision))

    def store(self, record: HubRecord) -> Path:
        return write_bundle(self.folder(record.model_id, record.revision), record)

    def entries(self) -> Iterator[HubRecord]:
        if not self.models_dir.is_dir():
            return
        for model_folder in sorted(self.models_dir.iterdir()):
            if not model_folder.is_dir():
                continue
            for rev_folder in sorted(model_folder.iterdir()):
                record = read_bundle(rev_folder) if rev_folder.is_dir() else None
                if record is not None:
                    if record.revision == DEFAULT_REVISION and rev_folder.name != DEFAULT_REVISION:
                        record = HubRecord(**{**record.__dict__, "revision": unquote(rev_folder.name)})
                    yield record
