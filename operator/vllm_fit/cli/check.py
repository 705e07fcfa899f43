"""`vllm-fit check [FILES|DIRS|-] [--gpu DEFAULT] [--vllm-version DEFAULT] [-o table|json] [--strict]`.

Reads Kubernetes manifests (multi-document YAML, JSON, `kind: List`; directories
recursively; `-` for stdin), plans every vLLM launch in them and prints one line per launch.
Exit status: 0 nothing rejected, 1 something rejected (or, with --strict, warned about),
2 unreadable input (reported with file and line; the other documents are still checked).
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, TextIO

import yaml

from ..check import LaunchResult, check_object
from ..launch.find import ConfigMaps
from ..errors import VllmFitError
from ..hub import default_resolver
from ..profiles import gpu_catalog, runtime_profiles_with
from . import EXIT_BAD_INPUT, EXIT_FITS, EXIT_REJECTED
from .common import GREEN, RED, YELLOW, paint

HELP = """usage: vllm-fit check [FILES|DIRS|-] [--gpu DEFAULT] [--vllm-version DEFAULT] [--profiles DIR] [-o table|json]
                      [--strict] [--detection loose|strict]

Check every vLLM launch in Kubernetes manifests (YAML or JSON, multi-document, `kind: List`;
directories are read recursively for *.yaml, *.yml and *.json; `-` reads stdin).
ConfigMaps among the inputs feed the launches that read them (envFrom, configMapKeyRef,
KAITO inference configs); Secrets are never read.

--gpu DEFAULT          GPU for launches whose manifest does not say (catalog name or a size)
--vllm-version X.Y.Z   vLLM version for images whose tag does not state one
--profiles DIR         measured profiles (`vllm-fit logs --write-profile` files) to plan with
-o table|json          output format (default table)
--strict               warnings fail the check too (exit 1)
--detection MODE       loose (default): also recognise vendor images by vLLM engine flags, a vllm
                       label, container or image name; strict: only vLLM commands and vLLM images

