"""Effective vLLM settings: what the launch states, with vLLM's defaults for the version and GPU."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict

from ..errors import VllmFitError
from ..launch.model import VllmLaunch
from .geometry import ModelGeometry, QuantConfig
from ..gpu_catalog import GpuSpec
from ..units import GIB
from .versions import DEFAULT_VLLM_VERSION, VllmBehaviour, behaviour_for, parse_version

# --dtype choices (vLLM ModelConfig) and --kv-cache-dtype bytes (STR_DTYPE_TO_TORCH_DTYPE: the
# fp8 variants and int8 are stored as uint8).
_DTYPES = {"auto", "half", "float16", "bfloat16", "float", "float32"}
_KV_DTYPE_BYTES = {"fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "fp8_inc": 1, "fp8_ds_mla": 1, "int8": 1,
                   "bfloat16": 2, "half": 2, "float16": 2, "float": 4, "float32": 4}
# Quantization names vLLM treats as the same scheme (its override probes pick the Marlin kernel).
_QUANT_FAMILY = {"awq_marlin": "awq", "gptq_marlin": "gptq", "gptq_marlin_24": "gptq", "compressed_tensors": "compressed-tensors"}
# Methods vLLM can apply to an unquantized checkpoint at load time (the others read their
# scales from the checkpoint and fail on a plain one: "Cannot find the config file for awq").
# Of these, fp8 is priced (1 byte per linear weight); the others keep the model-dtype price.
_ONLINE_QUANT = {"fp8", "ptpc_fp8", "fbgemm_fp8", "bitsandbytes", "experts_int8", "torchao", "inc", "rtn"}


class InvalidSetting(VllmFitError):
    """A value vLLM itself rejects at startup (reported as `invalid-argument`)."""


class Settings(BaseModel):
    """Every value the memory model uses, after defaults, with its origin."""

    model_config = ConfigDict(frozen=True)

    vllm_version: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    data_parallel_size: int
    data_parallel_size_local: Optional[int]
    gpu_memory_utilization: float
    max_model_len: int
    max_model_len_auto: bool
    block_size: int
    kv_cache_dtype: str
    kv_cache_dtype_bytes: int
    dtype: str
    dtype_bytes: int
    quantization: Optional[str]
    runtime_fp8: bool
    enforce_eager: bool
    max_num_seqs: int
    max_num_batched_tokens: int
    kv_cache_memory_bytes: Optional[int]
    cpu_offload_gb: Optional[float]
    enable_expert_parallel: bool
    disable_sliding_window: bool
    hybrid_kv_cache_manager: bool
    num_gpu_blocks_override: Optional[int]
    defaults_used: tuple[str, ...]
    # 0.34+: the KV cache is sized after warm-up and graph capture (overheads.py).
    extensible_kv_cache: bool = False
    # Every modality limited to 0 items, or --skip-mm-profiling: no encoder profiling.
    limit_mm_zero: bool = False
    distributed_executor_backend: Optional[str] = None
    env_flags: tuple[str, ...] = ()  # VLLM_* variables set to a true value
    flashinfer_sampler_env: Optional[bool] = None  # VLLM_USE_FLASHINFER_SAMPLER when set
    v0_engine: bool = False  # the V0 engine (before 0.8, or VLLM_USE_V1=0 before 0.11)

    @property
    def behaviour(self) -> VllmBehaviour:
        return behaviour_for(self.vllm_version)

    @property
    def gpus_per_replica(self) -> int:
        """GPUs the pod must give: with multi-node data parallel, only this pod's DP ranks."""
        local_dp = self.data_parallel_size_local or self.data_parallel_size
        return self.tensor_parallel_size * self.pipeline_parallel_size * local_dp

    @property
    def runtime_quant(self) -> Optional[QuantConfig]:
        return QuantConfig(method="fp8", weight_bits=8, strategy="tensor") if self.runtime_fp8 else None


def batch_defaults(gpu: GpuSpec, behaviour: VllmBehaviour) -> tuple[int, int]:
    """Serve defaults for (max_num_batched_tokens, max_num_seqs): EngineArgs._set_default_args."""
    total_gib = gpu.total_bytes / GIB
    if behaviour.large_gpu_batch_tier and total_gib >= 160:
        return 16384, 1024
    gb10 = behaviour.gb10_small_batch_tier and gpu.compute_capability == "12.1"
    if total_gib >= 70 and not gpu.is_a100 and not gb10:
        return 8192, 1024
    return 2048, 256


