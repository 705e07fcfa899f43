"""What one request may cost before it is judged: bytes, JSON shape, containers, nesting.

`inspect_body` runs on a worker thread, one body at a time (a JSON document of small objects
can take twenty times its size in memory while it is decoded). It never raises: a body it
cannot decode within the budget comes back with `over_budget` or `bad_request` set, and with
the request's uid when one can be found, so that the answer can still be a denial (an HTTP
error would let `failurePolicy: Ignore` admit the object).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import re
from dataclasses import dataclass
from typing import Any, Optional

# Brackets ({ and [) a body may hold before it is decoded. A 1.5 MiB object (etcd's limit)
# with 256 containers has a few tens of thousands; this bounds the decoded size whatever the body.
MAX_BRACKETS = 262_144
_CONTAINER_KEYS = frozenset({"containers", "initContainers", "ephemeralContainers"})
_UID = re.compile(rb'"request"\s*:\s*\{[^{}]{0,512}?"uid"\s*:\s*"([A-Za-z0-9._:-]{1,128})"')
_API_VERSION = re.compile(rb'"apiVersion"\s*:\s*"(admission\.k8s\.io/v1(?:beta1)?)"')
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class Inspection:
    data: Optional[dict[str, Any]] = None
    text: str = ""
    uid: Optional[str] = None
    api_version: str = "admission.k8s.io/v1"
    bad_request: Optional[str] = None  # not an AdmissionReview: HTTP 400
    over_budget: Optional[str] = None  # an AdmissionReview too big or too complex to judge


def _budget_walk(data: Any, max_nesting: int, max_containers: int, fix_surrogates: bool) -> Optional[str]:
    """Iteratively: nesting depth, containers per object; lone surrogates replaced in place."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    containers = 0
    while stack:
        node, depth = stack.pop()
        if depth > max_nesting:
            return f"it is nested more than {max_nesting} levels deep (max_nesting)"
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, (dict, list)):
                    if key in _CONTAINER_KEYS and isinstance(value, list):
                        containers += len(value)
                        if containers > max_containers:
                            return f"it holds more than {max_containers} containers (max_containers)"
                    stack.append((value, depth + 1))
                elif fix_surrogates and isinstance(value, str) and _SURROGATE.search(value):
                    node[key] = _clean(value)
            if fix_surrogates and any(isinstance(k, str) and _SURROGATE.search(k) for k in node):
                for key in [k for k in node if _SURROGATE.search(k)]:
                    node[_clean(key)] = node.pop(key)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                if isinstance(value, (dict, list)):
                    stack.append((value, depth + 1))
                elif fix_surrogates and isinstance(value, str) and _SURROGATE.search(value):
                    node[i] = _clean(value)
    return None


def _clean(text: str) -> str:
    """A lone UTF-16 surrogate (valid JSON, not valid UTF-8) becomes U+FFFD."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def inspect_body(raw: bytes | bytearray, *, max_nesting: int, max_containers: int) -> Inspection:
    head = bytes(raw[:4096])
    uid_match = _UID.search(head) or _UID.search(raw)
    version_match = _API_VERSION.search(head)
    out = Inspection(uid=uid_match.group(1).decode() if uid_match else None,
                     api_version=version_match.group(1).decode() if version_match else "admission.k8s.io/v1")
    try:
        out.text = raw.decode("utf-8")  # kept for the cheap "does it mention vLLM" gate
    except UnicodeDecodeError:
        out.bad_request = "body is not UTF-8"
        return out
    brackets = raw.count(b"{") + raw.count(b"[")
    if brackets > MAX_BRACKETS:
        out.over_budget = f"its JSON holds {brackets} objects and lists (more than {MAX_BRACKETS})"
        return out
    try:
        data = json.loads(out.text)
    except RecursionError:
        out.over_budget = f"it is nested more than {max_nesting} levels deep (max_nesting)"
        return out
    except ValueError as exc:
        out.bad_request = f"body is not JSON: {exc}"
        return out
    problem = _budget_walk(data, max_nesting, max_containers, bool(_SURROGATE_ESCAPE.search(raw)))
    if problem is not None:
        out.over_budget = problem
        return out
    out.data = data if isinstance(data, dict) else None
    if out.data is None:
        out.bad_request = "body is not a JSON object"
    return out


class ByteBudget:
    """Request bytes held in memory at once, across connections (event-loop thread only)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def reserve(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def release(self, size: int) -> None:
        self.used = max(self.used - size, 0)


# ---------------------------------------------------------------- glibc: give freed memory back

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_libc: Any = None


def tune_allocator() -> bool:
    """Large buffers from mmap (returned to the OS on free) and few malloc arenas.

    glibc raises its mmap threshold after the first large free, after which multi-MiB request
    bodies come from the heap and are never returned: RSS only grows under upload floods.
    A fixed threshold stops that. No-op off glibc.
    """
    global _libc
    try:
        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name or "libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)) and bool(libc.mallopt(_M_ARENA_MAX, 2))
        libc.malloc_trim  # noqa: B018 - glibc only
    except (OSError, AttributeError):
        return False
    _libc = libc
    return ok


def trim_memory() -> None:
    """Return free heap pages to the OS (after large requests)."""
    if _libc is not None:
        _libc.malloc_trim(0)


class Trimmer:
    """Coalesces trim requests from the event loop: one trim shortly after the last of a burst
    (a flood of aborted uploads costs one malloc_trim, and the memory of the last one is given
    back too)."""

    def __init__(self, delay_seconds: float = 0.2) -> None:
        self.delay_seconds = delay_seconds
        self._scheduled = False

    def request(self) -> None:
        if self._scheduled or _libc is None:
            return
        import asyncio

        self._scheduled = True
        asyncio.get_running_loop().call_later(self.delay_seconds, self._run)

    def _run(self) -> None:
        self._scheduled = False
        trim_memory()
