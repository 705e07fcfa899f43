"""Units and vLLM's human-readable integers."""

from __future__ import annotations

import re

from .errors import VllmFitError

GIB = 1 << 30
MIB = 1 << 20

# vLLM's `human_readable_int` (vllm/engine/arg_utils.py, PR 16181): lowercase suffixes are
# decimal and allow decimals, uppercase are binary and must be whole.
_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_BINARY = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_HUMAN_INT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([kmgtKMGT]?)\s*$")


def parse_human_int(text: str, *, flag: str = "value", allow_auto: bool = False) -> int:
    """Parse `16k` (16000), `16K` (16384), `1m`, `25.6k`, `-1`, and optionally `auto` (-1)."""
    raw = str(text).strip()
    if allow_auto and raw.lower() == "auto":
        return -1
    match = _HUMAN_INT.match(raw)
    if not match:
        raise VllmFitError(f"{flag}: {text!r} is not a number (vLLM accepts forms like 4096, 16k, 16K, 1m)")
    number, suffix = match.groups()
    if not suffix:
        if "." in number:
            raise VllmFitError(f"{flag}: {text!r} must be a whole number")
        return int(number)
    if suffix in _BINARY:
        if "." in number:
            raise VllmFitError(f"{flag}: {text!r}: decimals are not allowed with binary suffixes (vLLM rejects it)")
        return int(number) * _BINARY[suffix]
    return int(float(number) * _DECIMAL[suffix])


def gib(num_bytes: float) -> float:
    return num_bytes / GIB
