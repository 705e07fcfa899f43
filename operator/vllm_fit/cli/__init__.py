"""The `vllm-fit` command: plan, check, serve, models.

Exit codes: 0 fits, 1 vLLM would fail (or something was rejected), 2 bad input.
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional, Sequence

EXIT_FITS, EXIT_REJECTED, EXIT_BAD_INPUT = 0, 1, 2

# subcommand -> module in this package exposing `main(argv) -> int`
COMMANDS = {
    "plan": ("plan", "predict vLLM's startup memory for a model and GPU, and what would fit"),
    "check": ("check", "check every vLLM launch in Kubernetes manifests (for CI)"),
    "serve": ("serve", "run the admission webhook"),
    "models": ("models", "list or fetch model metadata bundles"),
    "logs": ("logs", "read a vLLM startup log and compare it with the plan for the same launch"),
    "verify": ("verify", "compare a running vLLM's /metrics (KV cache blocks, usage) with the plan"),
}

USAGE = "usage: vllm-fit {" + ",".join(COMMANDS) + "} ...\n\n" + "\n".join(
    f"  {name:<8}{help_text}" for name, (_, help_text) in COMMANDS.items()
) + "\n\nRun `vllm-fit COMMAND --help` for a command's options.\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return EXIT_FITS if args else EXIT_BAD_INPUT
    if args[0] in ("--version", "-V"):
        from .. import __version__

        print(f"vllm-fit {__version__}")
        return EXIT_FITS
    command = args[0]
    if command not in COMMANDS:
        sys.stderr.write(f"vllm-fit: unknown command {command!r}\n\n{USAGE}")
        return EXIT_BAD_INPUT
    try:
        module = importlib.import_module(f".{COMMANDS[command][0]}", __name__)
    except ModuleNotFoundError as exc:
        sys.stderr.write(f"vllm-fit {command}: not available in this installation ({exc.name} is missing)\n")
        return EXIT_BAD_INPUT
    return int(module.main(args[1:]))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
