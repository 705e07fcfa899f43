"""`vllm-fit check [FILES|DIRS|-] [--gpu DEFAULT] [--vllm-version DEFAULT] [-o table|json] [--strict]`.

Reads Kubernetes manifests (multi-document YAML, JSON, `kind: List`; directories
recursively; `-` for stdin), plans every vLLM launch in them and prints one line per launch.
Exit status: 0 nothing rejected, 1 something rejected (or, with --strict, warned about),
2 unreadable input (reported with file and line; the other documents are still checked).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Optional, Sequence, TextIO

from ..check import LaunchResult, check_object
from ..launch.find import ConfigMaps
from ..errors import VllmFitError
from ..hub import default_resolver
from ..inventory import Inventory
from ..profiles import gpu_catalog, runtime_profiles_with, vllm_flag_table
from . import EXIT_BAD_INPUT, EXIT_FITS, EXIT_REJECTED
from .common import GREEN, RED, YELLOW, paint
from .kube import list_nodes, nodes_from_file
from .manifests import Document, input_files, read_documents

HELP = """usage: vllm-fit check [FILES|DIRS|-] [--gpu DEFAULT] [--vllm-version DEFAULT] [--profiles DIR]
                      [--cluster | --nodes FILE] [-o table|json] [--strict] [--detection loose|strict]

Check every vLLM launch in Kubernetes manifests (YAML or JSON, multi-document, `kind: List`;
directories are read recursively for *.yaml, *.yml and *.json; `-` reads stdin).
ConfigMaps among the inputs feed the launches that read them (envFrom, configMapKeyRef,
KAITO inference configs); Secrets are never read. Items of a List are reported at the line each
starts on. A Helm chart is not a manifest until rendered: helm template RELEASE CHART | vllm-fit check -

--gpu DEFAULT          GPU for launches whose manifest does not say (catalog name or a size)
--vllm-version X.Y.Z   vLLM version for images whose tag does not state one
--profiles DIR         measured profiles (`vllm-fit logs --write-profile` files) to plan with
--cluster              learn the GPU types from the Nodes of the kubeconfig's cluster (KUBECONFIG,
                       --kubeconfig PATH, --context NAME), for launches whose manifest names none:
                       the same judgement the webhook makes
--nodes FILE           the same from saved Nodes (`kubectl get nodes -o yaml`)
-o table|json          output format (default table); json lists every launch and every unreadable
                       input (reason unreadable-input) in one array
--strict               warnings fail the check too (exit 1)
--detection MODE       loose (default): also recognise vendor images by vLLM engine flags, a vllm
                       label, container or image name; strict: only vLLM commands and vLLM images

Exit status: 0 nothing rejected, 1 a launch would not start (or warned, with --strict),
2 unreadable input or bad usage (the readable documents are still checked).
"""

def _parse_args(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    paths: list[str] = []
    opts: dict[str, Any] = {"output": "table", "strict": False, "gpu": None, "vllm_version": None,
                            "detection": "loose", "profiles": None, "cluster": False, "kubeconfig": None,
                            "context": None, "nodes": None}
    valued = {"-o": "output", "--output": "output", "--gpu": "gpu", "--vllm-version": "vllm_version",
              "--detection": "detection", "--profiles": "profiles", "--kubeconfig": "kubeconfig",
              "--context": "context", "--nodes": "nodes"}
    i = 0
    while i < len(argv):
        token = argv[i]
        name, eq, value = token.partition("=")
        if name in valued:
            if not eq:
                if i + 1 >= len(argv):
                    raise VllmFitError(f"{name} needs a value")
                value = argv[i + 1]
                i += 1
            opts[valued[name]] = value
        elif token == "--strict":
            opts["strict"] = True
        elif token == "--cluster":
            opts["cluster"] = True
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


def _cells(doc: Document, result: LaunchResult) -> list[str]:
    f = result.found
    obj = f"{f.kind}/{f.namespace + '/' if f.namespace else ''}{f.name or '?'}"
    plan = result.plan
    if plan is not None and plan.settings and plan.valid:  # a plan of arguments vLLM refuses has no memory figures
        kv = f"{plan.per_gpu.kv_cache_gib:,.2f} GiB"
        conc = f"{plan.kv_cache.max_concurrency:,.2f}x"
    else:
        kv, conc = "-", "-"
    gpu = result.gpu or "?"
    count = f.gpus.count if f.gpus.count is not None else "?"
    return [f"{doc.file}:{doc.line}", obj, f.container, result.word, f"{count}x{gpu}", kv, conc, result.fix()]


_HEADER = ["WHERE", "OBJECT", "CONTAINER", "VERDICT", "GPUS", "KV CACHE", "CONCURRENCY", "FIX"]
_RIGHT = {5, 6}  # numbers line up on the right


def _table(entries: list[tuple[list[str], list[str]]], colour: bool) -> list[str]:
    """Rows padded to the widest cell of each column; each launch's reasons under it."""
    widths = [max(len(cells[i]) for cells in [_HEADER, *(e[0] for e in entries)]) for i in range(len(_HEADER))]
    colours = {"FITS": GREEN, "WARN": YELLOW, "REJECT": RED, "SKIP": ""}

    def line(cells: list[str], paint_word: bool) -> str:
        out = []
        for i, cell in enumerate(cells):
            padded = cell.rjust(widths[i]) if i in _RIGHT else cell.ljust(widths[i])
            if paint_word and i == 3:
                padded = paint(padded, colours[cell], colour) if colours[cell] else padded
            out.append(padded)
        return "  ".join(out).rstrip()

    lines = [line(_HEADER, False)]
    for cells, reasons in entries:
        lines.append(line(cells, True))
        lines.extend(reasons)
    return lines


