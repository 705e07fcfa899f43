"""`vllm-fit verify --metrics URL`: compare a running vLLM's KV cache with the plan."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional, Sequence, TextIO

from ..errors import VllmFitError
from ..logs.compare import error_pct
from ..logs.metrics import VllmMetrics, blocks_for_tokens, parse_vllm_metrics
from ..memory.result import MemoryPlan
from . import EXIT_BAD_INPUT, EXIT_FITS, EXIT_REJECTED
from .common import split_options
from .logs import parse_percent

MAX_METRICS_BYTES = 16 << 20
DEFAULT_TIMEOUT_S = 10.0

HELP = """usage: vllm-fit verify --metrics URL [MODEL] [vLLM flags] [--gpu NAME|SIZE] [--vllm-version X.Y.Z]
                       [--prompt-tokens N] [--max-error PCT] [--timeout S] [--profiles DIR] [-o table|json]

Read a running vLLM's Prometheus endpoint and compare what it allocated with the plan for the
same launch: `vllm:cache_config_info` (num_gpu_blocks, block_size) and
`vllm:kv_cache_usage_perc` (older servers: vllm:gpu_cache_usage_perc).

--metrics URL     the server (http://host:8000) or its /metrics URL
MODEL, flags      the launch, as for `vllm-fit plan` (MODEL defaults to the model_name label)
--gpu NAME|SIZE   the GPU (default H100-80GB)
--prompt-tokens N predict the usage of one request of N tokens: ceil(N / block_size) blocks of
                  the server's num_gpu_blocks, next to the usage the server reports
--max-error PCT   fail when the predicted blocks differ from the server's by more (default 5%)
--timeout S       seconds to wait for the server (default 10)
-o table|json     output (default table)

Exit status: 0 agree, 1 the block count differs by more than --max-error, 2 bad input or an
unreachable server.
"""

_WITH_VALUE = {"--metrics", "--gpu", "--vllm-version", "--prompt-tokens", "--max-error", "--timeout", "--profiles",
               "-o", "--output"}



def metrics_url(text: str) -> str:
    parsed = urllib.parse.urlsplit(text.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise VllmFitError(f"--metrics: {text!r} is not an http(s) URL")
    if parsed.path in ("", "/"):
        parsed = parsed._replace(path="/metrics")
    return urllib.parse.urlunsplit(parsed)


def fetch_metrics(url: str, timeout: float) -> str:
    request = urllib.request.Request(url, headers={"Accept": "text/plain"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (URL checked above)
            data = response.read(MAX_METRICS_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise VllmFitError(f"{url}: the server answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise VllmFitError(f"{url}: cannot reach the server ({reason})") from None
    if len(data) > MAX_METRICS_BYTES:
        raise VllmFitError(f"{url}: the answer is larger than {MAX_METRICS_BYTES >> 20} MiB; is this vLLM's /metrics?")
    return data.decode("utf-8", errors="replace")


def _plan(metrics: VllmMetrics, rest: list[str], ours: dict[str, str]) -> MemoryPlan:
    from ..hub import default_resolver
    from ..launch.argv import parse_vllm_args
    from ..memory.plan import plan
    from ..profiles import gpu_catalog, runtime_profiles_with

    argv = list(rest)
    if not argv or argv[0].startswith("-"):
        if not metrics.model_name:
            raise VllmFitError("give MODEL: the server's metrics carry no model_name")
        argv = [metrics.model_name, *argv]
    first = metrics.first
    if first is not None and first.block_size and not any(a.startswith("--block-size") for a in argv):
        argv += ["--block-size", str(first.block_size)]
    launch = parse_vllm_args(argv, vllm_version=ours.get("--vllm-version")).launch
    gpu = gpu_catalog().resolve(ours.get("--gpu", "H100-80GB"))
    info = default_resolver().resolve(launch.model, launch.revision)
    return plan(info, launch, gpu, runtime_profiles_with(ours.get("--profiles")), suggest=False)


def main(argv: Sequence[str], stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    if not argv or argv[0] in ("-h", "--help") or "--help" in argv:
        out.write(HELP)
        return EXIT_FITS if argv else EXIT_BAD_INPUT
    try:
        ours, rest = split_options(argv, _WITH_VALUE)
        if "--metrics" not in ours:
            raise VllmFitError("--metrics URL is required")
        output = ours.get("--output", "table")
        if output not in ("table", "json"):
            raise VllmFitError(f"-o must be table or json, not {output!r}")
        max_error = parse_percent(ours.get("--max-error", "5"))
        try:
            timeout = float(ours.get("--timeout", DEFAULT_TIMEOUT_S))
        except ValueError:
            raise VllmFitError(f"--timeout: {ours['--timeout']!r} is not a number of seconds") from None
        if not 0 < timeout <= 600:
            raise VllmFitError("--timeout must be between 0 and 600 seconds")
        prompt_tokens: Optional[int] = None
        if "--prompt-tokens" in ours:
            try:
                prompt_tokens = int(ours["--prompt-tokens"].replace(",", "").replace("_", ""))
            except ValueError:
                raise VllmFitError(f"--prompt-tokens: {ours['--prompt-tokens']!r} is not a whole number") from None
            if prompt_tokens <= 0:
                raise VllmFitError("--prompt-tokens must be positive")
        url = metrics_url(ours["--metrics"])
        metrics = parse_vllm_metrics(fetch_metrics(url, timeout))
        first = metrics.first
        if first is None or first.num_gpu_blocks is None:
            raise VllmFitError(f"{url}: no vllm:cache_config_info with num_gpu_blocks (is this a vLLM server that has started?)")
        result = _plan(metrics, rest, ours)
    except VllmFitError as exc:
        err.write(f"vllm-fit verify: {exc}\n")
        return EXIT_BAD_INPUT
    except ValueError as exc:
        err.write(f"vllm-fit verify: {exc}\n")
        return EXIT_BAD_INPUT

    measured_blocks = first.num_gpu_blocks
    block_size = first.block_size or result.kv_cache.block_size
    predicted_blocks = result.kv_cache.blocks
    blocks_err = error_pct(float(predicted_blocks), float(measured_blocks))
    request = None
    if prompt_tokens is not None:
        need = blocks_for_tokens(prompt_tokens, block_size)
        request = {
            "prompt_tokens": prompt_tokens,
            "block_size": block_size,
            "blocks": need,
            "expected_usage_pct": round(100.0 * need / measured_blocks, 2) if measured_blocks else None,
            "expected_usage_pct_planned_blocks": round(100.0 * need / predicted_blocks, 2) if predicted_blocks else None,
            "reported_usage_pct": None if first.kv_cache_usage is None else round(100.0 * first.kv_cache_usage, 2),
        }
    agree = blocks_err is not None and abs(blocks_err) <= max_error
    payload = {
        "url": url,
        "model": result.model,
        "gpu": result.gpu["name"],
        "vllm_version": result.vllm_version,
        "engines": [e.model_dump(mode="json") for e in metrics.engines],
        "measured": {"gpu_blocks": measured_blocks, "block_size": first.block_size,
                     "kv_cache_usage_pct": None if first.kv_cache_usage is None else round(100 * first.kv_cache_usage, 2),
                     "usage_metric": first.usage_metric},
        "predicted": {"gpu_blocks": predicted_blocks, "block_size": result.kv_cache.block_size,
                      "kv_cache_tokens": result.kv_cache.tokens, "kv_cache_gib": result.per_gpu.kv_cache_gib},
        "error_pct": {"gpu_blocks": blocks_err},
        "max_error_pct": max_error,
        "request": request,
        "agree": agree,
    }
    if output == "json":
        out.write(json.dumps(payload, indent=2) + "\n")
    else:
        lines = [f"{url}: {result.model}, planned on {result.gpu['name']} with vLLM {result.vllm_version}",
                 f"  GPU blocks     server {measured_blocks:,} x {first.block_size or '?'} tokens   "
                 f"predicted {predicted_blocks:,} x {result.kv_cache.block_size}   "
                 f"error {blocks_err:+.1f}% ({'within' if agree else 'OUTSIDE'} {max_error:g}%)"]
        if first.kv_cache_usage is not None:
            lines.append(f"  KV cache usage now {100 * first.kv_cache_usage:.2f}% ({first.usage_metric})")
        if request is not None:
            lines.append(f"  one request of {prompt_tokens:,} tokens: ceil({prompt_tokens:,} / {block_size}) = "
                         f"{request['blocks']:,} blocks of {measured_blocks:,} = {request['expected_usage_pct']:.2f}%"
                         + (f" (server reports {request['reported_usage_pct']:.2f}%)"
                            if request["reported_usage_pct"] is not None else ""))
        if len(metrics.engines) > 1:
            lines.append(f"  {len(metrics.engines)} engines; the first is compared (`-o json` lists each)")
        out.write("\n".join(lines) + "\n")
    return EXIT_FITS if agree else EXIT_REJECTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
