"""A measured profile from a startup log: the overheads vLLM printed, keyed by the launch
(memory/measured.py), in the file format `--profiles DIR` reads."""

from __future__ import annotations

from datetime import date
from typing import Optional

import yaml

from ..errors import VllmFitError
from ..memory.measured import MeasuredKey, MeasuredProfile
from ..memory.result import MemoryPlan
from .model import StartupLog

FILE_HEADER = (
    "# Measured vLLM overheads per GPU (GiB), written by `vllm-fit logs --write-profile`.\n"
    "# Read by `vllm-fit plan/check --profiles DIR` and the webhook (chart value `profiles.configMap`):\n"
    "# a launch whose key equals an entry's is planned with the measured activation, non-torch\n"
    "# and CUDA-graph memory instead of the band's constants.\n"
)


def measured_profile_entry(log: StartupLog, plan: MemoryPlan, *, source: str,
                           when: Optional[str] = None) -> MeasuredProfile:
    """The entry for the launch `plan` describes, with what `log` measured."""
    m = log.measured
    if m.activation_gib is None and m.non_torch_gib is None and m.cuda_graph_gib is None:
        raise VllmFitError("the log prints no overhead (activation, non-torch or CUDA graphs) to record; "
                           "vLLM prints activation and non-torch at DEBUG level from 0.9 "
                           "(VLLM_LOGGING_LEVEL=DEBUG)")
    s = plan.settings
    key = MeasuredKey(
        model=plan.model, gpu=str(plan.gpu["name"]), vllm_version=plan.vllm_version,
        tensor_parallel_size=int(s["tensor_parallel_size"]), pipeline_parallel_size=int(s["pipeline_parallel_size"]),
        data_parallel_size=int(s["data_parallel_size"]), max_num_batched_tokens=int(s["max_num_batched_tokens"]),
        max_num_seqs=int(s["max_num_seqs"]), dtype=str(s["dtype"]),
        quantization=s["quantization"] if s.get("quantization") is None else str(s["quantization"]),
        enforce_eager=bool(s["enforce_eager"]),
    )
    version_note = f"vLLM {log.vllm_version}" if log.vllm_version else "vLLM version not in the log"
    return MeasuredProfile(
        key=key, activation_gib=m.activation_gib, non_torch_gib=m.non_torch_gib, cuda_graph_gib=m.cuda_graph_gib,
        cuda_graph_estimated=m.cuda_graph_source == "estimated", weights_gib=m.weights_gib,
        kv_cache_gib=m.kv_cache_gib, kv_cache_tokens=m.kv_cache_tokens,
        source=f"startup log {source} ({version_note}, read {when or date.today().isoformat()})",
    )


def parse_profile_file(text: str, name: str) -> tuple[MeasuredProfile, ...]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise VllmFitError(f"{name}: not valid YAML: {exc}") from None
    if doc is None:
        return ()
    if not isinstance(doc, dict) or not isinstance(doc.get("measured", []), list):
        raise VllmFitError(f"{name}: a profile file holds `measured:` with a list of entries")
    out = []
    for i, entry in enumerate(doc.get("measured") or []):
        try:
            out.append(MeasuredProfile.model_validate(entry))
        except ValueError as exc:
            raise VllmFitError(f"{name}: measured[{i}] is not a measured profile: {exc}") from None
    return tuple(out)


def profile_file_text(entries: tuple[MeasuredProfile, ...]) -> str:
    body = {"measured": [e.model_dump(mode="json") for e in entries]}
    return FILE_HEADER + yaml.safe_dump(body, sort_keys=False, width=110)


def merged_entries(existing: tuple[MeasuredProfile, ...], entry: MeasuredProfile) -> tuple[MeasuredProfile, ...]:
    """The file's entries with `entry` replacing one of the same key (or appended)."""
    return tuple(e for e in existing if e.key != entry.key) + (entry,)
