"""Replay the transient allocations of vLLM 0.11's profiling run in plain PyTorch and record their peaks.

What it replays (read from vLLM v0.11.0, `vllm/v1/worker/gpu_model_runner.py` and `vllm/v1/sample/`):

* the **dummy sampler run** (`_dummy_sampler_run`): `compute_logits` over R rows (the last token of each of
  `min(max_num_seqs, max_num_batched_tokens)` dummy requests), then `Sampler.forward` with temperature 0.5,
  top_p 0.9, top_k = vocab - 1, `no_penalties=True` and no log-probs. On CUDA with FlashInfer installed the
  top-k/top-p step is FlashInfer's sort-free kernel; plain PyTorch cannot run it, so this replays the
  PyTorch-native path (`forward_native` -> `apply_top_k_top_p` -> `random_sample`), which is what vLLM runs when
  FlashInfer is absent or `VLLM_USE_FLASHINFER_SAMPLER=0`.
* **one decoder layer's forward** at T tokens: RMSNorm, fused QKV projection, rotary embedding, attention
  output (a flash-attention kernel keeps no [T, T] score matrix, so only its output and its fp32 log-sum-exp
  are allocated), output projection, residual, RMSNorm, then either the dense gate/up projection, SiLU-and-mul
  and down projection, or the MoE router, top-k routing and the fused-MoE workspace exactly as
  `fused_experts_impl` sizes it (`cache13` of M*top_k*max(N, K) and `intermediate_cache2` of M*top_k x N/2,
  M = min(T, VLLM_FUSED_MOE_CHUNK_SIZE=32768)).

For each case it records the peak of allocated bytes above the baseline (inputs and weights already resident):

* on a GPU: `torch.cuda.max_memory_allocated()` after `reset_peak_memory_stats()`, which includes kernel
  workspaces (cub's sort buffers, cuBLAS) and the caching allocator's 512-byte rounding;
* on `meta` (a dry run on any machine): the peak of live tensor storage tracked op by op through a
  `TorchDispatchMode`. It sees every tensor the op sequence creates, with exact shapes and dtypes, but not the
  temporary buffers that CUDA kernels allocate internally, so it is a lower bound of the GPU figure.

    # dry run (no GPU): shapes and tensor-level peaks
    python bench/transients.py --device meta --out profiles/measurements/transients-meta.md
    # the measurement (one H100/H200)
    python bench/transients.py --device cuda --out profiles/measurements/transients-h100.md

The output is a Markdown table plus a YAML block with the GPU, driver, torch version and date.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "profiles" / "models"
GIB = 1024 ** 3

ROWS = (1, 16, 256, 1024)
VOCABS = (32_000, 128_256, 151_936, 200_064)
TOKENS = (2048, 8192, 16384)
# four bundled models: two dense widths, one dense wide model and one MoE
LAYER_MODELS = ("Qwen/Qwen3-0.6B", "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen3-32B", "Qwen/Qwen3-30B-A3B")
FUSED_MOE_CHUNK_SIZE = 32768  # vLLM 0.11 envs.VLLM_FUSED_MOE_CHUNK_SIZE default
SAMPLER_HIDDEN = 4096  # the hidden size only sizes the [R, H] input, which is resident before the sampler runs


DRY_RUN_NOTE = [
    "**A dry run, not a GPU measurement**: on PyTorch's `meta` device every tensor of the replayed op sequences",
    "is created with its exact shape and dtype and the peak of live storage is tracked op by op. It is a lower",
    "bound of `torch.cuda.max_memory_allocated`: kernel-internal workspaces (the radix sort's temporary keys and",
    "values, cuBLAS) and the caching allocator's rounding are not seen. What the numbers say: `transients.md`.",
    "",
]


class LiveStorageTracker(TorchDispatchMode):
    """Peak bytes of tensor storage alive at once, op by op (storages that existed before entry are not counted)."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[int, StorageWeakRef]] = {}
        self.current = 0
        self.peak = 0
        self.seen_before: set[int] = set()

    def preexisting(self, *tensors: torch.Tensor) -> None:
        for t in tensors:
            self.seen_before.add(t.untyped_storage()._cdata)

    def _sweep(self) -> None:
        for key in [k for k, (_, ref) in self.live.items() if ref.expired()]:
            self.current -= self.live.pop(key)[0]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._sweep()
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage._cdata
            if key in self.live or key in self.seen_before:
                continue
            nbytes = storage.nbytes()
            self.live[key] = (nbytes, StorageWeakRef(storage))
            self.current += nbytes
        self.peak = max(self.peak, self.current)
        return out


