"""Read what vLLM itself reports: startup logs, VLLM_ENABLE_STARTUP_PLAN files and /metrics.

Pure functions over text; the CLI (`vllm-fit logs`, `vllm-fit verify`) and the in-cluster
observer are the adapters that fetch the text.
"""

from .model import MemoryFigures, RankFigures, StartupFailure, StartupLog, StartupPlanEvent
from .reader import read_startup_log

__all__ = ["MemoryFigures", "RankFigures", "StartupFailure", "StartupLog", "StartupPlanEvent", "read_startup_log"]
