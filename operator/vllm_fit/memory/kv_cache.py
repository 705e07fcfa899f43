"""KV cache specs, groups, blocks, tokens and concurrency, as vLLM's V1 engine computes them.

Modelled on vllm/v1/kv_cache_interface.py: one frozen spec per attention kind, each owning
its page size and its per-request usage, so callers never branch on the kind. Grouping and
the log lines follow vllm/v1/core/kv_cache_utils.py (get_kv_cache_groups,
get_kv_cache_config_from_groups, get_max_concurrency_for_kv_cache_config,
check_enough_kv_cache_memory, estimate_max_model_len), with the version changes listed in
`VllmBehaviour`.
"""

from __future__ import annotations

from typing import Optional, Union

from pydantic import BaseModel, ConfigDict

from .versions import VllmBehaviour


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


class _AttentionSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    block_size: int
    num_kv_heads: int
    head_size: int
    dtype_bytes: int

    @property
    def page_size_bytes(self) -> int:
        # K and V
        return 2 * self.block_size * self.num_kv_heads * self.head_size * self.dtype_bytes

    @property
    def bytes_per_token(self) -> int:
        return self.page_size_bytes // self.block_size

    def max_memory_usage_bytes(self, max_model_len: int, max_in_flight_tokens: int) -> int:
        return cdiv(max_model_len, self.block_size) * self.page_size_bytes


class FullAttentionSpec(_AttentionSpec):
    kind: str = "full"


class SlidingWindowSpec(_AttentionSpec):
    kind: str = "sliding"
    sliding_window: int

    def max_memory_usage_bytes(self, max_model_len: int, max_in_flight_tokens: int) -> int:
        # A request holds the window plus one step of scheduled tokens, plus one block of slack.
        tokens = min(self.sliding_window - 1 + max_in_flight_tokens, max_model_len)
        return (cdiv(tokens, self.block_size) + 1) * self.page_size_bytes


class ChunkedLocalAttentionSpec(_AttentionSpec):
    kind: str = "chunked"
    attention_chunk_size: int

    def max_memory_usage_bytes(self, max_model_len: int, max_in_flight_tokens: int) -> int:
        tokens = min(self.attention_chunk_size + max_in_flight_tokens, max_model_len)
        return cdiv(tokens, self.block_size) * self.page_size_bytes


class MLAAttentionSpec(_AttentionSpec):
    """One latent "head" of kv_lora_rank + qk_rope_head_dim, no separate V, replicated per TP rank."""

    kind: str = "mla"

    @property
    def page_size_bytes(self) -> int:
        return self.block_size * self.num_kv_heads * self.head_size * self.dtype_bytes


KvSpec = Union[FullAttentionSpec, SlidingWindowSpec, ChunkedLocalAttentionSpec, MLAAttentionSpec]


class KvGroup(BaseModel):
    model_config = ConfigDict(frozen=True)
    spec: KvSpec
    num_layers: int