Exit status: 0 nothing rejected, 1 a launch would not start (or warned, with --strict),
2 unreadable input.
"""

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


def read_documents(name: str, text: str) -> Iterator[Document]:
    if name.endswith(".json") or text.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if name.endswith(".json"):
                yield Document(name, exc.lineno, error=f"not valid JSON: {exc.msg}")
                return
        else:
            items = data if isinstance(data, list) else [data]
            for item in items:
                yield Document(name, 1, obj=item)
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
            yield Document(name, line, error=f"not valid YAML: {problem}")
            continue
        except RecursionError:
            yield Document(name, start, error="not valid YAML: nested too deeply")
            continue
        if obj is None:
            continue
        yield Document(name, start, obj=obj)


def _files(paths: Sequence[str]) -> Iterator[tuple[str, Optional[str], Optional[str]]]:
    """(name, text, error) for every input."""
    for path in paths:
        if path == "-":
            yield "<stdin>", sys.stdin.read(), None
            continue
        p = Path(path)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix in _SUFFIXES)
            for q in found:
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


def _parse_args(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    paths: list[str] = []
    opts: dict[str, Any] = {"output": "table", "strict": False, "gpu": None, "vllm_version": None,
                            "detection": "loose", "profiles": None}
    i = 0
    while i < len(argv):
        token = argv[i]
        name, eq, value = token.partition("=")
        if name in ("--gpu", "--vllm-version", "-o", "--output", "--detection", "--profiles"):
            if not eq:
                if i + 1 >= len(argv):
                    raise VllmFitError(f"{name} needs a value")
                value = argv[i + 1]
                i += 1
            opts[{"-o": "output", "--output": "output", "--gpu": "gpu", "--vllm-version": "vllm_version",
                  "--detection": "detection", "--profiles": "profiles"}[name]] = value
        elif token == "--strict":
            opts["strict"] = True
        elif token.startswith("-") and token != "-":
            raise VllmFitError(f"unknown option {token}")
        else:
            paths.append(token)
        i += 1
    if opts["detection"] not in ("loose", "strict"):
        raise VllmFitError(f"--detection must be loose or strict, not {opts['detection']!r}")
    if opts["output"] not in ("table", "json"):
        raise VllmFitError(f"-o must be table or json, not {opts['output']!r}")
    if not paths:
        raise VllmFitError("give manifest files, directories, or - for stdin")
    return paths, opts


def _row(doc: Document, result: LaunchResult, colour: bool) -> str:
    f = result.found
    obj = f"{f.kind}/{f.namespace + '/' if f.namespace else ''}{f.name or '?'}"
    word = result.word
    painted = paint(f"{word:<6}", {"FITS": GREEN, "WARN": YELLOW, "REJECT": RED}[word], colour)
    if result.plan is not None:
        kv = f"{result.plan.per_gpu.kv_cache_gib:7.2f}"
        conc = f"{result.plan.kv_cache.max_concurrency:8.2f}x"
    else:
        kv, conc = f"{'-':>7}", f"{'-':>9}"
    gpu = result.gpu or "?"
    count = f.gpus.count if f.gpus.count is not None else "?"
    return (f"{doc.file}:{doc.line}  {obj}  {f.container}  {painted} {count}x{gpu}  KV {kv} GiB  {conc}  "
            f"{result.fix()}").rstrip()


def main(argv: Sequence[str], stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    if not argv or "-h" in argv or "--help" in argv:
        out.write(HELP)
        return EXIT_FITS if argv else EXIT_BAD_INPUT
    try:
        paths, opts = _parse_args(argv)
        catalog, profiles, resolver = gpu_catalog(), runtime_profiles_with(opts["profiles"]), default_resolver()
        if opts["gpu"]:
            catalog.resolve(opts["gpu"])
    except VllmFitError as exc:
        err.write(f"vllm-fit check: {exc}\n")
        return EXIT_BAD_INPUT
    colour = opts["output"] == "table" and out.isatty() and os.environ.get("NO_COLOR") is None
    bad = rejected = warned = 0
    report: list[dict[str, Any]] = []
    rows: list[str] = []
    documents: list[Document] = []
    for name, text, error in _files(paths):
        if error is not None:
            err.write(f"{name}: {error}\n")
            bad += 1
            continue
        assert text is not None
        documents.extend(read_documents(name, text))
    # ConfigMaps anywhere in the input feed every launch that reads them (as in one `kubectl apply`).
    configmaps = ConfigMaps.from_objects(doc.obj for doc in documents if doc.error is None)
    for doc in documents:
        if doc.error is not None:
            err.write(f"{doc.file}:{doc.line}: {doc.error}\n")
            bad += 1
            continue
        if not isinstance(doc.obj, dict):
            err.write(f"{doc.file}:{doc.line}: not a Kubernetes object (a {type(doc.obj).__name__})\n")
            bad += 1
            continue
        try:
            results = check_object(doc.obj, resolver=resolver, catalog=catalog, profiles=profiles,
                                   default_gpu=opts["gpu"], default_vllm_version=opts["vllm_version"],
                                   loose=opts["detection"] == "loose", configmaps=configmaps)
        except VllmFitError as exc:
            err.write(f"{doc.file}:{doc.line}: {exc}\n")
            bad += 1
            continue
        for result in results:
            rejected += result.rejected
            warned += bool(result.verdict.fits and result.verdict.reasons)
            entry = {"file": doc.file, **result.to_json_dict()}
            report.append(entry)
            rows.append(_row(doc, result, colour))
            if opts["output"] == "table":
                for reason in result.verdict.reasons:
                    rows.append(f"    {reason.severity}: [{reason.code}] {reason.message}")
    if opts["output"] == "json":
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        for row in rows:
            out.write(row + "\n")
        total = len(report)
        out.write(f"{total} vLLM launch{'es' if total != 1 else ''}: {rejected} rejected, {warned} with warnings"
                  f"{f', {bad} unreadable' if bad else ''}\n")
    if bad:
        return EXIT_BAD_INPUT
    if rejected or (opts["strict"] and warned):
        return EXIT_REJECTED
    return EXIT_FITS