def _model_dtype(config_dtype: str, requested: Optional[str], gpu: GpuSpec) -> str:
    old_gpu = gpu.compute_capability is not None and gpu.vendor == "nvidia" and float(gpu.compute_capability) < 8.0
    if requested in (None, "auto"):
        if config_dtype in ("float32", "float"):
            return "float16" if old_gpu else "bfloat16"
        if config_dtype == "bfloat16" and old_gpu:
            return "float16"
        return config_dtype
    if requested not in _DTYPES:
        raise InvalidSetting(f"--dtype {requested!r} is not one of {', '.join(sorted(_DTYPES))}")
    canonical = {"half": "float16", "float": "float32"}.get(requested, requested)
    if canonical == "bfloat16" and old_gpu:
        raise InvalidSetting(f"--dtype bfloat16 needs compute capability 8.0; {gpu.name} has {gpu.compute_capability}")
    return canonical


def check_values(launch: VllmLaunch, *, default_version: str = DEFAULT_VLLM_VERSION) -> None:
    """The values vLLM rejects whatever the model and the GPU (EngineArgs/config validation), for
    judging a launch whose model or GPU is not known. Raises InvalidSetting with vLLM's reason.
    resolve_settings starts with it and adds the checks that need the model and the GPU."""
    behaviour = behaviour_for(launch.vllm_version or default_version)
    for flag, value in (("--tensor-parallel-size", launch.tensor_parallel_size),
                        ("--pipeline-parallel-size", launch.pipeline_parallel_size),
                        ("--data-parallel-size", launch.data_parallel_size)):
        if value is not None and value < 1:
            raise InvalidSetting(f"{flag} must be at least 1, got {value}")
    util = launch.gpu_memory_utilization
    if util is not None and not 0 < util <= 1:
        raise InvalidSetting(f"--gpu-memory-utilization must be in (0, 1], got {util}")
    if launch.cpu_offload_gb is not None and launch.cpu_offload_gb < 0:
        raise InvalidSetting(f"--cpu-offload-gb must be >= 0, got {launch.cpu_offload_gb}")
    dp_local, dp = launch.data_parallel_size_local, launch.data_parallel_size or 1
    if dp_local is not None and not 1 <= dp_local <= dp:
        raise InvalidSetting(f"--data-parallel-size-local {dp_local} must be between 1 and --data-parallel-size {dp}")
    if launch.dtype is not None and launch.dtype not in _DTYPES:
        raise InvalidSetting(f"--dtype {launch.dtype!r} is not one of {', '.join(sorted(_DTYPES))}")
    kv_dtype = (launch.kv_cache_dtype or "auto").lower()
    if kv_dtype != "auto" and kv_dtype not in _KV_DTYPE_BYTES:
        raise InvalidSetting(f"--kv-cache-dtype {launch.kv_cache_dtype!r} is not a vLLM cache dtype")
    block = launch.block_size
    if block is not None and (block < 1 or (behaviour.block_size_choices and block not in behaviour.block_size_choices)):
        choices = ", ".join(map(str, behaviour.block_size_choices)) or "a positive integer"
        raise InvalidSetting(f"--block-size {block} is not accepted by vLLM {behaviour.version} (choices: {choices})")
    max_len = launch.max_model_len
    if max_len in (-1, 0):
        if not behaviour.supports_auto_max_model_len:
            raise InvalidSetting(f"--max-model-len auto needs vLLM 0.14 or later (this is {behaviour.version})")
    elif max_len is not None and max_len < 1:
        raise InvalidSetting(f"--max-model-len must be positive, got {max_len}")
    seqs, mnbt = launch.max_num_seqs, launch.max_num_batched_tokens
    if seqs is not None and mnbt is not None and mnbt < seqs:
        raise InvalidSetting(f"max_num_batched_tokens ({mnbt}) must be greater than or equal to max_num_seqs ({seqs}).")


