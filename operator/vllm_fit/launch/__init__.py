"""Reading vLLM launches: argv, shell scripts, Kubernetes objects, GPUs. Pure: no I/O."""

from .argv import UnresolvedValue, parse_vllm_args
from .find import FoundLaunch, find_launches
from .images import DEFAULT_VLLM_IMAGES, vllm_version_from_image
from .model import GpuRequest, VllmLaunch

__all__ = ["DEFAULT_VLLM_IMAGES", "FoundLaunch", "GpuRequest", "UnresolvedValue", "VllmLaunch", "find_launches",
           "parse_vllm_args", "vllm_version_from_image"]
