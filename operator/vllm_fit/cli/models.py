"""`vllm-fit models list|fetch`: what model metadata is known here, and bundles for air-gapped clusters."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..errors import VllmFitError
from ..hub.cache import HubRecord, write_bundle
from ..hub.errors import BUNDLE_HINT, HubError, HubOffline
from ..hub.hub_resolver import HubResolver
from ..hub.resolver import BundledResolver
from ..hub.settings import HubSettings, bundle_dirs_from_env
from ..profiles import model_dir_name
from . import EXIT_BAD_INPUT, EXIT_FITS, EXIT_REJECTED

DESCRIPTION = """List the model metadata this installation knows (bundled and cached), or fetch models
from the Hugging Face Hub: config.json and the safetensors headers (parameter counts by dtype),
never the weights. Configured by the environment: HF_ENDPOINT (a mirror), HF_TOKEN or
VLLM_FIT_HF_TOKEN_FILE (gated models), HF_HUB_OFFLINE, VLLM_FIT_CACHE_DIR, VLLM_FIT_MODEL_BUNDLE_DIRS.

  vllm-fit models list [-o table|json]
  vllm-fit models fetch MODEL... [--revision REV] [--out DIR] [--timeout SECONDS]

`fetch` always asks the Hub and updates the cache; with --out it also writes one bundle folder
per model (config.json, weights.yaml, SOURCE.md - the format of profiles/models/) to DIR, for
VLLM_FIT_MODEL_BUNDLE_DIRS or the chart's bundle ConfigMap in an air-gapped cluster.

Exit status: 0 done, 1 some model could not be fetched, 2 bad usage."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vllm-fit models", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", metavar="{list,fetch}")
    listing = sub.add_parser("list", help="bundled and cached models")
    listing.add_argument("-o", "--output", choices=("table", "json"), default="table")
    fetch = sub.add_parser("fetch", help="fetch models from the Hub into the cache (and --out bundles)")
    fetch.add_argument("models", nargs="+", metavar="MODEL")
    fetch.add_argument("--revision", help="branch, tag or commit sha (default: the default branch)")
    fetch.add_argument("--out", type=Path, help="write bundle folders here (profiles/models format)")
    fetch.add_argument("--timeout", type=float, default=None, help="seconds per model (default VLLM_FIT_HUB_TIMEOUT or 30)")
    fetch.add_argument("-o", "--output", choices=("table", "json"), default="table")
    return parser


def _source_md(record: HubRecord) -> str:
    info = record.info
    lines = [f"# {record.model_id}", "",
             f"- Fetched by `vllm-fit models fetch` on {record.fetched_date} from {record.url}",
             f"  at commit `{record.sha}` (revision `{record.revision}`).",
             "- config.json: the file as the Hub served it at that commit.",
             "- weights.yaml: parameter counts by dtype and tensor bytes summed from the safetensors headers "
             "(ranged reads of each file's header; no weights were downloaded)."]
    lines += [f"- Caveat: {c}" for c in info.caveats]
    return "\n".join(lines) + "\n"


def _list(settings: HubSettings, output: str) -> int:
    bundled = BundledResolver(bundle_dirs_from_env())
    rows = []
    for model_id in bundled.known():
        info = bundled.resolve(model_id)
        rows.append({"model": info.model_id, "where": "bundled", "revision": "", "sha": "", "fetched": "",
                     "params": info.safetensors_params, "path": info.source.removeprefix("bundled: ")})
    resolver = HubResolver(settings)
    for record in resolver.cached():
        fresh = record.fresh(settings.ttl)
        rows.append({"model": record.model_id, "where": "cache" if fresh else "cache (stale)",
                     "revision": record.revision, "sha": record.sha or "", "fetched": record.fetched_date,
                     "params": record.info.safetensors_params,
                     "path": str(resolver.disk.folder(record.model_id, record.revision))})
    if output == "json":
        print(json.dumps({"cache_dir": str(settings.cache_dir), "hub": None if settings.offline else settings.endpoint,
                          "models": rows}, indent=2))
        return EXIT_FITS
    hub = "off (offline)" if settings.offline else settings.endpoint
    print(f"cache: {settings.cache_dir}   hub: {hub}   token: {settings.token_source}")
    width = max([len(r["model"]) for r in rows] + [5])
    print(f"{'MODEL':<{width}}  {'WHERE':<13}  {'REVISION':<12}  {'PARAMS':>16}  FETCHED")
    for r in rows:
        params = f"{r['params']:,}" if r["params"] else "-"
        print(f"{r['model']:<{width}}  {r['where']:<13}  {r['revision'][:12]:<12}  {params:>16}  {r['fetched']}")
    return EXIT_FITS


def _fetch_error(exc: HubError, settings: HubSettings) -> str:
    """The Hub error without advice to run `models fetch` (this is it), with what would help instead."""
    text = str(exc).replace(f", or {BUNDLE_HINT}", "").replace(f": {BUNDLE_HINT}", "").replace(BUNDLE_HINT, "")
    if isinstance(exc, HubOffline) and settings.offline:
        text += "; fetching needs the Hub: unset HF_HUB_OFFLINE and VLLM_FIT_HUB=0, or run this where the Hub is reachable"
    return text


def _fetch(settings: HubSettings, args: argparse.Namespace) -> int:
    resolver = HubResolver(settings)
    failed = 0
    results = []
    for model_id in args.models:
        try:
            record = resolver.refresh(model_id, args.revision, timeout=args.timeout)
        except HubError as exc:
            failed += 1
            message = _fetch_error(exc, settings)
            named = message.startswith(repr(model_id))
            sys.stderr.write(f"vllm-fit models fetch: {'' if named else model_id + ': '}{message}\n")
            results.append({"model": model_id, "error": type(exc).__name__, "message": message})
            continue
        entry = {"model": record.model_id, "revision": record.revision, "sha": record.sha,
                 "params_by_dtype": record.info.params_by_dtype, "caveats": list(record.info.caveats),
                 "cache": str(resolver.disk.folder(record.model_id, record.revision)) if record.durable else None}
        if args.out is not None:
            folder = write_bundle(args.out / model_dir_name(record.model_id), record)
            (folder / "SOURCE.md").write_text(_source_md(record))
            entry["bundle"] = str(folder)
        results.append(entry)
        if args.output == "table":
            total = record.info.safetensors_params
            where = f" -> {entry['bundle']}" if "bundle" in entry else ""
            print(f"{record.model_id} @ {(record.sha or record.revision)[:12]}: "
                  f"{f'{total:,} parameters' if total else 'parameters from the architecture'}{where}")
            for caveat in record.info.caveats:
                print(f"  caveat: {caveat}")
    if args.output == "json":
        print(json.dumps(results, indent=2))
    resolver.wait_idle(1.0)
    return EXIT_REJECTED if failed else EXIT_FITS


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not argv:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help is 0, bad usage 2
        return EXIT_FITS if exc.code == 0 else EXIT_BAD_INPUT
    try:
        settings = HubSettings.from_env()
        if args.action == "list":
            return _list(settings, args.output)
        if args.out is not None and args.out.exists() and not args.out.is_dir():
            raise VllmFitError(f"--out {args.out} is not a directory")
        return _fetch(settings, args)
    except VllmFitError as exc:
        sys.stderr.write(f"vllm-fit models: {exc}\n")
        return EXIT_BAD_INPUT
