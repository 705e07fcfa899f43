"""`vllm-fit logs [FILE|-]`: read a vLLM startup log, plan the same launch, and compare."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Optional, Sequence, TextIO

from ..errors import VllmFitError
from ..logs import StartupLog, read_startup_log
from ..logs.compare import Comparison, compare
from ..logs.launch import launch_flags, log_gpu, log_model, modelled_version
from ..logs.model import SEED_FIGURES
from ..logs.profile import measured_profile_entry
from ..profiles import write_measured_profile
from ..logs.startup_plan import StartupPlan, read_startup_plan
from ..memory.result import MemoryPlan
from ..memory.versions import DEFAULT_VLLM_VERSION
from . import EXIT_BAD_INPUT, EXIT_FITS, EXIT_REJECTED

MAX_LOG_BYTES = 64 << 20  # a startup log is kilobytes; a runaway pod log is cut here

HELP = f"""usage: vllm-fit logs [FILE|-] [--model ID] [--gpu NAME|SIZE] [--vllm-version X.Y.Z]
                     [--max-error PCT] [--startup-plan PATH] [--write-profile FILE]
                     [--profiles DIR] [-o table|json] [-- vLLM flags]

Read a vLLM startup log as `kubectl logs` prints it (V0 or V1, vLLM 0.6 to 0.34, any number
of ranks, JSON log lines, colours), extract what vLLM measured (weights, activation,
non-torch, CUDA graphs, KV cache GiB/tokens/blocks, max concurrency, free/total memory) and
any failure, plan the same launch, and print measured against predicted per term.

FILE            the log (default or `-`: standard input)
--model ID      the Hugging Face id, when the log names a local path (vLLM logs the path given)
--gpu NAME|SIZE the GPU, when the log does not say it (a catalog name, or its total, e.g. 79.18GiB;
                default: the total the log prints)
--vllm-version  the release to model (default: the version the log prints, else {DEFAULT_VLLM_VERSION})
--max-error PCT fail when the KV cache error exceeds this (default 5%)
--startup-plan PATH  a VLLM_ENABLE_STARTUP_PLAN file or its directory (vLLM 0.32+): its measured
                KV cache is compared too (and used when there is no log)
--write-profile FILE  write the measured overheads as a profile (profiles/ format, keyed by model,
                GPU, vLLM version, TP and the settings they depend on), citing the log
--profiles DIR  extra measured profiles to plan with (files written by --write-profile)
-o table|json   output (default table)
-- vLLM flags   flags that override or complete what the log shows (e.g. -- --max-num-seqs 64)

