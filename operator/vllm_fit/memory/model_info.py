"""A model as the memory model needs it: its config.json and its weight facts."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from .geometry import ModelGeometry, geometry_from_config
from .weights import architecture_params

# Bytes per parameter for the dtypes `huggingface_hub.get_safetensors_metadata` reports.
SAFETENSORS_DTYPE_BYTES = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I8": 1, "U8": 1, "BOOL": 1, "F4": 0.5, "FP4": 0.5, "I4": 0.5, "U4": 0.5,
}


class ModelInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    model_id: str
    config: dict[str, Any]
    params_by_dtype: dict[str, int] = Field(default_factory=dict)
    safetensors_total_bytes: Optional[int] = None
    source: str = ""
    # Set when the facts are rougher than usual (no safetensors, config only, ...).
    caveats: tuple[str, ...] = ()

    @property
    def geometry(self) -> ModelGeometry:
        cached = self.__dict__.get("_geometry")
        if cached is None:
            cached = geometry_from_config(self.config)
            self.__dict__["_geometry"] = cached
        return cached

    @property
    def safetensors_params(self) -> Optional[int]:
        return sum(self.params_by_dtype.values()) if self.params_by_dtype else None

    def extra_params(self) -> tuple[int, str]:
        """Parameters the checkpoint has beyond the language model vLLM shards (e.g. a vision tower).

        Returns (count, note). Tied lm_heads stored anyway and DeepSeek MTP layers are skipped,
        as vLLM does not load them for serving.
        """
        cached = self.__dict__.get("_extra_params")
        if cached is None:
            cached = self.__dict__["_extra_params"] = self._extra_params()
        return cached

    def _extra_params(self) -> tuple[int, str]:
        stored = self.safetensors_params
        if stored is None:
            if any("estimated from the architecture" in caveat for caveat in self.caveats):
                return 0, ""  # the resolver's caveat already says so, and why: one note per fact
            return 0, "no safetensors parameter counts: weights estimated from the architecture alone"
        g = self.geometry
        computed = architecture_params(g)
        delta = stored - computed
        if delta == 0:
            return 0, ""
        if g.tie_word_embeddings and delta == g.vocab_size * g.hidden_size:
            return 0, "the checkpoint also stores the tied lm_head; vLLM shares the embedding instead"
        if g.num_mtp_layers and delta > 0:
            return 0, f"{delta:,} parameters of next-token-prediction (MTP) layers are not loaded for serving"
        if g.quant is not None and 0 < delta <= 0.01 * computed:
            return 0, "the checkpoint's extra tensors are quantization scales, priced with the quantized layers"
        if delta > 0:
            what = "the vision tower and projector" if g.is_multimodal else "tensors outside the modelled layers"
            return delta, (f"{delta:,} parameters ({what}) priced in the model dtype and kept whole on every rank")
        return 0, (f"the architecture accounts for {computed:,} parameters but the checkpoint reports "
                   f"{stored:,}; the estimate follows the architecture")
