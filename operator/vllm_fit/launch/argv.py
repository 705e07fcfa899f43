"""Parse the arguments of `vllm serve` the way vLLM's argparse does, for the flags that matter.

vLLM's parser (FlexibleArgumentParser, vllm/utils/argparse_utils.py) turns underscores into
dashes in option names, accepts `--x=y` and `--x y`, unambiguous prefixes (argparse's
allow_abbrev), BooleanOptionalAction `--x`/`--no-x` for boolean fields, and human-readable
integers (16k, 16K) for sizes. `vllm serve MODEL` takes the model positionally and moves
`--model X` there; the legacy `python -m vllm.entrypoints.openai.api_server` parses the same
flags but ignores a positional model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Optional, Sequence

from ..errors import VllmFitError
from ..units import parse_human_int
from .model import VllmLaunch


class UnresolvedValue(str):
    """A token whose real value is not knowable here (e.g. `$(HF_MODEL)` from a Secret).

    The manifest reader puts these into argv; the parser records the flag they feed as
    unresolved instead of guessing.
    """

    def __new__(cls, text: str, reason: str = "") -> "UnresolvedValue":
        obj = super().__new__(cls, text)
        obj.reason = reason or f"{text} cannot be resolved at admission time"
        return obj


def _to_int(flag: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise VllmFitError(f"{flag}: {raw!r} is not an integer") from None


def _to_float(flag: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise VllmFitError(f"{flag}: {raw!r} is not a number") from None


def _human(flag: str, raw: str) -> int:
    return parse_human_int(raw, flag=flag)


def _human_or_auto(flag: str, raw: str) -> int:
    return parse_human_int(raw, flag=flag, allow_auto=True)


def _text(flag: str, raw: str) -> str:
    return raw


@dataclass(frozen=True)
class _Flag:
    field: Optional[str]  # VllmLaunch field, or None for flags we only need to skip
    takes_value: bool
    convert: Callable[[str, str], object] = _text
    many: bool = False  # argparse nargs="+": every following token up to the next option


_MEMORY_FLAGS: dict[str, _Flag] = {
    "model": _Flag("model", True),
    "revision": _Flag("revision", True),
    "tensor-parallel-size": _Flag("tensor_parallel_size", True, _to_int),
    "pipeline-parallel-size": _Flag("pipeline_parallel_size", True, _to_int),
    "data-parallel-size": _Flag("data_parallel_size", True, _to_int),
    "data-parallel-size-local": _Flag("data_parallel_size_local", True, _to_int),
    "gpu-memory-utilization": _Flag("gpu_memory_utilization", True, _to_float),
    "max-model-len": _Flag("max_model_len", True, _human_or_auto),
    "block-size": _Flag("block_size", True, _to_int),
    "kv-cache-dtype": _Flag("kv_cache_dtype", True),
    "dtype": _Flag("dtype", True),
    "quantization": _Flag("quantization", True),
    "enforce-eager": _Flag("enforce_eager", False),
    "max-num-seqs": _Flag("max_num_seqs", True, _to_int),
    "max-num-batched-tokens": _Flag("max_num_batched_tokens", True, _human),
    "kv-cache-memory-bytes": _Flag("kv_cache_memory_bytes", True, _human),
    "enable-expert-parallel": _Flag("enable_expert_parallel", False),
    "cpu-offload-gb": _Flag("cpu_offload_gb", True, _to_float),
    "num-gpu-blocks-override": _Flag("num_gpu_blocks_override", True, _to_int),
    "disable-sliding-window": _Flag("disable_sliding_window", False),
    "disable-hybrid-kv-cache-manager": _Flag("disable_hybrid_kv_cache_manager", False),
    "kv-transfer-config": _Flag("kv_transfer_config", True),
    "kv-events-config": _Flag("kv_events_config", True),
    "limit-mm-per-prompt": _Flag("limit_mm_per_prompt", True),
    "skip-mm-profiling": _Flag("skip_mm_profiling", False),
    "distributed-executor-backend": _Flag("distributed_executor_backend", True),
    "enable-extensible-kv-cache": _Flag("enable_extensible_kv_cache", False),
    "config": _Flag(None, True),  # handled specially: a file we cannot read at admission
}

# Other vLLM (0.11-0.2x) serve options, needed so that prefix abbreviations resolve as
# argparse would (a prefix shared with any of these is ambiguous) and so that their values
# are skipped rather than taken for the model.
_OTHER_VALUE_FLAGS = """
host port uvicorn-log-level api-key lora-modules chat-template chat-template-content-format
response-role ssl-keyfile ssl-certfile ssl-ca-certs ssl-cert-reqs root-path middleware
served-model-name tokenizer tokenizer-mode tokenizer-revision download-dir load-format
config-format seed data-parallel-rank data-parallel-address
data-parallel-rpc-port data-parallel-start-rank data-parallel-backend
decode-context-parallel-size swap-space prefix-caching-hash-algo max-num-partial-prefills
max-long-partial-prefills long-prefill-token-threshold max-logprobs logprobs-mode rope-scaling
rope-theta hf-overrides hf-token hf-config-path code-revision max-seq-len-to-capture
compilation-config speculative-config tool-call-parser
tool-parser-plugin reasoning-parser mm-processor-kwargs
mm-processor-cache-gb mm-encoder-tp-mode override-generation-config generation-config
model-impl worker-cls worker-extension-cls max-lora-rank max-loras max-cpu-loras lora-dtype
long-lora-scaling-factors scheduling-policy scheduler-cls pooler-config override-pooler-config
api-server-count allowed-local-media-path allowed-origins allowed-methods allowed-headers
otlp-traces-endpoint collect-detailed-traces max-parallel-loading-workers num-scheduler-steps
safetensors-load-strategy model-loader-extra-config ignore-patterns qlora-adapter-name-or-path
show-hidden-metrics-for-version cuda-graph-sizes expert-placement-strategy eplb-config
num-redundant-experts all2all-backend guided-decoding-backend structured-outputs-config
kv-sharing-fast-prefill kv-offloading-size kv-offloading-backend cudagraph-capture-sizes
max-cudagraph-capture-size performance-mode logits-processors io-processor-plugin
observability-config additional-config ray-workers-use-nsight-config enable-log-outputs-config
override-attention-dtype attention-backend max-num-encoder-input-tokens
log-config-file h11-max-incomplete-event-size h11-max-header-count tool-server
disable-access-log-for-endpoints dbo-decode-token-threshold dbo-prefill-token-threshold
allowed-media-domains
""".split()

# Options vLLM registers with nargs="+" (list-typed config fields: get_kwargs() in
# vllm/engine/arg_utils.py turns `list[...]` into nargs="+"; FrontendArgs in
# vllm/entrypoints/openai/cli_args.py keeps it for --api-key and --lora-modules). They take
# every following token up to the next option, so `--served-model-name a b MODEL` leaves no
# positional. Not here: --middleware (action="append", one value each) and
# --allowed-origins/-methods/-headers (nargs removed, one JSON value).
_MANY_VALUE_FLAGS = frozenset("""
served-model-name lora-modules api-key cuda-graph-sizes cudagraph-capture-sizes
allowed-media-domains ignore-patterns logits-processors collect-detailed-traces
""".split())

_OTHER_BOOL_FLAGS = """
enable-prefix-caching enable-chunked-prefill trust-remote-code disable-log-stats enable-lora
disable-log-requests enable-log-requests enable-auto-tool-choice disable-custom-all-reduce
disable-cascade-attn enable-sleep-mode skip-tokenizer-init enable-prompt-embeds
async-scheduling enable-eplb enable-dbo headless disable-fastapi-docs enable-request-id-headers
disable-frontend-multiprocessing enable-server-load-tracking enable-force-include-usage
enable-tokenizer-info-endpoint return-tokens-as-token-ids disable-uvicorn-access-log
enable-ssl-refresh enable-log-outputs enable-prompt-tokens-details use-tqdm-on-load
enable-multimodal-encoder-data-parallel disable-chunked-mm-input
fully-sharded-loras calculate-kv-scales ray-workers-use-nsight disable-async-output-proc
enable-lora-bias disable-mm-preprocessor-cache enable-reasoning data-parallel-external-lb
enable-mfu-metrics exclude-tools-when-tool-choice-none data-parallel-hybrid-lb
""".split()

_ALIASES = {
    "-tp": "tensor-parallel-size",
    "-pp": "pipeline-parallel-size",
    "-dp": "data-parallel-size",
    "-dpl": "data-parallel-size-local",
    "-dpa": "data-parallel-address",
    "-dpp": "data-parallel-rpc-port",
    "-dpr": "data-parallel-start-rank",
    "-dpn": "data-parallel-rank",
    "-dpb": "data-parallel-backend",
    "-dph": "data-parallel-hybrid-lb",
    "-dpe": "data-parallel-external-lb",
    "-dcp": "decode-context-parallel-size",
    "-q": "quantization",
    "-asc": "api-server-count",
    "-cc": "compilation-config",
    "-O": "compilation-config",
}

_ALL_FLAGS: dict[str, _Flag] = {
    **{name: _Flag(None, True, many=name in _MANY_VALUE_FLAGS) for name in _OTHER_VALUE_FLAGS},
    **{name: _Flag(None, False) for name in _OTHER_BOOL_FLAGS},
    **_MEMORY_FLAGS,
}
_BOOL_NAMES = frozenset(name for name, spec in _ALL_FLAGS.items() if not spec.takes_value)

Entrypoint = Literal["serve", "api_server"]


@dataclass
class ParsedArgs:
    launch: VllmLaunch
    ignored: list[str] = field(default_factory=list)  # unknown options we skipped
    # Every option string as written (`=value` removed), for the per-release check of
    # vllm_fit.launch.flags; aliases and abbreviations as given.
    options: list[str] = field(default_factory=list)


def _resolve_long(name: str) -> tuple[str, bool]:
    """Resolve `--name` (dashes already normalised) to a known flag and whether `no-` negated it."""
    if name in _ALL_FLAGS:
        return name, False
    if name.startswith("no-") and name[3:] in _BOOL_NAMES:
        return name[3:], True
    # argparse also accepts unambiguous prefixes of every option string, `--no-x` forms included.
    candidates = {flag for flag in _ALL_FLAGS if flag.startswith(name)}
    candidates |= {f"no-{flag}" for flag in _BOOL_NAMES if f"no-{flag}".startswith(name)}
    if len(candidates) == 1:
        (only,) = candidates
        return (only[3:], True) if only.startswith("no-") and only not in _ALL_FLAGS else (only, False)
    if len(candidates) > 1:
        shown = ", ".join(f"--{c}" for c in sorted(candidates)[:4])
        raise VllmFitError(f"--{name} is ambiguous (could match {shown}); vLLM would refuse to start")
    return name, False


def parse_vllm_args(
    argv: Sequence[str],
    *,
    entrypoint: Entrypoint = "serve",
    vllm_version: Optional[str] = None,
    env: Optional[dict[str, str]] = None,
) -> ParsedArgs:
    """Parse the tokens after `vllm serve` (or after `-m vllm.entrypoints.openai.api_server`)."""
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    unresolved: dict[str, None] = {}  # an ordered set: membership and removal in O(1)
    ignored: list[str] = []
    options: list[str] = []
    positional: Optional[str] = None
    positional_index: Optional[int] = None

    def assign(flag: str, spec: _Flag, raw: object, index: int) -> None:
        if spec.field is None:
            if flag == "config":
                unresolved["--config"] = None
            return
        if isinstance(raw, UnresolvedValue):
            unresolved[f"--{flag}"] = None
            values.pop(spec.field, None)
            sources.pop(spec.field, None)
            return
        if isinstance(raw, bool):
            values[spec.field] = raw
        else:
            values[spec.field] = spec.convert(f"--{flag}", str(raw))
        sources[spec.field] = f"argv[{index}]"
        if f"--{flag}" in unresolved:  # argparse: the last occurrence wins
            del unresolved[f"--{flag}"]

    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        index = i
        i += 1
        if isinstance(token, UnresolvedValue) and not str(token).startswith("-"):
            if positional is None and entrypoint == "serve":
                positional, positional_index = token, index
            continue
        if token == "--":
            continue
        if token.startswith("-O") and not token.startswith("--") and len(token) > 2:
            continue  # -O3, -O.level=3: compilation shorthand, no memory effect we model
        if _is_option(token):
            options.append(str(token).split("=", 1)[0])
            if token.startswith("--"):
                key, eq, attached = token[2:].partition("=")
                head, dot, tail = key.partition(".")
                key = head.replace("_", "-")
                if dot:  # dotted JSON sub-argument, e.g. --compilation-config.level 3
                    if not eq and i < len(tokens) and not tokens[i].startswith("-"):
                        i += 1
                    continue
                flag, negated = _resolve_long(key)
            else:
                key, eq, attached = token.partition("=")
                if key not in _ALIASES:
                    ignored.append(token)
                    continue
                flag, negated = _ALIASES[key], False
            spec = _ALL_FLAGS.get(flag)
            if spec is None:
                ignored.append(token)
                # Assume an unknown option takes a value when the next token is not an option.
                if not eq and i < len(tokens) and not str(tokens[i]).startswith("-"):
                    ignored.append(tokens[i])
                    i += 1
                continue
            if not spec.takes_value:
                if eq:
                    raise VllmFitError(f"{token}: --{flag} takes no value; vLLM would refuse to start")
                assign(flag, spec, not negated, index)
                continue
            if negated:
                raise VllmFitError(f"{token}: --{flag} has no --no- form; vLLM would refuse to start")
            if spec.many and not eq:
                start = i
                while i < len(tokens) and not _is_option(tokens[i]):
                    i += 1
                if i == start:
                    raise VllmFitError(f"{token} needs at least one value; vLLM would refuse to start")
                continue  # no many-valued option feeds a launch field
            if eq:
                raw: object = attached if not isinstance(token, UnresolvedValue) else UnresolvedValue(attached)
            elif i < len(tokens):
                raw = tokens[i]
                i += 1
            else:
                raise VllmFitError(f"{token} needs a value; vLLM would refuse to start")
            if flag == "config":
                unresolved["--config"] = None
                continue
            assign(flag, spec, raw, index)
            continue
        # A positional argument: `vllm serve MODEL`.
        if positional is None:
            positional, positional_index = token, index
        else:
            ignored.append(token)

    if entrypoint == "serve" and positional is not None:
        # `vllm serve MODEL` wins over `--model` (vLLM moves --model into the positional slot).
        if isinstance(positional, UnresolvedValue):
            values.pop("model", None)
            unresolved["--model"] = None
        else:
            values["model"] = str(positional)
            sources["model"] = f"argv[{positional_index}]"
            unresolved.pop("--model", None)
    if "model" in values and values.get("model") == "":
        values.pop("model")

    launch = VllmLaunch(
        **values,
        vllm_version=vllm_version,
        env=dict(env or {}),
        unresolved=tuple(unresolved),
        sources=sources,
    )
    return ParsedArgs(launch=launch, ignored=ignored, options=options)


def _is_option(token: str) -> bool:
    """Whether argparse reads `token` as an option string rather than a value (`-1` is a value)."""
    token = str(token)
    return token.startswith("--") or (token.startswith("-") and len(token) > 1 and not _is_number(token))


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True