def _unreadable_entry(file: str, line: Optional[int], message: str) -> dict[str, Any]:
    """An input that could not be read, in the JSON report beside the launches (same keys)."""
    return {"file": file, "line": line, "kind": None, "namespace": None, "name": None, "container": None,
            "launch": None, "gpus": None, "plan": None,  # and, at output, every other key a launch entry has
            "verdict": {"fits": False, "reasons": [{"code": "unreadable-input", "severity": "error",
                                                    "message": message, "summary": ""}]}}


def main(argv: Sequence[str], stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    if not argv or "-h" in argv or "--help" in argv:
        out.write(HELP)
        return EXIT_FITS if argv else EXIT_BAD_INPUT
    try:
        paths, opts = _parse_args(argv)
        catalog, profiles, resolver = gpu_catalog(), runtime_profiles_with(opts["profiles"]), default_resolver()
        flag_table = vllm_flag_table()
        inventory = None
        if opts["cluster"] and opts["nodes"]:
            raise VllmFitError("give --cluster or --nodes, not both")
        if opts["cluster"]:
            inventory = Inventory.from_nodes(list_nodes(opts["kubeconfig"], opts["context"]), catalog)
        elif opts["nodes"]:
            inventory = Inventory.from_nodes(nodes_from_file(opts["nodes"]), catalog)
        if opts["gpu"]:
            catalog.resolve(opts["gpu"])
    except VllmFitError as exc:
        err.write(f"vllm-fit check: {exc}\n")
        return EXIT_BAD_INPUT
    json_output = opts["output"] == "json"
    colour = not json_output and out.isatty() and os.environ.get("NO_COLOR") is None
    bad = rejected = warned = launches = 0
    report: list[dict[str, Any]] = []
    entries: list[tuple[list[str], list[str]]] = []
    documents: list[Document] = []
    unreadable_ids: set[int] = set()

    def unreadable(file: str, line: Optional[int], message: str) -> None:
        nonlocal bad
        bad += 1
        err.write(f"{file}{f':{line}' if line else ''}: {message}\n")
        entry = _unreadable_entry(file, line, message)
        unreadable_ids.add(id(entry))
        report.append(entry)

    for name, text, error in input_files(paths):
        if error is not None:
            unreadable(name, None, error)
            continue
        assert text is not None
        documents.extend(read_documents(name, text))
    # ConfigMaps anywhere in the input feed every launch that reads them (as in one `kubectl apply`).
    configmaps = ConfigMaps.from_objects(doc.obj for doc in documents if doc.error is None)
    for doc in documents:
        if doc.error is not None:
            unreadable(doc.file, doc.line, doc.error)
            continue
        if not isinstance(doc.obj, dict):
            unreadable(doc.file, doc.line, f"not a Kubernetes object (a {type(doc.obj).__name__})")
            continue
        try:
            results = check_object(doc.obj, resolver=resolver, catalog=catalog, profiles=profiles,
                                   default_gpu=opts["gpu"], default_vllm_version=opts["vllm_version"],
                                   loose=opts["detection"] == "loose", configmaps=configmaps,
                                   flag_table=flag_table, inventory=inventory)
        except VllmFitError as exc:
            unreadable(doc.file, doc.line, str(exc))
            continue
        for result in results:
            launches += 1
            rejected += result.rejected
            warned += bool(result.verdict.fits and result.verdict.problems)
            report.append({"file": doc.file, "line": doc.line, **result.to_json_dict()})
            entries.append((_cells(doc, result),
                            [f"    {r.severity}: [{r.code}] {r.message}" for r in result.verdict.reasons]))
    if json_output:
        # Unreadable inputs get every key a launch entry has (null), so one loop reads them all.
        keys = next((list(e) for e in report if id(e) not in unreadable_ids), [])
        report = [{**dict.fromkeys(keys), **e} if id(e) in unreadable_ids else e for e in report]
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        if entries:
            for row in _table(entries, colour):
                out.write(row + "\n")
        out.write(f"{launches:,} vLLM launch{'es' if launches != 1 else ''}: {rejected:,} rejected, "
                  f"{warned:,} with warnings{f', {bad:,} unreadable' if bad else ''}\n")
    if bad:
        return EXIT_BAD_INPUT
    if rejected or (opts["strict"] and warned):
        return EXIT_REJECTED
    return EXIT_FITS
