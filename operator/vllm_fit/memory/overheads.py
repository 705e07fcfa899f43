"""Activation, non-torch and CUDA-graph memory derived from the launch, per vLLM version.

What vLLM logs as "torch peak memory increase" is the peak of its profiling run
(`GPUModelRunner.profile_run`): the multimodal encoder on a dummy batch, then
`_dummy_run(max_num_batched_tokens)`, then `_dummy_sampler_run` on the last token of each of
`min(max_num_seqs, max_num_batched_tokens)` dummy requests. The forward pass frees each
layer's transients before the next layer runs, so its peak is one decoder layer's; the sampler
holds several [rows, vocab] tensors at once. The two do not overlap, so the peak is the larger
of the two plus what stays allocated across them (the [tokens, hidden] output and, for fused
MoE, the persistent workspace).

Each term says how it was obtained:
- computed: from the model's config and vLLM's code (shapes, capture sizes, margins);
- fitted: a coefficient the code cannot give (how many bytes torch's sort or the Triton
  top-k/top-p kernel keep per row x vocab element, bytes per captured graph), fitted on the
  measurements named in profiles/vllm-runtime.yaml `fitted:` and never on the logs
  profiles/measurements/VALIDATION.md checks against;
- measured: a measurement of this model (or of the band) at exactly these settings.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from .geometry import ModelGeometry
from ..gpu_catalog import GpuSpec
from ..units import GIB, MIB, gib
from .measured import MeasuredProfile, find_measured
from .runtime import Band, RuntimeProfiles
from .settings import Settings

TermKind = Literal["computed", "fitted", "measured"]


class Term(BaseModel):
    """One overhead in GiB per GPU, how it was obtained, and its parts."""

    model_config = ConfigDict(frozen=True)
    gib: float
    kind: TermKind
    derivation: str  # one line with the numbers
    parts: dict[str, float] = Field(default_factory=dict)  # GiB
    source: str = ""


class Overheads(BaseModel):
    """What one rank needs on top of weights and KV cache."""

    model_config = ConfigDict(frozen=True)
    band: str
    activation: Term
    non_torch: Term
    cuda_graph: Term
    # Whether vLLM takes the CUDA-graph term out of the KV budget (0.20+ estimate, 0.34 measured
    # after capture) or captures the graphs later in the (1 - util) headroom (before 0.20).
    cuda_graph_subtracted: bool
    # 0.34 extensible KV cache: the margin kept beside the transient peak (None otherwise).
    extensible_margin: Optional[Term] = None
    notes: tuple[str, ...] = ()

    # The names the budget and the verdict read.
    @property
    def activation_gib(self) -> float:
        return self.activation.gib

    @property
    def non_torch_gib(self) -> float:
        return self.non_torch.gib

    @property
    def cuda_graph_gib(self) -> float:
        return self.cuda_graph.gib

    def derivation(self) -> dict[str, object]:
        out: dict[str, object] = {
            name: term.model_dump(mode="json")
            for name, term in (("activation", self.activation), ("non_torch", self.non_torch),
                               ("cuda_graph", self.cuda_graph))
        }
        if self.extensible_margin is not None:
            out["extensible_margin"] = self.extensible_margin.model_dump(mode="json")
        out["cuda_graph_subtracted"] = self.cuda_graph_subtracted
        return out


def _r(x: float) -> float:
    return round(x, 4)


# ---------------------------------------------------------------- activation

def forward_layer_peak_bytes(g: ModelGeometry, tokens: int, tp: int, act_bytes: int, *,
                             expert_parallel: bool = False, dp: int = 1, hidden_copies: int = 2) -> tuple[int, int]:
    """The transient peak of one decoder layer at `tokens` tokens, and the part of it that fused
    MoE keeps allocated across the run (its workspace).

    Live at the MLP step of a decoder layer (LlamaDecoderLayer and the models built like it):
    the residual and the normed input [T, H], gate_up [T, 2I/tp] and the activation output
    [T, I/tp]. At the attention step: qkv [T, (q + 2 kv) x head_dim] and the attention output.
    Fused MoE (fused_moe.py) holds intermediate caches of [T x top_k, 2N], [T x top_k, N] and
    [T x top_k, H] with N = expert width / TP, plus fp32 router logits [T, E].
    Run eagerly (the V0 engine, --enforce-eager) a third [T, H] copy is alive at that step, which
    torch.compile's fused graph (V1's default) does not keep; fitted on the V0 RTX 3090 logs of
    tests/fixtures/vllm_logs (use: fit), whose activation grows by exactly (3 H + 3 I) x 2 bytes a token.
    """
    h = g.hidden_size
    q_heads = max(1, g.num_attention_heads // tp)
    if g.mla:
        kv_width = g.mla.kv_lora_rank + g.mla.qk_rope_head_dim
        q_width = q_heads * (g.mla.qk_nope_head_dim + g.mla.qk_rope_head_dim)
        attn = q_width + kv_width + q_heads * (g.mla.qk_nope_head_dim + g.mla.v_head_dim) + q_heads * g.mla.v_head_dim
    else:
        kv_heads = max(1, g.num_kv_heads // tp)
        attn = (2 * q_heads + 2 * kv_heads) * g.head_dim
    dense = 3 * g.intermediate_size // tp
    workspace = 0
    mlp = dense
    if g.moe:
        m = g.moe
        shard = m.expert_intermediate_size if expert_parallel else max(1, m.expert_intermediate_size // tp)
        topk = m.experts_per_token
        moe_caches = topk * (2 * shard + shard + h)
        router = 2 * m.num_experts  # fp32 logits, in units of act_bytes=2
        shared = 3 * m.shared_expert_intermediate_size * max(1, m.num_shared_experts) // tp if m.shared_expert_intermediate_size else 0
        mlp = moe_caches + router + shared
        quant = g.quant.method if g.quant else ""
        if quant != "mxfp4":  # MXFP4 experts run triton_kernels' matmul_ogs, not the modular workspace
            workspace = tokens * topk * (max(2 * shard, h) + shard) * act_bytes
        if len(m.moe_layers) < g.num_layers:
            mlp = max(mlp, dense)
    peak = tokens * (hidden_copies * h + max(attn, mlp)) * act_bytes
    return peak, workspace


_POOLING_SUFFIXES = ("ForSequenceClassification", "ForTokenClassification", "ForRewardModel", "ForEmbedding",
                     "EmbeddingModel", "Model")


def is_pooling(g: ModelGeometry) -> bool:
    """Architectures vLLM runs with the pooling runner (no lm_head, no sampler): BertModel,
    Qwen2ForRewardModel, *ForSequenceClassification, ..."""
    return g.architecture.endswith(_POOLING_SUFFIXES) and not g.architecture.endswith("ForCausalLM")


def _flashinfer_capable(gpu: GpuSpec) -> bool:
    if gpu.vendor != "nvidia":
        return False
    cc = gpu.compute_capability
    if cc is None:
        return True  # a GPU given only by its size: taken as a current NVIDIA part
    try:
        major, _, minor = cc.partition(".")
        return (7, 5) <= (int(major), int(minor or 0)) <= (12, 1)
    except ValueError:
        return False


def _sampler_path(s: Settings, rows: int, gpu: GpuSpec) -> str:
    """Which top-k/top-p implementation the dummy sampler run takes (it sets top_k and top_p on
    every row and passes no generators, so FlashInfer's kernel runs wherever it is selected)."""
    b = s.behaviour
    flashinfer = b.flashinfer_sampler_default if s.flashinfer_sampler_env is None else s.flashinfer_sampler_env
    if flashinfer and _flashinfer_capable(gpu):
        return "flashinfer"
    if b.sampler_topk_topp == "triton":
        return "triton"
    if b.sampler_topk_topp == "triton_from_8_rows":
        return "triton" if rows >= 8 else "sort"
    return "sort"


def _matching_measurement(band: Band, model_id: Optional[str], s: Settings) -> Optional[tuple[float, str]]:
    """A measurement of this model taken at exactly this dummy batch (and PP=1)."""
    point = band.activation_measured_at
    if (s.max_num_batched_tokens, s.max_num_seqs) != (point.max_num_batched_tokens, point.max_num_seqs):
        return None
    if s.pipeline_parallel_size != 1:
        return None
    override = band.models.get(model_id or "")
    if override is not None and override.activation_gib is not None:
        return override.activation_gib, override.source
    return None


def _measured_architecture(profiles: RuntimeProfiles, architecture: str) -> bool:
    """Whether any band holds a measurement of this architecture (its family defaults aside)."""
    known = profiles.__dict__.get("_measured_architectures")
    if known is None:
        known = profiles.__dict__["_measured_architectures"] = frozenset(
            name for band in profiles.bands for name in band.activation_gib if not name.startswith("default_"))
    return architecture in known


def activation_term(g: ModelGeometry, s: Settings, gpu: GpuSpec, profiles: RuntimeProfiles, band: Band,
                    model_id: Optional[str]) -> tuple[Term, list[str]]:
    notes: list[str] = []
    tokens, seqs = s.max_num_batched_tokens, s.max_num_seqs
    rows = min(seqs, tokens)
    tp = s.tensor_parallel_size
    act = s.dtype_bytes if s.dtype_bytes in (2, 4) else 2
    fitted = profiles.fitted
    # The sampler runs on the last PP stage only; every stage is charged with it, which can only
    # make the deciding stage's KV cache smaller than vLLM's (measured: PP2 rank 0 1.10 GiB, the
    # TP1 run 1.89 GiB, measurements/vllm-0.19-h100-llm-d.md).
    last_stage = True
    if s.pipeline_parallel_size > 1:
        notes.append("activation: the sampler warm-up runs on the last pipeline stage only; charged to every stage "
                     "(conservative for the others)")
    eager = s.v0_engine or s.enforce_eager
    forward, workspace = forward_layer_peak_bytes(g, tokens, tp, act, expert_parallel=s.enable_expert_parallel,
                                                  dp=s.data_parallel_size, hidden_copies=3 if eager else 2)
    if s.v0_engine:
        # V0's profile_run samples the last token of each of max_num_seqs dummy sequences with
        # its own sampler (top-k/top-p by torch sort).
        rows = seqs
        notes.append("V0 engine: profiled with max_num_seqs sequences filling max_num_batched_tokens, eager forward")
    path = "sort" if s.v0_engine else _sampler_path(s, rows, gpu)
    coeff = fitted.sampler_bytes_per_row_vocab[path] if fitted else None
    if is_pooling(g):
        # profile_run calls _dummy_pooler_run instead of the sampler: no [rows, vocab] logits.
        coeff = None
        last_stage = False
        notes.append(f"{g.architecture} is a pooling model: vLLM profiles the pooler, not the sampler")
    vocab = g.vocab_size
    sampler = rows * vocab * coeff.value if (coeff and last_stage) else 0.0
    residue = tokens * g.hidden_size * act  # the [T, H] output kept while the sampler runs
    computed = max(forward, workspace + residue + sampler)
    parts = {"forward": _r(gib(forward)), "sampler": _r(gib(sampler)), "hidden_states": _r(gib(residue)),
             "moe_workspace": _r(gib(workspace))}
    limit_mm = s.limit_mm_zero
    if g.is_multimodal and not limit_mm:
        mm = band.activation_gib.get(g.architecture)
        # Only on the torch-sort path (0.11-0.16): there the seed's one multimodal row (Mistral3,
        # 2.12 GiB) sits far below the text-only computation (rows x vocab x 38 B); on the later
        # paths the computation matches measured multimodal runs and is used instead.
        if mm is not None and path == "sort" and (s.max_num_batched_tokens, s.max_num_seqs) == (
                band.activation_measured_at.max_num_batched_tokens, band.activation_measured_at.max_num_seqs):
            # The encoder's dummy batch runs first (profile_run); the family's measured peak at
            # these settings covers it, which the text-only computation does not.
            notes.append(f"activation: {g.architecture} measured at these settings in band {band.name}")
            return Term(gib=mm.value, kind="measured", source=mm.source, parts=parts,
                        derivation=f"activation {mm.value:.2f} GiB measured for {g.architecture} at "
                                   f"{tokens:,} tokens / {seqs:,} sequences (encoder profiling included)"), notes
        notes.append("multimodal encoder profiling is not modelled beyond the text model's peak "
                     "(pass --limit-mm-per-prompt with 0 items for text-only use)")
    measured = _matching_measurement(band, model_id, s)
    if measured is not None:
        value, source = measured
        return Term(gib=value, kind="measured", source=source, parts=parts,
                    derivation=f"activation {value:.2f} GiB measured for this model at {tokens:,} batched tokens / "
                               f"{seqs:,} sequences (computed {gib(computed):.2f})"), notes
    if not _measured_architecture(profiles, g.architecture):
        family = "mixture-of-experts" if g.moe else ("multimodal" if g.is_multimodal else "dense decoder")
        notes.append(f"{g.architecture} is not an architecture vllm-fit has measured: its activation is the "
                     f"{family} family default (one standard decoder layer and the sampler, from config.json shapes)")
    fwd_text = f"{tokens:,}-token forward {gib(forward):.2f}"
    smp_text = (f"sampler {rows:,} x {vocab:,} vocab x {coeff.value:g} B ({path}) {gib(sampler):.2f}"
                if coeff else ("pooler (no sampler)" if is_pooling(g) else "sampler not modelled"))
    if computed == forward:
        text = f"activation {gib(computed):.2f} GiB = {fwd_text} (larger than {smp_text})"
    else:
        extra = f" + hidden states {gib(residue):.2f}"
        if workspace:
            extra += f" + MoE workspace {gib(workspace):.2f}"
        text = f"activation {gib(computed):.2f} GiB = {smp_text}{extra} (larger than {fwd_text})"
    source = coeff.source if coeff else "computed from config.json shapes"
    kind: TermKind = "fitted" if coeff and computed != forward else "computed"
    if kind == "computed":
        source = "computed from config.json shapes (one decoder layer's transients at the batched tokens)"
    return Term(gib=_r(gib(computed)), kind=kind, source=source, parts=parts,
                derivation=text), notes


# ---------------------------------------------------------------- non-torch

def non_torch_term(s: Settings, band: Band, model_id: Optional[str]) -> Term:
    """cuBLAS/cuDNN workspaces and kernel images at TP=1; NCCL communicators and custom
    all-reduce buffers on top of that when a TP group spans GPUs. Measured per band."""
    tp, pp, dp = s.tensor_parallel_size, s.pipeline_parallel_size, s.data_parallel_size
    base = band.non_torch_gib.tp1
    override = band.models.get(model_id or "")
    if override and tp in override.non_torch_gib and pp == 1:
        value = override.non_torch_gib[tp]
        return Term(gib=value, kind="measured", source=override.source, parts={"total": value},
                    derivation=f"non-torch {value:.2f} GiB measured for this model at TP={tp}")
    parts = {"workspaces": base.value}
    source = base.source
    if tp >= 2:
        comm = round(band.non_torch_gib.tp_multi.value - base.value, 4)
        parts["tp_communication"] = comm
        text = (f"non-torch {band.non_torch_gib.tp_multi.value:.2f} GiB = workspaces {base.value:.2f} + "
                f"NCCL/custom all-reduce for TP={tp} {comm:.2f}")
        value = band.non_torch_gib.tp_multi.value
        source = band.non_torch_gib.tp_multi.source
    elif pp >= 2 and band.non_torch_gib.pp_multi is not None:
        value = band.non_torch_gib.pp_multi.value
        parts = {"pp_stage": value}
        text = f"non-torch {value:.2f} GiB measured for a PP={pp} stage (no TP all-reduce)"
        source = band.non_torch_gib.pp_multi.source
    else:
        value = base.value
        text = f"non-torch {value:.2f} GiB = cuBLAS/kernel workspaces at TP=1"
    if dp > 1:
        text += f"; DP={dp} ranks are separate engines, each with this"
    if s.distributed_executor_backend == "ray" and tp * pp > 1:
        text += "; Ray executor (no separate measurement: taken as mp)"
    return Term(gib=value, kind="measured", source=source, parts=parts, derivation=text)


# ---------------------------------------------------------------- CUDA graphs

def capture_sizes(s: Settings) -> list[int]:
    """vLLM's default cudagraph_capture_sizes (VllmConfig._set_cudagraph_sizes, 0.11+):
    [1, 2, 4] + range(8, 256, 8) + range(256, max + 1, 16) with
    max = min(max_num_seqs x 2, 512, max_num_batched_tokens)."""
    top = min(s.max_num_seqs * 2, 512, s.max_num_batched_tokens)
    sizes = [i for i in (1, 2, 4) if i <= top]
    if top >= 8:
        sizes += list(range(8, min(top + 1, 256), 8))
    if top >= 256:
        sizes += list(range(256, top + 1, 16))
    return sizes


def cuda_graph_term(g: ModelGeometry, s: Settings, gpu: GpuSpec, profiles: RuntimeProfiles, band: Band,
                    model_id: Optional[str]) -> tuple[Term, bool]:
    b = s.behaviour
    if s.enforce_eager:
        return Term(gib=0.0, kind="computed", derivation="CUDA graphs 0 GiB: --enforce-eager captures none"), False
    if not b.subtracts_cuda_graph_estimate:
        override = band.models.get(model_id or "")
        if override and s.tensor_parallel_size in override.cuda_graph_gib:
            value = override.cuda_graph_gib[s.tensor_parallel_size]
            if value < 0:
                # vLLM logs the change in used memory across capture; a negative one means capture freed
                # more (warm-up leftovers) than the graphs took: no memory is needed for them.
                return Term(gib=0.0, kind="measured", source=override.source, parts={"logged_change": value},
                            derivation=f"CUDA graphs 0 GiB: capture for this model measured a net {-value:.2f} GiB "
                                       f"freed (vLLM logs {value:.2f}), so they need nothing beyond the headroom"), False
            return Term(gib=value, kind="measured", source=override.source,
                        derivation=f"CUDA graphs {value:.2f} GiB measured for this model (captured after the KV "
                                   f"cache, in the headroom)"), False
        value = band.cuda_graph_gib.value
        return Term(gib=value, kind="measured", source=band.cuda_graph_gib.source,
                    derivation=f"CUDA graphs ~{value:.2f} GiB (band measurement; captured after the KV cache, "
                               f"must fit the headroom)"), False
    est, parts, text = cuda_graph_estimate(g, s, profiles)
    if b.extensible_kv_cache and s.extensible_kv_cache:
        text += "; the extensible KV cache measures the capture itself after warm-up"
    return Term(gib=_r(gib(est)), kind="fitted", parts=parts, derivation=text,
                source=profiles.fitted.cuda_graph.source if profiles.fitted else ""), True


def cuda_graph_estimate(g: ModelGeometry, s: Settings, profiles: RuntimeProfiles) -> tuple[float, dict[str, float], str]:
    """vLLM's estimate (GPUModelRunner.profile_cudagraph_memory, 0.18+): per mode, capture the two
    largest sizes and extrapolate, then total = max over modes of the first capture + sum over
    modes of (graphs - 1) x the second capture. FULL (uniform decode, sizes <= max_num_seqs) and
    PIECEWISE (every size) are both captured by default. What one capture takes is not in the
    code: the first-capture and per-graph sizes are fitted (profiles/vllm-runtime.yaml)."""
    sizes = capture_sizes(s)
    full = [x for x in sizes if x <= s.max_num_seqs]
    fitted = profiles.fitted
    if not sizes or fitted is None:
        return 0.0, {}, "CUDA graphs 0 GiB: no capture sizes"
    c = fitted.cuda_graph
    tp = s.tensor_parallel_size
    layers = -(-g.num_layers // s.pipeline_parallel_size)
    act = s.dtype_bytes if s.dtype_bytes in (2, 4) else 2
    # FULL: the first capture runs attention over max_num_batched_tokens of dummy KV
    # (profile_seq_lens), whose split-KV accumulator is fp32 [splits, tokens, q heads x head dim].
    q_heads = max(1, g.num_attention_heads // tp)
    q_width = q_heads * ((g.mla.kv_lora_rank + g.mla.qk_rope_head_dim) if g.mla else g.head_dim)
    first_full = full[-1] * q_width * 4 * c.full_first_capture_splits if full else 0.0
    # PIECEWISE: the graph pool holds one layer's transients at the largest size, plus a base.
    forward_largest, _ = forward_layer_peak_bytes(g, sizes[-1], tp, act, expert_parallel=s.enable_expert_parallel)
    first_pw = forward_largest + c.piecewise_first_capture_base_mib * MIB
    per_graph = max(c.per_graph_per_layer_mib * MIB * layers, MIB)  # vLLM counts at least 1 MiB a graph
    extra = (len(full) - 1 if full else 0) + (len(sizes) - 1)
    est = max(first_full, first_pw) + per_graph * extra
    parts = {"first_capture": _r(gib(max(first_full, first_pw))), "per_graph_mib": round(per_graph / MIB, 3),
             "graphs": float(len(sizes) + len(full))}
    text = (f"CUDA graphs {gib(est):.2f} GiB = first capture {max(first_full, first_pw) / MIB:.0f} MiB + "
            f"{extra} more graphs (FULL {len(full)}, PIECEWISE {len(sizes)}, largest {sizes[-1]}) x "
            f"{per_graph / MIB:.1f} MiB ({layers} layers)")
    return est, parts, text


# ---------------------------------------------------------------- 0.34 extensible KV cache

# vllm/v1/worker/extensible_kv_cache.py (0.34.0): the sizing margin is
# max(floor, fraction x transient peak), floor 1 GiB on CUDA and 3 GiB on ROCm.
EXTENSIBLE_MARGIN_FLOOR_BYTES = {"nvidia": 1 << 30, "amd": 3 << 30}
EXTENSIBLE_MARGIN_FRACTION = 0.75


def extensible_margin_term(s: Settings, gpu: GpuSpec, activation: Term) -> Term:
    floor = EXTENSIBLE_MARGIN_FLOOR_BYTES.get(gpu.vendor, 1 << 30)
    transient = activation.gib * GIB
    margin = max(floor, int(transient * EXTENSIBLE_MARGIN_FRACTION))
    return Term(gib=_r(gib(margin)), kind="computed",
                parts={"floor": gib(floor), "fraction_of_transient": _r(gib(transient * EXTENSIBLE_MARGIN_FRACTION))},
                source="vllm/v1/worker/extensible_kv_cache.py KV_CACHE_MARGIN_FLOOR_BYTES, KV_CACHE_MARGIN_FRACTION",
                derivation=f"extensible KV margin {gib(margin):.2f} GiB = max({gib(floor):.0f} GiB floor, "
                           f"0.75 x {activation.gib:.2f} transient), kept free beside the transient peak")


def compute_overheads(g: ModelGeometry, s: Settings, gpu: GpuSpec, profiles: RuntimeProfiles,
                      model_id: Optional[str]) -> Overheads:
    band = profiles.band_for(s.vllm_version)
    activation, notes = activation_term(g, s, gpu, profiles, band, model_id)
    non_torch = non_torch_term(s, band, model_id)
    graphs, subtracted = cuda_graph_term(g, s, gpu, profiles, band, model_id)
    measured = find_measured(profiles.measured, model_id, s, gpu)
    if measured is not None:
        activation, non_torch, graphs = _measured_terms(measured, activation, non_torch, graphs)
        notes.append(f"overheads measured on this launch: {measured.source}")
    margin = extensible_margin_term(s, gpu, activation) if s.extensible_kv_cache else None
    return Overheads(band=band.name, activation=activation, non_torch=non_torch, cuda_graph=graphs,
                     cuda_graph_subtracted=subtracted, extensible_margin=margin, notes=tuple(notes))


def _measured_terms(m: MeasuredProfile, activation: Term, non_torch: Term, graphs: Term) -> tuple[Term, Term, Term]:
    """A launch with exactly this key was measured: its figures replace the derived ones
    (a figure the log did not print keeps the derivation)."""
    def term(value: Optional[float], derived: Term, name: str) -> Term:
        if value is None:
            return derived
        if value < 0:  # a logged change across CUDA-graph capture that freed memory: nothing needed
            return Term(gib=0.0, kind="measured", source=m.source, parts={"logged_change": value},
                        derivation=f"{name} 0 GiB: measured on this launch as a net {-value:.2f} GiB freed")
        return Term(gib=value, kind="measured", source=m.source, parts={"total": value},
                    derivation=f"{name} {value:.2f} GiB measured on this launch (derived {derived.gib:.2f})")
    graph_value = 0.0 if m.key.enforce_eager else m.cuda_graph_gib
    return (term(m.activation_gib, activation, "activation"), term(m.non_torch_gib, non_torch, "non-torch"),
            term(graph_value, graphs, "CUDA graphs" + (" (vLLM's estimate)" if m.cuda_graph_estimated else "")))