def resolve_settings(launch: VllmLaunch, g: ModelGeometry, gpu: GpuSpec, *, default_version: str = DEFAULT_VLLM_VERSION) -> Settings:
    version = launch.vllm_version or default_version
    behaviour = behaviour_for(version)
    check_values(launch, default_version=default_version)
    if launch.cpu_offload_gb is not None and launch.cpu_offload_gb < 0:
        raise InvalidSetting(f"--cpu-offload-gb must be >= 0, got {launch.cpu_offload_gb}")
    defaults: list[str] = []

    def pick(name: str, default):  # noqa: ANN001
        value = getattr(launch, name)
        if value is None:
            defaults.append(name)
            return default
        return value

    tp = pick("tensor_parallel_size", 1)
    pp = pick("pipeline_parallel_size", 1)
    dp = pick("data_parallel_size", 1)
    for flag, value in (("--tensor-parallel-size", tp), ("--pipeline-parallel-size", pp), ("--data-parallel-size", dp)):
        if value < 1:
            raise InvalidSetting(f"{flag} must be at least 1, got {value}")
    extensible = _extensible_kv_cache(launch, behaviour, gpu)
    # config/cache.py resolved_gpu_memory_utilization (0.34): unset resolves to 1.0 with the
    # extensible KV cache, else the release's default.
    util = pick("gpu_memory_utilization", 1.0 if extensible else behaviour.default_gpu_memory_utilization)
    if not 0 < util <= 1:
        percent = f" (a fraction: {util / 100:g} for {util:g}%)" if 1 < util <= 100 else ""
        raise InvalidSetting(f"--gpu-memory-utilization must be in (0, 1], got {util:g}{percent}")

    dtype = _model_dtype(g.config_dtype, launch.dtype, gpu)
    dtype_b = {"float32": 4, "float16": 2, "bfloat16": 2}.get(dtype, 2)

    quant = launch.quantization.lower().replace("-", "_") if launch.quantization else None
    runtime_fp8 = False
    if quant:
        stated = _QUANT_FAMILY.get(quant, quant)
        if g.quant is not None:
            checkpoint = _QUANT_FAMILY.get(g.quant.method.replace("-", "_"), g.quant.method)
            if stated != checkpoint:
                raise InvalidSetting(
                    f"Quantization method specified in the model config ({g.quant.method}) does not match the "
                    f"quantization method specified in the quantization argument ({launch.quantization})")
        elif quant not in _ONLINE_QUANT:
            raise InvalidSetting(f"--quantization {launch.quantization} needs a checkpoint quantized with it; this "
                                 f"model's config.json has no quantization_config")
        elif quant == "fp8":
            runtime_fp8 = True
    if launch.enable_expert_parallel and g.moe is None:
        raise InvalidSetting("--enable-expert-parallel needs a mixture-of-experts model")
    dp_local = launch.data_parallel_size_local
    if dp_local is not None and not 1 <= dp_local <= dp:
        raise InvalidSetting(f"--data-parallel-size-local {dp_local} must be between 1 and --data-parallel-size {dp}")

    kv_dtype = (launch.kv_cache_dtype or "auto").lower()
    if kv_dtype == "auto":
        if launch.kv_cache_dtype is None:
            defaults.append("kv_cache_dtype")
        if behaviour.requested_is_ceiled and g.quant is not None and g.quant.kv_cache_fp8:
            kv_bytes, kv_dtype = 1, "fp8 (from the checkpoint's kv_cache_scheme)"
        else:
            kv_bytes = dtype_b
    elif kv_dtype in _KV_DTYPE_BYTES:
        kv_bytes = _KV_DTYPE_BYTES[kv_dtype]
    else:
        raise InvalidSetting(f"--kv-cache-dtype {launch.kv_cache_dtype!r} is not a vLLM cache dtype")

    if launch.block_size is None:
        defaults.append("block_size")
        block = (128 if gpu.is_blackwell else 64) if g.mla else 16
    else:
        block = launch.block_size
        if block < 1 or (behaviour.block_size_choices and block not in behaviour.block_size_choices):
            choices = ", ".join(map(str, behaviour.block_size_choices)) or "a positive integer"
            raise InvalidSetting(f"--block-size {block} is not accepted by vLLM {behaviour.version} (choices: {choices})")

    disable_sw = bool(launch.disable_sliding_window)
    derived = g.derived_max_model_len
    if disable_sw and g.sliding_window and g.sliding_window < derived:
        derived = g.sliding_window
    auto = False
    if launch.max_model_len is None:
        defaults.append("max_model_len")
        max_len = derived
    elif launch.max_model_len == -1 or launch.max_model_len == 0:
        if not behaviour.supports_auto_max_model_len:
            raise InvalidSetting(f"--max-model-len auto needs vLLM 0.14 or later (this is {behaviour.version})")
        auto, max_len = True, derived
    else:
        max_len = launch.max_model_len
        if max_len < 1:
            raise InvalidSetting(f"--max-model-len must be positive, got {max_len}")
        if max_len > derived and launch.env.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "0") not in ("1", "true", "True"):
            raise InvalidSetting(
                f"User-specified max_model_len ({max_len}) is greater than the derived max_model_len "
                f"({g.max_len_source}={derived} in model's config.json); set VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 to override")

    v0 = behaviour.v0_engine or (behaviour.v0_selectable and launch.env.get("VLLM_USE_V1") == "0")
    if v0:
        # V0 (SchedulerConfig): 256 sequences, and without chunked prefill a batch of
        # max(max_model_len, 2048) tokens, which its profiling run fills. V0 turns chunked prefill
        # on by itself above 32K tokens (EngineArgs use_long_context), and then batches 512 tokens
        # (the ITL/TTFT balance constant of 0.5-0.6) or 2048 from 0.7.
        if max_len > 32768:
            mnbt_default = 512 if parse_version(behaviour.version) < (0, 7, 0) else 2048
        else:
            mnbt_default = max(max_len, 2048)
        seqs_default = 256
    else:
        mnbt_default, seqs_default = batch_defaults(gpu, behaviour)
    mnbt = pick("max_num_batched_tokens", mnbt_default)
    seqs = launch.max_num_seqs
    if seqs is None:
        defaults.append("max_num_seqs")
        seqs = min(seqs_default, mnbt)
    elif launch.max_num_batched_tokens is not None and mnbt < seqs:
        raise InvalidSetting(f"max_num_batched_tokens ({mnbt}) must be greater than or equal to max_num_seqs ({seqs}).")

    # VllmConfig.__post_init__ turns the hybrid KV cache manager off for chunked-local attention
    # (Llama 4) and whenever KV transfer or KV events are configured (llm-d P/D, prefix routing).
    chunked_local_allowed = launch.env.get("VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE", "0") == "1"
    hybrid = not (launch.disable_hybrid_kv_cache_manager
                  or launch.kv_transfer_config is not None or launch.kv_events_config is not None
                  or (g.attention_chunk_size is not None and not chunked_local_allowed))
    return Settings(
        vllm_version=behaviour.version,
        tensor_parallel_size=tp,
        pipeline_parallel_size=pp,
        data_parallel_size=dp,
        data_parallel_size_local=dp_local,
        gpu_memory_utilization=util,
        max_model_len=max_len,
        max_model_len_auto=auto,
        block_size=block,
        kv_cache_dtype=kv_dtype,
        kv_cache_dtype_bytes=kv_bytes,
        dtype=dtype,
        dtype_bytes=dtype_b,
        quantization=launch.quantization,
        runtime_fp8=runtime_fp8,
        enforce_eager=bool(launch.enforce_eager),
        max_num_seqs=seqs,
        max_num_batched_tokens=mnbt,
        # vLLM tests the value for truth: 0 means "not set".
        kv_cache_memory_bytes=launch.kv_cache_memory_bytes or None,
        cpu_offload_gb=launch.cpu_offload_gb,
        enable_expert_parallel=bool(launch.enable_expert_parallel),
        disable_sliding_window=disable_sw,
        hybrid_kv_cache_manager=hybrid,
        num_gpu_blocks_override=launch.num_gpu_blocks_override,
        defaults_used=tuple(defaults),
        extensible_kv_cache=extensible,
        limit_mm_zero=bool(launch.skip_mm_profiling) or _all_modalities_zero(launch.limit_mm_per_prompt),
        distributed_executor_backend=launch.distributed_executor_backend,
        v0_engine=v0,
        flashinfer_sampler_env=(None if "VLLM_USE_FLASHINFER_SAMPLER" not in launch.env
                                else launch.env["VLLM_USE_FLASHINFER_SAMPLER"] not in ("0", "false", "False", "")),
        env_flags=tuple(sorted(k for k, v in launch.env.items() if k.startswith("VLLM_") and v in ("1", "true", "True"))),
    )


