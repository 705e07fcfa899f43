"""Reading vLLM launches: argv, shell scripts, Kubernetes objects, GPUs. Pure: no I/O."""

from .argv import UnresolvedValue, parse_vllm_args
from .find import DEFAULT_VLLM_IMAGES, FoundLaunch, find_launches, vllm_version_from_image
from .model import GpuRequest, VllmLaunch

__all__ = ["DEFAULT_VLLM_IMAGES", "FoundLaunch", "GpuRequest", "UnresolvedValue", "VllmLaunch", "find_launches",
           "parse_vllm_args", "vllm_version_from_image"]
