"""The `vllm-fit` command: plan, check, serve, models, gpus.

Exit codes: 0 fits (or done), 1 vLLM would fail (or something was rejected), 2 bad input or
usage (including a missing dependency or missing cluster credentials), 3 vllm-fit itself could
not run (an unreachable API server, an internal error). A reader that goes away early
(`vllm-fit ... | head -1`) ends the command quietly with 141, as a tool killed by SIGPIPE would.

Every subcommand runs inside `main`, which turns what escapes it into one line on stderr:
a subcommand added later gets the same treatment without doing anything.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Optional, Sequence

from ..errors import VllmFitError

EXIT_FITS, EXIT_REJECTED, EXIT_BAD_INPUT, EXIT_FAILED = 0, 1, 2, 3
EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE

# subcommand -> module in this package exposing `main(argv) -> int`
COMMANDS = {
    "plan": ("plan", "predict vLLM's startup memory for a model and GPU, and what would fit"),
    "check": ("check", "check every vLLM launch in Kubernetes manifests (for CI)"),
    "serve": ("serve", "run the admission webhook"),
    "models": ("models", "list or fetch model metadata bundles"),
    "logs": ("logs", "read a vLLM startup log and compare it with the plan for the same launch"),
    "verify": ("verify", "compare a running vLLM's /metrics (KV cache blocks, usage) with the plan"),
    "gpus": ("gpus", "list the GPU catalog: names, aliases, total memory and where each figure comes from"),
}


def usage() -> str:
    return "usage: vllm-fit {" + ",".join(COMMANDS) + "} ...\n\n" + "\n".join(
        f"  {name:<8}{help_text}" for name, (_, help_text) in COMMANDS.items()
    ) + ("\n\nRun `vllm-fit COMMAND --help` for a command's options.\n"
         "Exit status: 0 fits, 1 vLLM would fail (or a launch was rejected), 2 bad input or usage, "
         "3 vllm-fit could not run.\n")


# Import names whose distribution is spelled differently (the rest match after normalising).
_DISTRIBUTION_OF = {"yaml": "PyYAML"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def missing_dependency_message(module: str) -> str:
    """What to install for a missing import, from this installation's own requirements."""
    top = module.split(".")[0]
    wanted = _normalise(_DISTRIBUTION_OF.get(top, top))
    extra = None
    try:
        from importlib.metadata import PackageNotFoundError, requires

        for requirement in requires("vllm-fit") or ():
            name = re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0]
            if _normalise(name) != wanted:
                continue
            marker = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", requirement)
            extra = marker.group(1) if marker else ""
            break
    except (ImportError, PackageNotFoundError):
        pass
    distribution = _DISTRIBUTION_OF.get(top, top)
    if extra:
        fix = f"pip install 'vllm-fit[{extra}]'"
    elif extra == "":  # a dependency of vllm-fit itself: the installation is incomplete
        fix = f"reinstall vllm-fit with its dependencies: pip install vllm-fit, or pip install {distribution}"
    else:
        fix = f"pip install {distribution}"
    return f"needs the Python package {top!r}, which is not installed ({fix})"


def _write_line(stream, text: str) -> None:  # noqa: ANN001
    try:
        stream.write(text.rstrip("\n") + "\n")
        stream.flush()
    except (BrokenPipeError, ValueError, OSError):
        pass  # nobody is listening any more; there is no one to tell


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _is_ours(module: Optional[str]) -> bool:
    return bool(module) and module.split(".")[0] == "vllm_fit"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else ""
    prog = f"vllm-fit {command}" if command in COMMANDS else "vllm-fit"
    try:
        status = _dispatch(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the guard, not at interpreter exit
        return status
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        _write_line(sys.stderr, f"{prog}: interrupted")
        return 130
    except ModuleNotFoundError as exc:
        if _is_ours(exc.name) or not exc.name:
            return _internal_error(prog, exc)
        _write_line(sys.stderr, f"{prog}: {missing_dependency_message(exc.name)}")
        return EXIT_BAD_INPUT
    except VllmFitError as exc:  # bad input a subcommand let through
        _write_line(sys.stderr, f"{prog}: {_one_line(str(exc))}")
        return EXIT_BAD_INPUT
    except SystemExit as exc:  # argparse and friends
        return exc.code if isinstance(exc.code, int) else (EXIT_FITS if exc.code is None else EXIT_BAD_INPUT)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        return _internal_error(prog, exc)


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "failed"


def _internal_error(prog: str, exc: BaseException) -> int:
    if os.environ.get("VLLM_FIT_DEBUG"):
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    _write_line(sys.stderr, f"{prog}: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
                            f"(VLLM_FIT_DEBUG=1 shows the traceback; please report it)")
    return EXIT_FAILED


def _dispatch(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(usage())
        return EXIT_FITS if args else EXIT_BAD_INPUT
    if args[0] in ("--version", "-V"):
        from .. import __version__

        print(f"vllm-fit {__version__}")
        return EXIT_FITS
    command = args[0]
    if command not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(command, list(COMMANDS), n=1)
        maybe = f"did you mean {close[0]}? " if close else ""
        sys.stderr.write(f"vllm-fit: unknown command {command!r}; {maybe}commands: {', '.join(COMMANDS)} "
                         f"(vllm-fit --help)\n")
        return EXIT_BAD_INPUT
    module = importlib.import_module(f".{COMMANDS[command][0]}", __name__)
    return int(module.main(args[1:]))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