def _all_modalities_zero(text: Optional[str]) -> bool:
    """`--limit-mm-per-prompt '{"image": 0, "video": 0}'` (or the old `image=0,video=0` form)."""
    if not text:
        return False
    import json

    try:
        value = json.loads(text)
    except ValueError:
        pairs = [p.partition("=") for p in str(text).split(",") if p.strip()]
        value = {k.strip(): v.strip() for k, _, v in pairs}
    if not isinstance(value, dict) or not value:
        return False
    counts = []
    for item in value.values():
        if isinstance(item, dict):
            item = item.get("count", 1)
        try:
            counts.append(int(item))
        except (TypeError, ValueError):
            return False
    return all(c == 0 for c in counts)


# KV connectors that share the KV cache through legacy CUDA IPC or their own memory pool,
# which the extensible KV cache cannot serve (config/vllm.py _resolve_extensible_kv_cache).
_EXTENSIBLE_BLOCKING_CONNECTORS = ("LMCacheMPConnector", "custom_mem_pool")


def _extensible_kv_cache(launch: VllmLaunch, behaviour: VllmBehaviour, gpu: GpuSpec) -> bool:
    """Whether vLLM 0.34+ turns the extensible KV cache on (VllmConfig._resolve_extensible_kv_cache):
    on CUDA and ROCm unless --kv-cache-memory-bytes, --num-gpu-blocks-override, elastic EP or a
    connector that needs its own pool or legacy IPC overrides it, or it is turned off."""
    if not behaviour.extensible_kv_cache or gpu.vendor not in ("nvidia", "amd"):
        return False
    if launch.enable_extensible_kv_cache is False:
        return False
    if launch.kv_cache_memory_bytes or launch.num_gpu_blocks_override is not None:
        return False
    if launch.kv_transfer_config and any(c in launch.kv_transfer_config for c in _EXTENSIBLE_BLOCKING_CONNECTORS):
        return False
    return True