@dataclass(frozen=True)
class LayerShape:
    model_id: str
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0

    @classmethod
    def from_bundled(cls, model_id: str) -> "LayerShape":
        config = json.loads((MODELS / model_id.replace("/", "--") / "config.json").read_text())
        text = config.get("text_config", config)
        heads = text["num_attention_heads"]
        return cls(
            model_id=model_id,
            hidden_size=text["hidden_size"],
            intermediate_size=text["intermediate_size"],
            num_heads=heads,
            num_kv_heads=text.get("num_key_value_heads", heads),
            head_dim=text.get("head_dim") or text["hidden_size"] // heads,
            vocab_size=text["vocab_size"],
            num_experts=text.get("num_experts") or text.get("num_local_experts") or 0,
            experts_per_token=text.get("num_experts_per_tok") or 0,
            moe_intermediate_size=text.get("moe_intermediate_size") or 0,
        )


def _rms_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    # vLLM's fused rms_norm kernel writes one output of x's shape and dtype; F.rms_norm is the same contract
    return F.rms_norm(x, (x.shape[-1],), weight)


def sampler_run(rows: int, vocab: int, device: str, dtype: torch.dtype = torch.bfloat16) -> Callable[[], None]:
    """vLLM 0.11 `_dummy_sampler_run` on the PyTorch-native top-k/top-p path; returns (setup done) the replay."""
    padded_vocab = math.ceil(vocab / 64) * 64  # ParallelLMHead pads the vocabulary to a multiple of 64
    hidden = torch.empty(rows, SAMPLER_HIDDEN, device=device, dtype=dtype)
    lm_head = torch.empty(padded_vocab, SAMPLER_HIDDEN, device=device, dtype=dtype)
    if device != "meta":
        hidden.normal_()
        lm_head.normal_(std=0.02)
    resident = (hidden, lm_head)

    def replay() -> None:
        h = torch.rand_like(hidden)
        logits = F.linear(h, lm_head)[..., :vocab]  # LogitsProcessor drops the padded columns (a view)
        temperature = torch.full((rows,), 0.5, device=device)
        top_p = torch.full((rows,), 0.9, device=device)
        top_k = torch.full((rows,), vocab - 1, device=device)
        # Sampler.forward: float32 copy, greedy argmax, temperature in place
        logits32 = logits.to(torch.float32)
        greedy = logits32.argmax(dim=-1).view(-1)
        logits32 = logits32.div_(temperature.unsqueeze(1))
        # apply_top_k_top_p: a full sort, the top-k mask, softmax + cumsum for top-p, then scatter back
        logits_sort, logits_idx = logits32.sort(dim=-1, descending=False)
        top_k_threshold = logits_sort.gather(1, (logits_sort.size(1) - top_k.to(torch.long)).unsqueeze(1))
        logits_sort.masked_fill_(logits_sort < top_k_threshold, -float("inf"))
        probs_sort = logits_sort.softmax(dim=-1)
        probs_sum = torch.cumsum(probs_sort, dim=-1, out=probs_sort)
        top_p_mask = probs_sum <= 1 - top_p.unsqueeze(1)
        top_p_mask[:, -1] = False
        logits_sort.masked_fill_(top_p_mask, -float("inf"))
        filtered = logits_sort.scatter(dim=-1, index=logits_idx, src=logits_sort)
        # forward_native: softmax, then random_sample's exponential race
        probs = filtered.softmax(dim=-1, dtype=torch.float32)
        q = torch.empty_like(probs)
        if device != "meta":
            q.exponential_()
        sampled = probs.div_(q).argmax(dim=-1).view(-1)
        torch.where(temperature < 1e-5, greedy, sampled, out=greedy)

    replay.resident = resident  # type: ignore[attr-defined]
    return replay


