"""`read_startup_log(text) -> StartupLog`: the figures a vLLM startup log prints, for any
release from 0.6 to 0.34, V0 or V1, one rank or many. A pure function over text.

The patterns follow vLLM's own format strings (see each comment for the releases that print
them). Where one figure has several spellings, the most precise wins (`Model loading took
14.2488 GiB` over `model weights take 14.25GiB`); within one spelling the last line wins, so a
log holding a failed boot and a retry reports the retry.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Callable, Optional

from .lines import Record, records
from .model import (
    PER_RANK_FIGURES,
    FailureCode,
    MemoryFigures,
    RankFigures,
    StartupFailure,
    StartupLog,
    StartupPlanEvent,
)

GIB = float(1 << 30)
_NUM = r"(?<![\d.])(-?\d+(?:\.\d+)?)"  # starts at a number's first digit (no quadratic rescans)
_INT = r"(\d[\d,]*)"


def _f(x: str) -> float:
    return float(x)


def _i(x: str) -> int:
    return int(x.replace(",", ""))


@dataclass(frozen=True)
class _Pattern:
    figure: str
    regex: re.Pattern[str]
    group: int = 1
    convert: Callable[[str], object] = _f
    priority: int = 0  # lower wins
    anchor: str = ""  # literal text every match contains: lines without it skip the regex


def _anchor(pattern: str) -> str:
    """The longest literal run every match of `pattern` must contain (outside groups, escapes
    and optional characters), so most lines are ruled out by a substring test."""
    text = re.sub(r"\\.", "\x00", pattern)
    while True:
        stripped = re.sub(r"\([^()]*\)", "\x00", text)
        if stripped == text:
            break
        text = stripped
    if "|" in text:
        return ""
    text = re.sub(r".[?*]", "\x00", text)
    runs = re.findall(r"[A-Za-z _-]{4,}", text)
    return max(runs, key=len) if runs else ""


def _p(figure: str, pattern: str, group: int = 1, convert: Callable[[str], object] = _f, priority: int = 0) -> _Pattern:
    return _Pattern(figure, re.compile(pattern), group, convert, priority, _anchor(pattern))


_PATTERNS: tuple[_Pattern, ...] = (
    # weights. V1 0.8+ "Model loading took %.4f GiB [memory ]and %.6f seconds"; V0 and V1 <= 0.7
    # "Loading model weights took %.4f GB" (GiB despite the unit); V0 0.6.5+ profiling summary;
    # the profiling repr ("weights memory: XGiB", DEBUG); the 0.10.2-0.2x summary line.
    _p("weights_gib", r"Model loading took " + _NUM + r" ?GiB"),
    _p("weights_gib", r"Loading model weights took " + _NUM + r" ?Gi?B"),
    _p("weights_gib", r"model weights take\s+" + _NUM + r" ?GiB", priority=1),
    _p("weights_gib", r"weights memory: " + _NUM + r" ?GiB", priority=1),
    _p("weights_gib", r"Actual usage is " + _NUM + r" GiB for weight\b", priority=1),
    # activation: V0 0.6.5+, the DEBUG repr (0.9+), the summary lines (0.10.2+).
    _p("activation_gib", r"PyTorch activation peak memory(?: takes)?\s+" + _NUM + r" ?GiB"),
    _p("activation_gib", r"torch peak memory increase: " + _NUM + r" ?GiB"),
    _p("activation_gib", _NUM + r" GiB for peak activation", priority=1),
    _p("activation_gib", r"kept for transient activations \(" + _NUM + r" GiB allocated at peak", priority=2),
    # non-torch: V0 0.6.5+, the DEBUG repr (0.9-0.27), the 0.10.2 summary.
    _p("non_torch_gib", r"non_torch_memory(?: takes)?\s+" + _NUM + r" ?GiB"),
    _p("non_torch_gib", r"Memory profiling results:.*\bnon_torch_memory=" + _NUM + r" ?GiB"),
    _p("non_torch_gib", r"non-torch forward increase memory: " + _NUM + r" ?GiB"),
    _p("non_torch_gib", _NUM + r" GiB for non-torch memory", priority=1),
    # weights + non-torch as one figure: the repr from 0.28, the summary line from 0.2x.
    _p("weights_and_non_torch_gib", r"total consumed \(from mem_get_info\): " + _NUM + r" ?GiB"),
    _p("weights_and_non_torch_gib", _NUM + r" GiB for consumed memory \(weights \+ non-torch\)"),
    # CUDA graphs: the capture itself (V0 0.6+, V1), the pool comparison (0.2x+), the summary.
    _p("cuda_graph_gib", r"Graph capturing finished in \d+ secs?, took " + _NUM + r" ?GiB"),
    _p("cuda_graph_gib", r"CUDA graph pool memory: " + _NUM + r" GiB \(actual\)"),
    _p("cuda_graph_gib", _NUM + r" GiB for CUDAGraph memory", priority=1),
    _p("cuda_graph_estimate_gib", r"Estimated CUDA graph memory: " + _NUM + r" GiB total"),
    _p("cuda_graph_estimate_gib", r"CUDA graph pool memory: [-\d.]+ GiB \(actual\), " + _NUM + r" GiB \(estimated\)"),
    # KV cache memory per GPU. 0.34's extensible KV cache re-sizes after warm-up and graph
    # capture: its final size wins over the profiling estimate printed before.
    _p("kv_cache_gib", r"Extended KV cache to \d+ blocks \(" + _NUM + r" GiB\)", priority=-1),
    _p("kv_cache_gib", r"\d+ KV cache blocks \(" + _NUM + r" GiB\) fit within the requested", priority=-1),
    _p("kv_cache_gib", r"Available KV cache memory: " + _NUM + r" ?GiB"),
    _p("kv_cache_gib", r"the rest of the memory reserved for KV Cache is " + _NUM + r" ?GiB"),
    _p("kv_cache_gib", r"available_kv_cache_memory\s+" + _NUM + r" ?GiB"),
    _p("kv_cache_gib", r"Memory profiling results:.*\bkv_cache_size=" + _NUM + r" ?GiB"),
    _p("kv_cache_gib", r"larger than the available KV cache memory \(" + _NUM + r" GiB\)", priority=1),
    _p("kv_cache_gib", r"Current kv cache memory in use is " + _NUM + r" GiB", priority=2),
    _p("kv_cache_gib", r"Current kv cache memory in use is (\d+) bytes", convert=lambda s: int(s) / GIB, priority=2),
    _p("kv_cache_gib", r"reserved " + _NUM + r" GiB memory for KV Cache as specified by kv_cache_memory_bytes", priority=2),
    # Engine-wide KV figures.
    _p("kv_cache_tokens", r"\b(?:GPU|[A-Z]{2,5})(?: \+ host)? KV cache size: " + _INT + r" tokens", convert=_i),
    _p("kv_cache_tokens", r"maximum number of tokens that can be stored in KV cache \((\d+)\)", convert=_i, priority=1),
    _p("gpu_blocks", r"#? ?(?:GPU|CUDA|cuda|gpu) blocks: (\d+)", convert=_i),
    _p("gpu_blocks", r"num_gpu_blocks is: (\d+)", convert=_i),
    _p("gpu_blocks", r"Extended KV cache to (\d+) blocks", convert=_i, priority=-1),
    _p("gpu_blocks", r"(\d+) KV cache blocks \([\d.]+ GiB\) fit within the requested", convert=_i, priority=-1),
    _p("max_concurrency", r"Maximum concurrency for [\d,]+ tokens per request: " + _NUM + r"x"),
    _p("max_model_len", r"Maximum concurrency for " + _INT + r" tokens per request", convert=_i),
    _p("max_model_len", r"Initializing .*LLM engine .*\bmax_seq_len=(\d+)", convert=_i, priority=1),
    _p("max_model_len", r"model(?:'s|s's|s'|s)? max seq len \((\d+)\)", convert=_i, priority=1),
    # Device memory: total, free at start, and what util x total allows.
    _p("total_gib", r"total_gpu_memory \(" + _NUM + r" ?GiB\)"),
    _p("total_gib", r"total_gpu_memory\s+" + _NUM + r" ?GiB"),
    _p("total_gib", r"Memory profiling results:.*\btotal_gpu_memory=" + _NUM + r" ?GiB"),
    _p("total_gib", r"Free memory on device (?:\S+ )?\([\d.]+/" + _NUM + r" GiB\)"),
    _p("total_gib", r"has a total capacity of " + _NUM + r" GiB", priority=1),
    _p("free_gib", r"Free memory on device (?:\S+ )?\(" + _NUM + r"/"),
    _p("free_gib", r"Initial free memory:? " + _NUM + r" GiB", priority=1),
    _p("requested_gib", r"gpu_memory_utilization \([\d.]+\) = " + _NUM + r" ?GiB"),
    _p("requested_gib", r"the current vLLM instance can use\s+" + _NUM + r" ?GiB"),
    _p("requested_gib", r"(?:Desired GPU memory utilization is|less than desired GPU memory utilization) \([\d.]+, " + _NUM + r" GiB\)"),
    _p("requested_gib", r"Requested memory: [\d.]+ \(util\), " + _NUM + r" GiB", priority=1),
    _p("requested_gib", r"requested GPU memory: " + _NUM + r" GiB", priority=1),
    _p("requested_gib", r"fit within the requested " + _NUM + r" GiB", priority=1),
)
_UTIL = (
    re.compile(r"gpu_memory_utilization \(" + _NUM + r"\)"),
    re.compile(r"gpu_memory_utilization(?:=|\s+)" + _NUM),
    re.compile(r"(?:Desired GPU memory utilization is|less than desired GPU memory utilization) \(" + _NUM + ","),
    re.compile(r"Requested memory: " + _NUM + r" \(util\)"),
    re.compile(r"The current --gpu-memory-utilization=" + _NUM),
    re.compile(r"increase --gpu-memory-utilization from " + _NUM + " to"),
)
_PEAK_TORCH = re.compile(r"Memory profiling results:.*\bpeak_torch_memory=" + _NUM + r" ?GiB")
_VERSION = (
    re.compile(r"vLLM (?:API )?server version v?(\d+\.\d+[\w.+-]*)"),
    re.compile(r"Initializing an? (?:V[01] )?LLM engine \(v(\d+\.\d+[\w.+-]*)\)"),
    re.compile(r"Launching vLLM \(v(\d+\.\d+[\w.+-]*)\)"),
    re.compile(r"█.*\bversion\s+v?(\d+\.\d+[\w.+-]*)"),
    re.compile(r"vLLM version:? v?(\d+\.\d+\.\d+[\w.+-]*)"),
)
_GPU_NAME = (
    re.compile(r"Your (.+?) GPU (?:has|does not have) (?:a )?compute capability"),
    re.compile(r"(?:^|\|)\s{0,8}\d{1,2}\s{1,8}((?:NVIDIA|Tesla|Quadro|AMD|Instinct)[^|]{1,80}?)\s{2,}(?:On|Off)\s+\|"),
    re.compile(r"^GPU \d+: ((?:NVIDIA|Tesla|Quadro|AMD)[^(\n]*?)\s*(?:\(UUID.*)?$"),
    re.compile(r"\"device_name\": \"([^\"]+)\""),
)
_NON_DEFAULT = re.compile(r"non-default args: (\{.*\})\s*$")
_NAMESPACE = re.compile(r"\bargs: (Namespace\(.*\))\s*$")
_ENGINE_CONFIG = re.compile(r"Initializing an? (?:V[01] )?LLM engine \(v[^)]*\) with config: (.*)$")
_ENGINE_CONFIG_KEYS = (
    "model", "dtype", "max_seq_len", "tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size",
    "quantization", "enforce_eager", "kv_cache_dtype", "enable_prefix_caching", "load_format", "revision",
)
_PLAN_APPLIED = re.compile(r"Applying persisted startup plan \(fingerprint (\w+)\): kv_cache_memory_bytes=(\d+)")
_PLAN_SAVED = re.compile(r"Saved startup plan to (\S+)")

# Failures, most specific first. The first that matches any line decides.
_FAILURES: tuple[tuple[FailureCode, re.Pattern[str]], ...] = (
    ("max_model_len_too_long", re.compile(r"is larger than the maximum number of tokens that can be stored in KV cache")),
    ("max_model_len_too_long", re.compile(r"To serve at least one request with the model(?:'s|s's|s'|s)? max seq len")),
    ("no_kv_cache_memory", re.compile(r"No available memory for the cache blocks")),
    ("insufficient_free_memory", re.compile(r"Free memory on device .*? on startup is less than")),
)
_OOM = re.compile(r"CUDA out of memory|OutOfMemoryError|CUDA error: out of memory|cudaErrorMemoryAllocation")
_ENGINE_FAILED = re.compile(r"EngineCore failed to start|Engine core initialization failed|Engine process failed to start")
_NEGATIVE_KV = re.compile(r"(?:Available KV cache memory: |reserved for KV Cache is |available_kv_cache_memory\s+)-\d")
_ZERO_BLOCKS = re.compile(r"#? ?(?:GPU|CUDA|cuda) blocks: 0\b")
# Where an OOM happened: the phase the log was in, or the frames of the traceback.
_PHASE_START = (
    ("loading", re.compile(r"Starting to load model|Loading safetensors checkpoint|Loading weights")),
    ("profiling", re.compile(r"Model loading took|Loading model weights took|Memory profiling|profiling/warmup|Profiling CUDA graph memory")),
    ("cuda_graph", re.compile(r"Capturing (?:cudagraphs|CUDA graph|the model for CUDA graphs)")),
    ("serving", re.compile(r"Graph capturing finished|init engine \(profile|Starting vLLM API server|Application startup complete")),
)
_FRAMES = (
    ("cuda_graph", re.compile(r"\b(?:capture_model|_capture_cudagraphs|capture_graph|torch\.cuda\.graph|cuda_graph\.py|cudagraph)")),
    ("profiling", re.compile(r"\b(?:profile_run|determine_available_memory|determine_num_available_blocks|_dummy_run|_dummy_sampler_run)\b")),
    ("loading", re.compile(r"\b(?:load_model|load_weights|model_loader|initialize_model)\b")),
)
_OOM_CODE: dict[str, FailureCode] = {"loading": "cuda_oom_loading", "profiling": "cuda_oom_profiling",
                                     "cuda_graph": "cuda_oom_cuda_graph"}
_RANK_NUMBERS = re.compile(r"(?:TP|PP|DP|EP|rank=|rank)(\d+)")


@dataclass
class _Seen:
    value: object
    priority: int


@dataclass
class _RankState:
    figures: dict[str, _Seen] = field(default_factory=dict)
    first_index: int = 0

    def offer(self, figure: str, value: object, priority: int) -> None:
        seen = self.figures.get(figure)
        if seen is None or priority <= seen.priority:
            self.figures[figure] = _Seen(value, priority)


def _joined(recs: list[Record]) -> list[Record]:
    """Rejoin records a terminal hard-wrapped: a bare line continues the record before it when
    only the two together spell a figure."""
    out: list[Record] = []
    i = 0
    while i < len(recs):
        rec = recs[i]
        structured = _STRUCTURED.search(rec.message)
        if structured and (not _balanced(rec.message) or "with config:" in structured.group(0)):
            # A wrapped args or config line: the continuation lines are bare; rejoin them as written.
            message, j = rec.message, i + 1
            while (j < len(recs) and recs[j].bare and recs[j].message and j - i <= 200
                   and (not _balanced(message) or ("with config:" in structured.group(0)
                                                   and not _SENTENCE.match(recs[j].message)))):
                message += recs[j].text
                j += 1
            out.append(Record(rec.index, rec.rank, rec.level, message, rec.bare, message))
            i = j
            continue
        nxt = recs[i + 1] if i + 1 < len(recs) else None
        if nxt is not None and nxt.bare and nxt.message and _figure_count(nxt.message) == 0:
            alone = _figure_count(rec.message)
            # The wrap may have fallen inside a word or between two words.
            for joined in (rec.message + nxt.message, rec.message + " " + nxt.message):
                if _figure_count(joined) > alone:
                    out.append(Record(rec.index, rec.rank, rec.level, joined, rec.bare, joined))
                    i += 2
                    break
            else:
                out.append(rec)
                i += 1
            continue
        out.append(rec)
        i += 1
    return out


_SENTENCE = re.compile(r"^[A-Z][a-z]+ [a-z]")  # e.g. "Loading safetensors ...": not a wrapped config
_STRUCTURED = re.compile(r"non-default args: \{|\bargs: Namespace\(|LLM engine \(v[^)]*\) with config: ")


def _balanced(message: str) -> bool:
    """Whether the brackets after the structured marker close (quotes aware)."""
    m = _STRUCTURED.search(message)
    if not m:
        return True
    depth, quote = 0, ""
    for ch in message[m.start():]:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
    return depth <= 0 and not quote and not message.rstrip().endswith(",")


# Every figure line has one of these words: lines without any skip the figure patterns.
_ANY_FIGURE = re.compile(r"took|GiB|GB\b|blocks|KV cache|concurrency|max seq len|total_gpu_memory|Free memory|"
                         r"Requested memory|requested GPU memory|total capacity|Memory profiling|LLM engine|"
                         r"non_torch|activation|utilization")
MAX_FIGURE_LINE = 16 << 10  # figure lines are short; a longer line is matched on its head


def _figure_count(message: str) -> int:
    message = message[:MAX_FIGURE_LINE]
    if not _ANY_FIGURE.search(message):
        return 0
    return sum(1 for p in _PATTERNS if p.anchor in message and p.regex.search(message))


_TYPOGRAPHIC_QUOTES = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"'})


def _literal_dict(text: str) -> Optional[dict[str, object]]:
    text = text.translate(_TYPOGRAPHIC_QUOTES)  # logs pasted into forums and documents
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return _partial_dict(text)
    return value if isinstance(value, dict) else None


def _partial_dict(text: str) -> Optional[dict[str, object]]:
    """A dict repr with some non-literal values (e.g. enums): keep the literal entries."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    if not isinstance(tree.body, ast.Dict):
        return None
    out: dict[str, object] = {}
    for key, value in zip(tree.body.keys, tree.body.values):
        try:
            k = ast.literal_eval(key) if key is not None else None
            v = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            continue
        if isinstance(k, str):
            out[k] = v
    return out


