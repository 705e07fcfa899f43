"""Kubernetes manifests from files, folders and stdin, split into documents with their lines.

Multi-document YAML, JSON, `kind: List` (and top-level arrays) item by item; a folder
recursively, a Helm chart inside it as one "render it first" line; a broken document does not
hide the others. For `vllm-fit check`.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import yaml

_SUFFIXES = (".yaml", ".yml", ".json")
_DOC_SEPARATOR = re.compile(r"^---(?:\s.*)?$|^\.\.\.\s*$")


@dataclass
class Document:
    file: str
    line: int  # 1-based line where the document starts
    obj: Any = None
    error: Optional[str] = None


def _split_yaml(text: str) -> Iterator[tuple[int, str]]:
    """(first line, text) of every document; a broken one does not hide the others."""
    start, lines = 1, []
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if _DOC_SEPARATOR.match(line.rstrip("\r\n")):
            yield start, "".join(lines)
            start, lines = number + 1, []
            continue
        lines.append(line)
    yield start, "".join(lines)


def _item_lines(chunk: str, obj: Any) -> list[int]:
    """0-based line of each item of a `kind: List` (or a top-level JSON/YAML array), from the YAML
    composer's marks; [] when they cannot be had."""
    try:
        node = yaml.compose(chunk, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return []
    if isinstance(obj, dict):
        if not isinstance(node, yaml.MappingNode):
            return []
        node = next((value for key, value in node.value if getattr(key, "value", None) == "items"), None)
    if not isinstance(node, yaml.SequenceNode):
        return []
    return [item.start_mark.line for item in node.value]


def _is_list(obj: Any) -> bool:
    return isinstance(obj, list) or (isinstance(obj, dict) and isinstance(obj.get("kind"), str)
                                     and obj["kind"].endswith("List") and isinstance(obj.get("items"), list))


def _split_list(name: str, start: int, chunk: str, obj: Any) -> Iterator[Document]:
    """The items of a List document, each with the line it starts on (a List of Lists too)."""
    items = obj if isinstance(obj, list) else obj["items"]
    lines = _item_lines(chunk, obj)
    for index, item in enumerate(items):
        line = start + lines[index] if index < len(lines) else start
        if _is_list(item):
            yield from _split_list(name, line, "", item)  # nested: the outer item's line stands for all
        else:
            yield Document(name, line, obj=item)


def read_documents(name: str, text: str) -> Iterator[Document]:
    if name.endswith(".json") or text.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if name.endswith(".json"):
                yield Document(name, exc.lineno, error=f"not valid JSON: {exc.msg}")
                return
        else:
            if _is_list(data):
                yield from _split_list(name, 1, text, data)
            else:
                yield Document(name, 1, obj=data)
            return
    for start, chunk in _split_yaml(text):
        if not chunk.strip():
            continue
        try:
            obj = yaml.safe_load(chunk)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            line = start + (mark.line if mark is not None else 0)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            hint = f" (a Helm template? {_HELM_HINT})" if "{{" in chunk else ""
            yield Document(name, line, error=f"not valid YAML: {problem}{hint}")
            continue
        except RecursionError:
            yield Document(name, start, error="not valid YAML: nested too deeply")
            continue
        if obj is None:
            continue
        if _is_list(obj):
            yield from _split_list(name, start, chunk, obj)
        else:
            yield Document(name, start, obj=obj)


_HELM_HINT = "render it first: helm template RELEASE CHART | vllm-fit check -"


def _chart_root(path: Path) -> Optional[Path]:
    """The Helm chart a file belongs to (a folder above it with Chart.yaml), if any."""
    for parent in path.parents:
        if (parent / "Chart.yaml").is_file():
            return parent
    return None


def input_files(paths: Sequence[str]) -> Iterator[tuple[str, Optional[str], Optional[str]]]:
    """(name, text, error) for every input."""
    for path in paths:
        if path == "-":
            yield "<stdin>", sys.stdin.read(), None
            continue
        p = Path(path)
        if p.is_dir():
            charts: set[Path] = set()
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix in _SUFFIXES)
            for q in found:
                chart = _chart_root(q)
                if chart is not None and (chart == p or p in chart.parents):
                    # Templates are not manifests until Helm renders them: one line per chart.
                    if chart not in charts:
                        charts.add(chart)
                        yield (str(chart), None,
                               f"a Helm chart, not manifests; render it first: "
                               f"helm template RELEASE {chart} | vllm-fit check -")
                    continue
                yield from _read(q)
        elif p.exists():
            yield from _read(p)
        else:
            yield path, None, "no such file or directory"


def _read(path: Path) -> Iterator[tuple[str, Optional[str], Optional[str]]]:
    try:
        yield str(path), path.read_text(encoding="utf-8"), None
    except (OSError, UnicodeDecodeError) as exc:
        yield str(path), None, f"cannot read: {exc}"