def layer_run(shape: LayerShape, tokens: int, device: str, dtype: torch.dtype = torch.bfloat16) -> Callable[[], None]:
    """One decoder layer's forward at `tokens` tokens, dense or MoE; weights and the input are resident."""
    H, hd = shape.hidden_size, shape.head_dim
    q_size, kv_size = shape.num_heads * hd, shape.num_kv_heads * hd

    def weight(*dims: int) -> torch.Tensor:
        w = torch.empty(*dims, device=device, dtype=dtype)
        if device != "meta":
            w.normal_(std=0.02)
        return w

    x = weight(tokens, H)
    positions = torch.arange(tokens, device=device)
    norm_w, norm2_w = weight(H), weight(H)
    qkv_w, o_w = weight(q_size + 2 * kv_size, H), weight(H, q_size)
    cos_sin = weight(max(tokens, 4096), hd)  # the rotary cos/sin cache is a resident buffer
    if shape.num_experts:
        E, k, I = shape.num_experts, shape.experts_per_token, shape.moe_intermediate_size or shape.intermediate_size
        router_w = weight(E, H)
        w13, w2 = weight(E, 2 * I, H), weight(E, H, I)
        mlp_weights: tuple[torch.Tensor, ...] = (router_w, w13, w2)
    else:
        gate_up_w, down_w = weight(2 * shape.intermediate_size, H), weight(H, shape.intermediate_size)
        mlp_weights = (gate_up_w, down_w)
    resident = (x, positions, norm_w, norm2_w, qkv_w, o_w, cos_sin) + mlp_weights

    def rotary(t: torch.Tensor, heads: int) -> torch.Tensor:
        # vLLM's rotary kernel works in place on q and k; the cache lookup is the only new tensor
        cs = cos_sin.index_select(0, positions)
        return t.view(tokens, heads, hd).mul_(cs.unsqueeze(1)).view(tokens, heads * hd)

    def replay() -> None:
        residual = x
        h = _rms_norm(x, norm_w)
        qkv = F.linear(h, qkv_w)
        q, kk, v = qkv.split([q_size, kv_size, kv_size], dim=-1)
        q = rotary(q.contiguous(), shape.num_heads)
        kk = rotary(kk.contiguous(), shape.num_kv_heads)
        attn_out = torch.empty(tokens, q_size, device=device, dtype=dtype)
        softmax_lse = torch.empty(shape.num_heads, tokens, device=device, dtype=torch.float32)
        del q, kk, v, qkv
        h = F.linear(attn_out, o_w)
        del attn_out, softmax_lse
        h = h + residual  # vLLM fuses add + norm: one new residual and one normalised output
        residual = h
        h = _rms_norm(h, norm2_w)
        if shape.num_experts:
            router_logits = F.linear(h, router_w)
            topk_weights, topk_ids = torch.topk(torch.softmax(router_logits, dim=-1, dtype=torch.float32), k, dim=-1)
            M = min(tokens, FUSED_MOE_CHUNK_SIZE)
            N, K = 2 * I, H
            cache13 = torch.empty(M * k * max(N, K), device=device, dtype=dtype)
            intermediate_cache2 = torch.empty(M * k, N // 2, device=device, dtype=dtype)
            # moe_align_block_size: sorted token ids, expert ids and the padded count (int32)
            sorted_ids = torch.empty(tokens * k + E * 63, device=device, dtype=torch.int32)
            expert_ids = torch.empty(math.ceil((tokens * k + E * 63) / 64), device=device, dtype=torch.int32)
            out = torch.empty_like(h)
            cache1 = cache13[: M * k * N].view(M, k, N)
            intermediate_cache2.copy_(F.silu(cache1.view(-1, N)[:, : N // 2]))
            cache3 = cache13[: M * k * K].view(M, k, K)
            torch.sum(cache3, dim=1, out=out)
            del cache13, intermediate_cache2, sorted_ids, expert_ids, topk_weights, topk_ids, router_logits
            h = out
        else:
            gate_up = F.linear(h, gate_up_w)
            d = gate_up.shape[-1] // 2
            # vLLM's silu_and_mul (a custom op, fused by torch.compile in V1) writes only its
            # [T, I] output; chunks keep plain torch's temporaries small in the same way.
            act = torch.empty(tokens, d, device=device, dtype=dtype)
            for start in range(0, tokens, 256):
                rows = slice(start, start + 256)
                torch.mul(F.silu(gate_up[rows, :d]), gate_up[rows, d:], out=act[rows])
            del gate_up
            h = F.linear(act, down_w)
        _ = h + residual

    replay.resident = resident  # type: ignore[attr-defined]
    return replay


def model_prediction(case: dict) -> Optional[int]:
    """What vllm-fit's formulas (memory/overheads.py) say for the same shapes, in bytes."""
    sys.path.insert(0, str(REPO / "operator"))
    from vllm_fit.memory.geometry import geometry_from_config
    from vllm_fit.memory.overheads import forward_layer_peak_bytes
    from vllm_fit.profiles import runtime_profiles

    if case["case"] == "sampler":
        fitted = runtime_profiles().fitted
        return round(case["rows"] * case["vocab"] * fitted.sampler_bytes_per_row_vocab["sort"].value) if fitted else None
    config = json.loads((MODELS / case["model"].replace("/", "--") / "config.json").read_text())
    forward, workspace = forward_layer_peak_bytes(geometry_from_config(config), case["tokens"], 1, 2)
    return max(forward, workspace)


def peak_bytes(make: Callable[[], Callable[[], None]], device: str) -> int:
    replay = make()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        replay()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        tracker = LiveStorageTracker()
        tracker.preexisting(*replay.resident)  # type: ignore[attr-defined]
        with tracker:
            replay()
        peak = tracker.peak
    del replay
    return peak


def environment(device: str) -> dict:
    env = {"date": _dt.date.today().isoformat(), "torch": torch.__version__, "python": platform.python_version(),
           "device": device, "vllm_version_replayed": "0.11.0"}
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_total_bytes"] = torch.cuda.get_device_properties(0).total_memory
        env["cuda"] = torch.version.cuda
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            env["driver"] = f"unknown ({exc})"
    return env


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "meta"),
                        default="cuda" if torch.cuda.is_available() else "meta")
    parser.add_argument("--out", type=Path, help="write the Markdown table and YAML environment block here")
    parser.add_argument("--quick", action="store_true", help="one point per sweep (a smoke test)")
    args = parser.parse_args(argv)
    device = args.device
    rows, vocabs, tokens = (ROWS[:1], VOCABS[:1], TOKENS[:1]) if args.quick else (ROWS, VOCABS, TOKENS)

    results: list[dict] = []
    for vocab in vocabs:
        for r in rows:
            peak = peak_bytes(lambda: sampler_run(r, vocab, device), device)
            results.append({"case": "sampler", "rows": r, "vocab": vocab, "peak_bytes": peak,
                            "bytes_per_row_vocab": round(peak / (r * vocab), 2)})
            print(f"sampler rows={r:5d} vocab={vocab:7d} peak={peak / GIB:8.4f} GiB "
                  f"({peak / (r * vocab):.2f} B per row x vocab)", flush=True)
    for model_id in (LAYER_MODELS[:1] if args.quick else LAYER_MODELS):
        shape = LayerShape.from_bundled(model_id)
        for t in tokens:
            peak = peak_bytes(lambda: layer_run(shape, t, device), device)
            results.append({"case": "layer", "model": model_id, "tokens": t, "peak_bytes": peak,
                            "bytes_per_token": round(peak / t, 1)})
            print(f"layer {model_id:34s} tokens={t:6d} peak={peak / GIB:8.4f} GiB ({peak / t:.0f} B per token)",
                  flush=True)

    if args.out:
        env = environment(device)
        lines = [f"# Profiling-run transients, vLLM 0.11.0 op sequences replayed in plain PyTorch ({device})", "",
                 f"Produced by `python bench/transients.py --device {device} --out {args.out}`.", "",
                 *(DRY_RUN_NOTE if device == "meta" else []),
                 "```yaml", *(f"{k}: {v}" for k, v in env.items()), "```", "",
                 "Model = vllm-fit's formula for the same shapes (`memory/overheads.py`: the sampler's fitted "
                 "bytes per row x vocab on the sort path; `forward_layer_peak_bytes` at TP=1, bf16).", "",
                 "| case | rows / model | vocab / tokens | replay GiB | per element | model GiB | model vs replay |",
                 "|---|---|---|---|---|---|---|"]
        for r in results:
            predicted = model_prediction(r)
            r["model_bytes"] = predicted
            versus = f"{100 * (predicted - r['peak_bytes']) / r['peak_bytes']:+.1f} %" if predicted else "-"
            model_gib = f"{predicted / GIB:.4f}" if predicted else "-"
            if r["case"] == "sampler":
                lines.append(f"| sampler | {r['rows']} | {r['vocab']} | {r['peak_bytes'] / GIB:.4f} | "
                             f"{r['bytes_per_row_vocab']} B per row x vocab | {model_gib} | {versus} |")
            else:
                lines.append(f"| layer | {r['model']} | {r['tokens']} | {r['peak_bytes'] / GIB:.4f} | "
                             f"{r['bytes_per_token']} B per token | {model_gib} | {versus} |")
        lines += ["", "```json", json.dumps({"environment": env, "results": results}, indent=1), "```", ""]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
