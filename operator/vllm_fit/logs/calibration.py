"""The calibration store: overheads measured on this cluster's own vLLM pods, kept as profiles.

A ConfigMap holds it (`calibration.yaml`, the same format as `vllm-fit logs --write-profile`
files, so it can also be mounted as a profiles directory) plus which workload measured which
entry (`workloads.yaml`). Pure: the observer reads and writes the ConfigMap around it.

Bounds and freshness:
- at most `max_entries` entries; the oldest recorded go first;
- one entry per workload: when a workload is measured again under another key (its image,
  flags or GPU changed), the entry its old launch left is dropped, so nothing is planned from a
  launch that no longer exists;
- an entry with the same key as a new one is replaced by it.
"""

from __future__ import annotations

import hashlib
from typing import Mapping

import yaml
from pydantic import BaseModel, ConfigDict

from ..errors import VllmFitError
from ..memory.measured import MeasuredKey, MeasuredProfile
from .profile import parse_profile_file, profile_file_text

ENTRIES_KEY = "calibration.yaml"
WORKLOADS_KEY = "workloads.yaml"
DEFAULT_MAX_ENTRIES = 256


def key_digest(key: MeasuredKey) -> str:
    return hashlib.sha256(key.model_dump_json().encode()).hexdigest()[:16]


class CalibrationStore(BaseModel):
    model_config = ConfigDict(frozen=True)
    entries: tuple[MeasuredProfile, ...] = ()  # oldest first
    workloads: dict[str, str] = {}  # "namespace/Kind/name" -> key digest of the entry it measured

    def record(self, entry: MeasuredProfile, workload: str,
               max_entries: int = DEFAULT_MAX_ENTRIES) -> "CalibrationStore":
        digest = key_digest(entry.key)
        workloads = dict(self.workloads)
        stale = workloads.get(workload)
        workloads[workload] = digest
        still_used = set(workloads.values())
        kept = [e for e in self.entries
                if key_digest(e.key) != digest and not (key_digest(e.key) == stale and stale not in still_used)]
        kept.append(entry)
        kept = kept[-max_entries:]
        live = {key_digest(e.key) for e in kept}
        return CalibrationStore(entries=tuple(kept),
                                workloads={w: d for w, d in workloads.items() if d in live})

    def to_configmap_data(self) -> dict[str, str]:
        return {ENTRIES_KEY: profile_file_text(self.entries),
                WORKLOADS_KEY: yaml.safe_dump(self.workloads, sort_keys=True) if self.workloads else "{}\n"}

    @classmethod
    def from_configmap_data(cls, data: Mapping[str, str], name: str = "calibration ConfigMap") -> "CalibrationStore":
        entries = parse_profile_file(data.get(ENTRIES_KEY) or "", f"{name} {ENTRIES_KEY}")
        try:
            workloads = yaml.safe_load(data.get(WORKLOADS_KEY) or "{}") or {}
        except yaml.YAMLError as exc:
            raise VllmFitError(f"{name} {WORKLOADS_KEY}: not valid YAML: {exc}") from None
        if not isinstance(workloads, dict):
            raise VllmFitError(f"{name} {WORKLOADS_KEY}: must map workloads to entry digests")
        return cls(entries=entries, workloads={str(k): str(v) for k, v in workloads.items()})