def _namespace_dict(text: str) -> Optional[dict[str, object]]:
    """V0 api_server's `args: Namespace(host=None, model='x', ...)`: its literal keyword values."""
    text = re.sub(r"<[^<>]*>", "_unreadable_repr", text)  # e.g. <function serve at 0x...>: dropped below
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    if not isinstance(tree.body, ast.Call):
        return None
    out: dict[str, object] = {}
    for kw in tree.body.keywords:
        if kw.arg is None:
            continue
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, SyntaxError):
            continue
    return out


def _split_top_level(text: str) -> list[str]:
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0 and text[i + 1:i + 2] == " ":
            parts.append(text[start:i])
            start = i + 2
    parts.append(text[start:])
    return parts


def _engine_config(text: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for part in _split_top_level(text):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in _ENGINE_CONFIG_KEYS or key in out:
            continue
        value = value.strip().rstrip(",")
        if value.startswith("torch."):
            value = value[len("torch."):]
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _rank_sort_key(label: str, first_index: int, pod_order: Optional[dict[str, int]] = None) -> tuple:
    pod, sep, base = label.partition(" | ")
    if not sep:
        pod, base = (label, "") if label.startswith("pod/") else ("", label)
    numbers = tuple(int(n) for n in _RANK_NUMBERS.findall(base))
    is_first = base == "" or base.startswith("EngineCore") or (bool(numbers) and not any(numbers))
    return ((pod_order or {}).get(pod, 0), 0 if is_first else 1, numbers, first_index)


def _pod_order(labels: dict[str, "_RankState"]) -> dict[str, int]:
    """Pods in the order their lines first appear (the first pod's ranks come first)."""
    first: dict[str, int] = {}
    for label, state in labels.items():
        pod = label.partition(" | ")[0] if " | " in label else (label if label.startswith("pod/") else "")
        first[pod] = min(first.get(pod, state.first_index), state.first_index)
    return {pod: i for i, pod in enumerate(sorted(first, key=first.__getitem__))}


def _engine(recs: list[Record], text: str, version: Optional[str]) -> Optional[str]:
    if version and re.match(r"\d+\.\d+", version):
        major, minor = (int(x) for x in re.match(r"(\d+)\.(\d+)", version).groups())  # type: ignore[union-attr]
        if (major, minor) >= (0, 11):  # V0 was removed in 0.11: every later release is V1
            return "V1"
    if "Initializing a V1 LLM engine" in text:
        return "V1"
    if "Initializing a V0 LLM engine" in text or "Initializing an LLM engine" in text:
        return "V0"
    v1 = sum(bool(re.search(p, text)) for p in (
        r"EngineCore", r"gpu_worker\.py", r"kv_cache_utils\.py", r"gpu_model_runner\.py", r"\(Worker_(?:TP|PP|DP)",
        r"\(VllmWorker (?:TP|rank=)", r"GPU KV cache size", r"Available KV cache memory", r"multiproc_executor\.py"))
    v0 = sum(bool(re.search(p, text)) for p in (
        r"VllmWorkerProcess", r"executor_base\.py", r"distributed_gpu_executor\.py", r"(?<![\w_])worker\.py:\d+",
        r"the rest of the memory reserved for KV Cache", r"Memory profiling results", r"multiproc_worker_utils\.py",
        r"# (?:GPU|CUDA|cuda) blocks: \d+, # CPU blocks"))
    if v1 > v0:
        return "V1"
    if v0 > v1:
        return "V0"
    return None


def _oom_phase(recs: list[Record], at: int) -> Optional[str]:
    window = recs[max(0, at - 80): at + 40]
    for phase, pattern in _FRAMES:
        if any(pattern.search(r.message) for r in window):
            return phase
    phase: Optional[str] = None
    for rec in recs[:at]:
        for name, pattern in _PHASE_START:
            if pattern.search(rec.message):
                phase = name
    return phase if phase in _OOM_CODE else None


_ANY_FAILURE = re.compile(r"max seq len|No available memory|Free memory on device|out of memory|OutOfMemory|"
                          r"cudaErrorMemoryAllocation|KV Cache is -|KV cache memory: -|_kv_cache_memory\s+-|"
                          r"blocks: 0\b|failed to start|initialization failed")


def _failure(recs: list[Record]) -> Optional[StartupFailure]:
    candidates = [i for i, r in enumerate(recs) if _ANY_FAILURE.search(r.message[:MAX_FIGURE_LINE])]
    if not candidates:
        return None
    for code, pattern in _FAILURES:
        for i in candidates:
            if pattern.search(recs[i].message):
                return StartupFailure(code=code, line=recs[i].message)
    for i in candidates:
        if _OOM.search(recs[i].message):
            phase = _oom_phase(recs, i)
            return StartupFailure(code=_OOM_CODE.get(phase or "", "cuda_oom"), line=recs[i].message)
    for i in candidates:
        if _NEGATIVE_KV.search(recs[i].message) or _ZERO_BLOCKS.search(recs[i].message):
            return StartupFailure(code="no_kv_cache_memory", line=recs[i].message)
    for i in candidates:
        if _ENGINE_FAILED.search(recs[i].message):
            return StartupFailure(code="engine_failed", line=recs[i].message)
    return None


def read_startup_log(text: str) -> StartupLog:
    """Read a vLLM startup log as `kubectl logs` (or a post, or a file) shows it."""
    recs = _joined(records(text))
    ranks: dict[str, _RankState] = {}
    engine_wide: dict[str, _RankState] = {}  # by process: with data parallelism each engine prints its own
    notes: list[str] = []
    version = gpu_name = None
    util: Optional[float] = None
    non_default: Optional[dict[str, object]] = None
    non_default_line: Optional[str] = None
    engine_config: dict[str, object] = {}
    plan_events: list[StartupPlanEvent] = []
    peak_torch: dict[str, float] = {}

    for rec in recs:
        msg = rec.message
        if not msg:
            continue
        state = ranks.get(rec.rank)
        head = msg[:MAX_FIGURE_LINE]
        for pattern in _PATTERNS if _ANY_FIGURE.search(head) else ():
            if pattern.anchor not in head:
                continue
            m = pattern.regex.search(head)
            if not m:
                continue
            value = pattern.convert(m.group(pattern.group))
            if pattern.figure in PER_RANK_FIGURES:
                if state is None:
                    state = ranks[rec.rank] = _RankState(first_index=rec.index)
                state.offer(pattern.figure, value, pattern.priority)
            else:
                engine_wide.setdefault(rec.rank, _RankState(first_index=rec.index)).offer(
                    pattern.figure, value, pattern.priority)
        # The patterns below are tried only on lines holding their key word (a log is mostly other lines).
        if "peak_torch_memory" in head:
            m = _PEAK_TORCH.search(head)
            if m:
                peak_torch[rec.rank] = float(m.group(1))
        if "utilization" in head:
            for regex in _UTIL:
                m = regex.search(head)
                if m:
                    util = float(m.group(1))
                    break
        if version is None and ("version" in head or "engine (v" in head or "vLLM (v" in head):
            version = next((m.group(1) for r in _VERSION if (m := r.search(head))), None)
        if gpu_name is None and ("GPU" in head or "NVIDIA" in head or "Tesla" in head or "device_name" in head
                                 or "AMD" in head):
            gpu_name = next((m.group(1).strip() for r in _GPU_NAME if (m := r.search(head))), None)
        m = _NON_DEFAULT.search(msg) if "non-default args" in msg else None
        if m:
            non_default_line = msg
            non_default = _literal_dict(m.group(1))
        elif non_default is None and "Namespace(" in msg:
            m = _NAMESPACE.search(msg)
            if m:
                non_default_line = msg
                non_default = _namespace_dict(m.group(1))
        if not engine_config and "with config:" in msg:
            m = _ENGINE_CONFIG.search(msg)
            if m:
                engine_config = _engine_config(m.group(1))
        if "startup plan" not in head:
            continue
        m = _PLAN_APPLIED.search(msg)
        if m:
            plan_events.append(StartupPlanEvent(action="applied", fingerprint=m.group(1), kv_cache_memory_bytes=int(m.group(2))))
        m = _PLAN_SAVED.search(msg)
        if m:
            path = m.group(1)
            fp = re.search(r"startup_plan_(\w+)\.json", path)
            plan_events.append(StartupPlanEvent(action="saved", path=path, fingerprint=fp.group(1) if fp else None))

    # 0.6.2-0.6.4 print the torch peak including the weights: activation is the difference.
    for label, peak in peak_torch.items():
        state = ranks.get(label)
        if state is None:
            continue
        weights = state.figures.get("weights_gib") or (ranks.get("") and ranks[""].figures.get("weights_gib"))
        if weights is not None and "activation_gib" not in state.figures:
            state.offer("activation_gib", round(peak - float(weights.value), 2), 5)
            notes.append(f"activation = peak_torch_memory {peak:.2f} - weights {float(weights.value):.2f} GiB")
    # 0.28+ print weights and "total consumed" (weights + non-torch): non-torch is the difference.
    for state in ranks.values():
        both = state.figures.get("weights_and_non_torch_gib"), state.figures.get("weights_gib")
        if all(both) and "non_torch_gib" not in state.figures:
            state.offer("non_torch_gib", round(float(both[0].value) - float(both[1].value), 2), 5)  # type: ignore[union-attr]
            notes.append("non-torch = total consumed - weights")

    per_rank = {label: _figures(state) for label, state in ranks.items()}
    pods = _pod_order({**engine_wide, **ranks})
    ordered = sorted(ranks, key=lambda label: _rank_sort_key(label, ranks[label].first_index, pods))
    merged: dict[str, object] = {}
    for figure in PER_RANK_FIGURES:
        for label in ordered:
            value = getattr(per_rank[label], figure)
            if value is not None:
                merged[figure] = value
                if figure == "cuda_graph_gib":
                    merged["cuda_graph_source"] = per_rank[label].cuda_graph_source
                break
    for label in sorted(engine_wide, key=lambda lb: _rank_sort_key(lb, engine_wide[lb].first_index, pods), reverse=True):
        for figure, seen in engine_wide[label].figures.items():
            merged[figure] = seen.value  # the first engine in rank order (DP0) is written last and wins
    if merged.get("cuda_graph_gib") is None and merged.get("cuda_graph_estimate_gib") is not None:
        merged["cuda_graph_gib"] = merged["cuda_graph_estimate_gib"]
        merged["cuda_graph_source"] = "estimated"
    if "max_model_len" not in merged:
        mml = (non_default or {}).get("max_model_len") or engine_config.get("max_seq_len")
        if isinstance(mml, int):
            merged["max_model_len"] = mml
    if util is None and isinstance((non_default or {}).get("gpu_memory_utilization"), (int, float)):
        util = float(non_default["gpu_memory_utilization"])  # type: ignore[index]
    measured = MemoryFigures(**merged)
    rank_list = tuple(RankFigures(rank=label, figures=per_rank[label]) for label in ordered) if len(ranks) > 1 else ()
    return StartupLog(
        vllm_version=version,
        engine=_engine(recs, text, version),  # type: ignore[arg-type]
        gpu_name=gpu_name,
        gpu_memory_utilization=util,
        measured=measured,
        ranks=rank_list,
        failure=_failure(recs),
        non_default_args=non_default,
        non_default_args_line=non_default_line,
        engine_config=engine_config,
        startup_plan=tuple(plan_events),
        notes=tuple(dict.fromkeys(notes)),
    )


def _figures(state: _RankState) -> MemoryFigures:
    values: dict[str, object] = {figure: seen.value for figure, seen in state.figures.items()}
    if values.get("cuda_graph_gib") is not None:
        values["cuda_graph_source"] = "captured"
    elif values.get("cuda_graph_estimate_gib") is not None:
        values["cuda_graph_gib"] = values["cuda_graph_estimate_gib"]
        values["cuda_graph_source"] = "estimated"
    return MemoryFigures(**values)
