"""vllm-fit: predict whether a `vllm serve` launch fits its GPUs.

Data flow: manifest -> launch.VllmLaunch -> memory.MemoryPlan -> memory.Verdict -> admission response.
"""

__version__ = "0.1.0"