Exit status: 0 measured and predicted agree; 1 the KV cache error exceeds --max-error, vLLM
failed where vllm-fit said the launch fits, or started where it said it would not; 2 bad input
(unreadable log, unknown model or GPU).
"""

_WITH_VALUE = {"--model", "--gpu", "--vllm-version", "--max-error", "--startup-plan", "--write-profile",
               "--profiles", "-o", "--output"}
_LABELS = {
    "weights_gib": "weights GiB",
    "activation_gib": "activation GiB",
    "non_torch_gib": "non-torch GiB",
    "cuda_graph_gib": "CUDA graphs GiB",
    "kv_cache_gib": "KV cache GiB",
    "kv_cache_tokens": "KV tokens",
    "gpu_blocks": "GPU blocks",
    "max_concurrency": "max concurrency",
    "max_model_len": "max model len",
}


def _split(argv: Sequence[str]) -> tuple[dict[str, str], list[str], list[str]]:
    ours: dict[str, str] = {}
    positional: list[str] = []
    vllm_flags: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            vllm_flags = list(argv[i + 1:])
            break
        name, eq, value = token.partition("=")
        if name in _WITH_VALUE:
            if not eq:
                if i + 1 >= len(argv):
                    raise VllmFitError(f"{name} needs a value")
                value = argv[i + 1]
                i += 1
            ours[{"-o": "--output"}.get(name, name)] = value
        elif token.startswith("-") and token != "-":
            raise VllmFitError(f"unknown option {token} (vLLM flags go after `--`)")
        else:
            positional.append(token)
        i += 1
    if len(positional) > 1:
        raise VllmFitError(f"one log at a time, got {len(positional)}: {' '.join(positional)}")
    return ours, positional, vllm_flags


def parse_percent(text: str) -> float:
    raw = text.strip().rstrip("%")
    try:
        value = float(raw)
    except ValueError:
        raise VllmFitError(f"--max-error: {text!r} is not a percentage") from None
    if not math.isfinite(value) or value < 0:
        raise VllmFitError(f"--max-error: {text!r} must be a non-negative percentage")
    return value


def read_log_text(source: Optional[str], stdin: TextIO) -> tuple[str, str]:
    if source in (None, "-"):
        return stdin.read(MAX_LOG_BYTES), "<stdin>"
    path = Path(source)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_LOG_BYTES)
    except FileNotFoundError:
        raise VllmFitError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise VllmFitError(f"{source}: is a directory, not a log") from None
    except OSError as exc:
        raise VllmFitError(f"{source}: cannot read ({exc.strerror})") from None
    return data.decode("utf-8", errors="replace"), str(path)


def read_startup_plans(path: str) -> list[StartupPlan]:
    p = Path(path)
    files = sorted(p.glob("startup_plan_*.json")) if p.is_dir() else [p]
    if not files:
        raise VllmFitError(f"{path}: no startup_plan_*.json files")
    plans = []
    for f in files:
        try:
            text = f.read_text(errors="replace")
        except FileNotFoundError:
            raise VllmFitError(f"{f}: no such file") from None
        except OSError as exc:
            raise VllmFitError(f"{f}: cannot read ({exc.strerror})") from None
        plans.append(read_startup_plan(text, name=f.name))
    return plans


def plan_for_log(log: StartupLog, *, model: Optional[str], gpu_text: Optional[str], version: Optional[str],
                 extra_flags: Sequence[str], profiles_dir: Optional[str]) -> MemoryPlan:
    """Plan the launch the log shows. Raises VllmFitError when it cannot be planned."""
    from ..hub import default_resolver
    from ..launch.argv import parse_vllm_args
    from ..memory.plan import plan
    from ..profiles import gpu_catalog, runtime_profiles_with

    model_id = model or log_model(log)
    if not model_id:
        raise VllmFitError("the log does not name the model: pass --model ID")
    chosen_version = version or modelled_version(log.vllm_version)
    parsed = parse_vllm_args([model_id, *launch_flags(log), *extra_flags], vllm_version=chosen_version)
    launch = parsed.launch
    catalog = gpu_catalog()
    gpu = catalog.resolve(gpu_text) if gpu_text else log_gpu(log, catalog)
    if gpu is None:
        raise VllmFitError("the log does not say which GPU: pass --gpu NAME or --gpu SIZE (e.g. 79.18GiB)")
    info = default_resolver().resolve(launch.model, launch.revision)
    return plan(info, launch, gpu, runtime_profiles_with(profiles_dir), gpus_given=None)


def _fmt(key: str, value: Optional[float]) -> str:
    if value is None:
        return "-"
    if key in ("kv_cache_tokens", "gpu_blocks", "max_model_len"):
        return f"{int(value):,}"
    if key == "max_concurrency":
        return f"{value:.2f}x"
    return f"{value:.2f}"


def render(log: StartupLog, result: Optional[MemoryPlan], comparison: Optional[Comparison], source: str,
           max_error: float, plans: Sequence[StartupPlan], problem: Optional[str], version_given: bool = False) -> str:
    m = log.measured
    head = f"{source}: vLLM {log.vllm_version or '?'} ({log.engine or 'engine ?'})"
    if log.gpu_name or m.total_gib:
        head += f", GPU {log.gpu_name or '?'}" + (f" ({m.total_gib:.2f} GiB)" if m.total_gib else "")
    lines = [head]
    if result is not None:
        par = result.parallel
        lines.append(f"planned: {result.model} on {result.gpu['name']}, vLLM {result.vllm_version}, "
                     f"TP={par['tensor_parallel_size']} PP={par['pipeline_parallel_size']}, "
                     f"util {result.settings.get('gpu_memory_utilization', 0):.2f}")
    lines += ["", f"  {'term':<17}{'measured':>12}{'predicted':>12}{'error':>9}"]
    for key in SEED_FIGURES:
        measured = getattr(m, key)
        predicted = comparison.predicted.get(key) if comparison else None
        err = comparison.error_pct.get(key) if comparison else None
        label = _LABELS[key] + (" (est.)" if key == "cuda_graph_gib" and m.cuda_graph_source == "estimated" else "")
        lines.append(f"  {label:<17}{_fmt(key, measured):>12}{_fmt(key, predicted):>12}"
                     f"{(f'{err:+.1f}%' if err is not None else '-'):>9}")
    for p in plans:
        lines.append(f"  startup plan {p.fingerprint}: KV cache {p.kv_cache_gib:.2f} GiB"
                     + (f" (predicted {result.per_gpu.kv_cache_gib:.2f}, "
                        f"{100 * (result.per_gpu.kv_cache_gib - p.kv_cache_gib) / p.kv_cache_gib:+.1f}%)" if result else ""))
    if len(log.ranks) > 1:
        lines.append(f"  {len(log.ranks)} ranks print figures; measured shows rank 0's (`-o json` lists each)")
    lines.append("")
    if log.failure is not None:
        lines.append(f"vLLM failed to start: [{log.failure.code}] {log.failure.line[:200]}")
    if comparison is not None:
        said = "fits" if comparison.predicted_fits else "does not fit"
        if comparison.failed_where_fit:
            lines.append(f"MISMATCH: vLLM failed, but vllm-fit said the launch {said}")
        elif comparison.started is False:
            lines.append(f"agree: vLLM failed and vllm-fit said the launch {said}")
        elif comparison.started_where_rejected:
            lines.append("MISMATCH: vLLM started, but vllm-fit said the launch does not fit")
        if comparison.kv_error_pct is None:
            lines.append("KV cache: the log prints no KV figure to compare")
        elif comparison.kv_within is None:
            lines.append(f"KV cache error {comparison.kv_error_pct:+.1f}% (not judged: vLLM did not start)")
        else:
            word = "within" if comparison.kv_within else "OUTSIDE"
            lines.append(f"KV cache error {comparison.kv_error_pct:+.1f}% ({word} {max_error:g}%)")
    if result is not None and not log.vllm_version and not version_given:
        lines.append(f"note: the log does not say the vLLM version: modelled as {result.vllm_version} "
                     "(pass --vllm-version)")
    if problem:
        lines.append(f"no prediction: {problem}")
    for note in log.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def json_payload(log: StartupLog, result: Optional[MemoryPlan], comparison: Optional[Comparison],
                 plans: Sequence[StartupPlan], problem: Optional[str], max_error: float) -> dict[str, object]:
    payload = log.to_json_dict()
    payload["predicted"] = ({k: comparison.predicted[k] for k in SEED_FIGURES} if comparison else None)
    payload["error_pct"] = ({k: comparison.error_pct[k] for k in SEED_FIGURES} if comparison else None)
    payload["kv_error_pct"] = comparison.kv_error_pct if comparison else None
    payload["max_error_pct"] = max_error
    payload["agree"] = comparison.ok if comparison else None
    payload["plan"] = ({"model": result.model, "gpu": result.gpu["name"], "vllm_version": result.vllm_version,
                        "parallel": result.parallel, "fits": result.verdict.fits,
                        "reasons": [r.code for r in result.verdict.reasons]} if result else None)
    payload["startup_plans"] = [{"fingerprint": p.fingerprint, "kv_cache_gib": round(p.kv_cache_gib, 4),
                                 "free_memory_baseline_gib": p.free_memory_baseline_gib, "file": p.name} for p in plans]
    payload["prediction_problem"] = problem
    return payload


def main(argv: Sequence[str], stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None,
         stdin: Optional[TextIO] = None) -> int:
    out, err, inp = stdout or sys.stdout, stderr or sys.stderr, stdin or sys.stdin
    if argv and (argv[0] in ("-h", "--help") or "--help" in argv[: argv.index("--") if "--" in argv else len(argv)]):
        out.write(HELP)
        return EXIT_FITS
    try:
        ours, positional, vllm_flags = _split(argv)
        output = ours.get("--output", "table")
        if output not in ("table", "json"):
            raise VllmFitError(f"-o must be table or json, not {output!r}")
        max_error = parse_percent(ours.get("--max-error", "5"))
        plans = read_startup_plans(ours["--startup-plan"]) if "--startup-plan" in ours else []
        if positional or not plans:
            text, source = read_log_text(positional[0] if positional else None, inp)
        else:
            text, source = "", "startup plan"
        log = read_startup_log(text)
        if plans and log.measured.kv_cache_gib is None:
            # The plan is vLLM's own measurement: with no KV figure in the log it stands in for it.
            log = log.model_copy(update={"measured": log.measured.model_copy(
                update={"kv_cache_gib": round(plans[0].kv_cache_gib, 4)})})
    except VllmFitError as exc:
        err.write(f"vllm-fit logs: {exc}\n")
        return EXIT_BAD_INPUT
    if not text.strip() and not plans:
        err.write(f"vllm-fit logs: {source} is empty\n")
        return EXIT_BAD_INPUT

    result: Optional[MemoryPlan] = None
    comparison: Optional[Comparison] = None
    problem: Optional[str] = None
    try:
        result = plan_for_log(log, model=ours.get("--model"), gpu_text=ours.get("--gpu"),
                              version=ours.get("--vllm-version"), extra_flags=vllm_flags,
                              profiles_dir=ours.get("--profiles"))
        comparison = compare(log, result, max_error)
    except VllmFitError as exc:
        problem = str(exc)
    except ValueError as exc:  # pydantic validation of odd values the log carried
        problem = f"cannot plan this launch: {exc}"

    if "--write-profile" in ours:
        try:
            if result is None:
                raise VllmFitError(f"cannot write a profile without planning the launch ({problem})")
            entry = measured_profile_entry(log, result, source=source)
            write_measured_profile(Path(ours["--write-profile"]), entry)
            err.write(f"vllm-fit logs: wrote the measured profile to {ours['--write-profile']}\n")
        except VllmFitError as exc:
            err.write(f"vllm-fit logs: {exc}\n")
            return EXIT_BAD_INPUT

    if output == "json":
        out.write(json.dumps(json_payload(log, result, comparison, plans, problem, max_error), indent=2) + "\n")
    else:
        out.write(render(log, result, comparison, source, max_error, plans, problem,
                         version_given="--vllm-version" in ours) + "\n")
    if problem is not None:
        err.write(f"vllm-fit logs: no prediction: {problem}\n")
        return EXIT_BAD_INPUT
    return EXIT_FITS if comparison is not None and comparison.ok else EXIT_REJECTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