class KvLayout(BaseModel):
    """The KV cache of one rank: groups (each a set of layers sharing a block table)."""

    model_config = ConfigDict(frozen=True)
    groups: tuple[KvGroup, ...]
    spec_counts: tuple[tuple[KvSpec, int], ...]  # each distinct layer spec on this rank and how many layers

    @property
    def block_size(self) -> int:
        return min(g.spec.block_size for g in self.groups)

    @property
    def group_size(self) -> int:
        return max(g.num_layers for g in self.groups)

    @property
    def page_size_bytes(self) -> int:
        return self.groups[0].spec.page_size_bytes

    @property
    def bytes_per_block(self) -> int:
        """Bytes one block id costs across the tensors of this rank."""
        return self.page_size_bytes * self.group_size

    @property
    def bytes_per_token(self) -> int:
        """Bytes one token of context costs on this rank if every layer kept it (full attention)."""
        return sum(spec.bytes_per_token * count for spec, count in self.spec_counts)

    def num_blocks(self, available_bytes: int) -> int:
        return max(int(available_bytes // self.page_size_bytes // self.group_size), 0)

    def blocks_per_request(self, max_model_len: int, in_flight: int, behaviour: VllmBehaviour) -> int:
        key = ("blocks_per_request", max_model_len, in_flight, behaviour.per_group_concurrency_cdiv)
        memo = self.__dict__.setdefault("_memo", {})
        if key not in memo:
            memo[key] = self._blocks_per_request(max_model_len, in_flight, behaviour)
        return memo[key]

    def _blocks_per_request(self, max_model_len: int, in_flight: int, behaviour: VllmBehaviour) -> int:
        if behaviour.per_group_concurrency_cdiv:
            return sum(
                cdiv(g.spec.max_memory_usage_bytes(max_model_len, in_flight), g.spec.page_size_bytes)
                for g in self.groups
            )
        n = self.group_size
        per_request = n * sum(g.spec.max_memory_usage_bytes(max_model_len, in_flight) for g in self.groups)
        return cdiv(per_request, self.groups[0].spec.page_size_bytes * n)

    def max_concurrency(self, num_blocks: int, max_model_len: int, in_flight: int, behaviour: VllmBehaviour) -> float:
        return num_blocks / self.blocks_per_request(max_model_len, in_flight, behaviour)

    def logged_tokens(self, num_blocks: int, max_model_len: int, in_flight: int, behaviour: VllmBehaviour) -> int:
        """What vLLM prints as "GPU KV cache size: N tokens"."""
        if behaviour.tokens_from_concurrency:
            return int(self.max_concurrency(num_blocks, max_model_len, in_flight, behaviour) * max_model_len)
        return num_blocks // len(self.groups) * self.block_size

    def bytes_needed(self, max_model_len: int, in_flight: int, behaviour: VllmBehaviour) -> int:
        """KV bytes one request of max_model_len needs (check_enough_kv_cache_memory)."""
        key = ("bytes_needed", max_model_len, in_flight, behaviour.check_uses_groups, behaviour.check_sums_all_groups)
        memo = self.__dict__.setdefault("_memo", {})
        if key not in memo:
            memo[key] = self._bytes_needed(max_model_len, in_flight, behaviour)
        return memo[key]

    def _bytes_needed(self, max_model_len: int, in_flight: int, behaviour: VllmBehaviour) -> int:
        if behaviour.check_uses_groups:
            groups = self.groups if behaviour.check_sums_all_groups else self.groups[:1]
            blocks = sum(cdiv(g.spec.max_memory_usage_bytes(max_model_len, in_flight), g.spec.page_size_bytes)
                         for g in groups)
            return self.group_size * self.page_size_bytes * blocks
        return sum(spec.max_memory_usage_bytes(max_model_len, in_flight) * count for spec, count in self.spec_counts)

    def estimate_max_model_len(self, available_bytes: int, max_model_len: int, in_flight: int,
                               behaviour: VllmBehaviour) -> int:
        """vLLM's binary search for the longest max_model_len that fits (0 if one token does not)."""
        lo, hi, best = 1, max_model_len, 0
        while lo <= hi:
            mid = (lo + hi) // 2
            if self.bytes_needed(mid, in_flight, behaviour) <= available_bytes:
                best, lo = mid, mid + 1
            else:
                hi = mid - 1
        return best


def build_layout(spec_counts: dict[KvSpec, int], *, hybrid_manager: bool) -> Optional[KvLayout]:
    """Group the layers of one rank the way get_kv_cache_groups does. None: attention-free."""
    kinds = {spec: count for spec, count in spec_counts.items() if count > 0}
    if not kinds:
        return None
    if not hybrid_manager:
        # unify_hybrid_kv_cache_specs: windows and chunks are kept for compute only.
        unified: dict[KvSpec, int] = {}
        for spec, count in kinds.items():
            if isinstance(spec, (SlidingWindowSpec, ChunkedLocalAttentionSpec)):
                spec = FullAttentionSpec(block_size=spec.block_size, num_kv_heads=spec.num_kv_heads,
                                         head_size=spec.head_size, dtype_bytes=spec.dtype_bytes)
            unified[spec] = unified.get(spec, 0) + count
        kinds = unified
    counts = tuple(kinds.items())
    if len(kinds) == 1:
        (spec, count), = counts
        return KvLayout(groups=(KvGroup(spec=spec, num_layers=count),), spec_counts=counts)
    pages = {spec.page_size_bytes for spec in kinds}
    if len(pages) != 1:
        from ..errors import VllmFitError
        raise VllmFitError("layers with different KV page sizes cannot share one pool in this vLLM version")
    # Same page size, different kinds (e.g. gpt-oss sliding + full): groups of the smallest
    # layer count, each kind split into ceil(n / group_size) groups.
    group_size = min(kinds.values())
    groups: list[KvGroup] = []
    for spec, count in counts:
        for _ in range(cdiv(count, group_size)):
            groups.append(KvGroup(spec=spec, num_layers=group_size))
    return KvLayout(groups=tuple(groups), spec_counts=counts)
