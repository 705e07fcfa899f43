"""Turn log text as people publish it into vLLM log records.

Logs arrive through `kubectl logs` (optionally --prefix/--timestamps), `docker logs`, docker
compose, journald, JSON log pipelines and copy-paste from terminals, so a vLLM record can sit
behind several wrappers, carry ANSI colours (real or printed as `^[[0;36m`), be preceded by a
progress bar on the same line, or be hard-wrapped onto the next line. vLLM itself prefixes
records of worker processes with `(NAME pid=N)` (Ray: `(NAME pid=N, ip=A)`), nested when one
process relays another's output, and its formatter writes
`LEVEL MM-DD hh:mm:ss[.fff] [file.py:line] message` (before 0.8: `file.py:line] message`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterator, Optional

ANSI = re.compile(r"(?:\x1b|\^\[)\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
# Wrappers in front of a record, tried repeatedly (a JSON pipeline can sit under kubectl --prefix).
_WRAPPERS = re.compile(
    "|".join((
        r"\[pod/[^\]\s]+\]\s?",  # kubectl logs --prefix
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)\s",  # --timestamps
        r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?\]\s",  # CI timestamps
        r"[\w.-]{1,128}-\d+ {1,16}\|\s?",  # docker compose "vllm-1  | "
        r" {0,8}\| {1,8}(?=\S)",  # CI log tables " | "
        r" {0,8}[│┃|]\s",  # terminal UIs (k9s) draw a border
        r"\w{3,}\.? \d{1,2} \d\d:\d\d:\d\d \S{1,128} [\w.\-/]{1,128}\[\d+\]:\s",  # journald
        r" {0,8}> ?",  # quoted in a post
    ))
)
_RAY_REPEAT = re.compile(r"\[repeated \d+x across cluster\]$")
PREFIX = re.compile(r"^\((?P<name>[A-Za-z_][\w.\- ]{0,80}?)(?: rank=(?P<rank>\d+))? pid=(?P<pid>\d+)(?:, ip=(?P<ip>[\w.:-]{1,64}))?\)\s*")
_TORCH_RANK = re.compile(r"^\[rank(?P<rank>\d+)\]:\s?")
LEVEL = re.compile(
    r"(?P<level>DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\s+(?P<ts>\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)\s+"
    r"(?:\[(?P<where>[^\]]+)\]|(?P<where_old>[\w./-]+\.py:\d+)\])\s?"
)
# A record whose level marker is not at the start: a progress bar printed it over.
_LEVEL_MARK = re.compile(r"(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \d\d-\d\d \d\d:\d\d:\d\d")
# Process prefixes right before a level marker (bounded: a line is not trusted to be sane).
_PREFIXES_BEFORE = re.compile(r"(?:\([A-Za-z_][\w.\- ]{0,80}(?: rank=\d+)? pid=\d+(?:, ip=[\w.:-]{1,64})?\)\s{0,4}){1,4}$")
MAX_PREFIXES = 8
_JSON_MESSAGE_KEYS = ("message", "msg", "log", "textPayload", "MESSAGE", "text")
_JSON_LEVEL_KEYS = ("levelname", "level", "severity", "lvl")


@dataclass(frozen=True)
class Record:
    """One vLLM log record (or a bare line, when nothing marks it as one)."""

    index: int  # position in the log
    rank: str  # innermost process prefix without parentheses; "" for none
    level: Optional[str]
    message: str
    bare: bool  # neither a level marker nor a process prefix: may continue the previous line
    text: str = ""  # the message with its leading whitespace (a wrapped line continues with it)


def _unwrap_json(line: str) -> tuple[list[str], Optional[str]]:
    if not line.startswith("{"):
        return [line], None
    try:
        doc = json.loads(line)
    except ValueError:
        return [line], None
    if not isinstance(doc, dict):
        return [line], None
    payload = doc.get("jsonPayload") if isinstance(doc.get("jsonPayload"), dict) else doc
    for key in _JSON_MESSAGE_KEYS:
        value = payload.get(key)
        if isinstance(value, str):
            level = next((str(payload[k]).upper() for k in _JSON_LEVEL_KEYS if isinstance(payload.get(k), str)), None)
            lines = value.rstrip("\n").split("\n")
            # vLLM's JSON formatter (VLLM_LOGGING_CONFIG / log_formatter json) carries the process
            # as fields instead of the "(NAME pid=N)" prefix: restore it, so ranks stay apart.
            name, pid = payload.get("processName"), payload.get("process")
            if isinstance(name, str) and isinstance(pid, int) and name != "MainProcess":
                lines = [f"({name} pid={pid}) {line}" if not line.startswith("(") else line for line in lines]
            return lines, level
    return [line], None


def _strip_wrappers(line: str) -> str:
    for _ in range(8):
        m = _WRAPPERS.match(line)
        if not m or not m.end():
            break
        line = line[m.end():]
    line = line.rstrip()
    if line.endswith(("│", "┃")):
        line = line[:-1].rstrip()
    return line


_KUBECTL_POD = re.compile(r"^\[(pod/[^\]\s]+)\]\s?")


def physical_lines(text: str) -> Iterator[tuple[str, Optional[str], str]]:
    """Lines with colours, wrappers and JSON envelopes removed, the level a JSON envelope gave,
    and the pod `kubectl logs --prefix` named ("" when none)."""
    for raw in text.splitlines():
        raw = ANSI.sub("", raw)
        m = _KUBECTL_POD.match(raw)
        pod = m.group(1) if m else ""
        # A carriage return redraws the line: each segment is what was printed over.
        for segment in raw.split("\r"):
            for line, level in _expand(segment):
                yield line, level, pod


def _expand(segment: str) -> Iterator[tuple[str, Optional[str]]]:
    segment = _strip_wrappers(segment.rstrip())
    lines, level = _unwrap_json(segment.strip())
    for line in lines:
        line = _strip_wrappers(ANSI.sub("", line).rstrip())
        if not line.lstrip().startswith("{") or level is None:
            yield line, level
        else:  # a JSON envelope inside a JSON envelope
            yield from _expand(line)


def records(text: str) -> list[Record]:
    out: list[Record] = []
    for index, (line, json_level, pod) in enumerate(physical_lines(text)):
        mark = _LEVEL_MARK.search(line)
        if mark and mark.start() > 2:
            before = line[max(0, mark.start() - 600):mark.start()]
            prefixes = _PREFIXES_BEFORE.search(before)
            start = mark.start() - (len(before) - prefixes.start()) if prefixes else mark.start()
            if start > 0 and not PREFIX.match(line):
                line = line[start:]
        rank = ""
        prefixed = False
        for _ in range(MAX_PREFIXES):
            m = PREFIX.match(line)
            if not m:
                break
            prefixed = True
            rank = _rank_label(m)
            line = line[m.end():]
        m = _TORCH_RANK.match(line)
        if m:
            prefixed = True
            rank = rank or f"rank{m.group('rank')}"
            line = line[m.end():]
        if pod:  # several pods in one `kubectl logs --prefix`: each pod's processes are its own
            rank = f"{pod} | {rank}" if rank else pod
        level = json_level
        m = LEVEL.search(line)
        if m and m.start() <= 2:
            level = m.group("level")
            line = line[m.end():]
        line = line.rstrip()
        if line.endswith("across cluster]"):
            line = _RAY_REPEAT.sub("", line).rstrip()
        out.append(Record(index=index, rank=rank, level=level, message=line.strip(),
                          bare=not prefixed and level is None, text=line))
    return out


def _rank_label(m: re.Match[str]) -> str:
    label = m.group("name").strip()
    if m.group("rank") is not None:
        label += f" rank={m.group('rank')}"
    label += f" pid={m.group('pid')}"
    if m.group("ip"):
        label += f", ip={m.group('ip')}"
    return label
