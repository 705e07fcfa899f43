"""Commands that start vLLM's OpenAI server: `vllm serve`, `python -m vllm.entrypoints.openai.api_server`,
through wrappers (exec, env, numactl, uv run, ...) and `sh -c` scripts. Pure: words in, argv out.
"""

from __future__ import annotations

import posixpath
import re
from typing import Iterable, Optional, Sequence

from .argv import Entrypoint, UnresolvedValue
from .shell import split_script

_MAX_NESTING = 4
_PYTHON = re.compile(r"^python(?:\d+(?:\.\d+)?)?$")
_SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh"})
_API_SERVER = "vllm.entrypoints.openai.api_server"
# Modules that run vLLM's engine from the same engine flags and take no positional model: the
# OpenAI server, and vLLM's demo server (vllm/entrypoints/api_server.py: AsyncEngineArgs.add_cli_args),
# which vLLM's own KServe docs, GKE and Cloud Run tutorials (Vertex AI's pytorch-vllm-serve) launch.
_API_SERVERS = frozenset({_API_SERVER, "vllm.entrypoints.api_server"})


def _basename(word: str) -> str:
    return posixpath.basename(str(word))


_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)


class _Options:
    """How a wrapper's own options are spelled: short letters and long names that take a value,
    and how many operands come before the wrapped command (taskset's CPU mask, gosu's user)."""

    def __init__(self, short: str = "", long: Iterable[str] = (), operands: int = 0) -> None:
        self.short = frozenset(short)
        self.long = frozenset(long)
        self.operands = operands

    def skip_one(self, words: Sequence[str], i: int) -> int:
        """Index after the option word at `i` and its value, when it takes one (`-c 0-3`, not `-oL`)."""
        w = str(words[i])
        if w.startswith("--"):
            return i + (2 if "=" not in w and w in self.long else 1)
        for k, letter in enumerate(w[1:]):
            if letter in self.short:
                return i + (2 if k == len(w) - 2 else 1)
        return i + 1

    def skip(self, words: Sequence[str], i: int) -> int:
        """Index of the wrapped command, given `i` just past the wrapper's name."""
        while i < len(words):
            w = str(words[i])
            if w == "--":
                i += 1
                break
            if not (w.startswith("-") and len(w) > 1):
                break
            i = self.skip_one(words, i)
        return i + self.operands


_WRAPPER_OPTIONS: dict[str, _Options] = {
    "exec": _Options("a"),
    "nohup": _Options(),
    "time": _Options("fo", ("--format", "--output")),
    "command": _Options(),
    "stdbuf": _Options("ioe", ("--input", "--output", "--error")),
    "setsid": _Options(),
    "nice": _Options("n", ("--adjustment",)),
    "tini": _Options("pe"),
    "dumb-init": _Options("r", ("--rewrite",)),
    "taskset": _Options("", (), operands=1),  # `taskset [-a] [-c] MASK-OR-LIST cmd`
    "numactl": _Options("NmCipPw", ("--cpunodebind", "--membind", "--physcpubind", "--interleave",
                                    "--preferred", "--preferred-many", "--weighted-interleave")),
    "gosu": _Options("", (), operands=1),
    "su-exec": _Options("", (), operands=1),
    "env": _Options("uCS", ("--unset", "--chdir", "--split-string")),
}

# `uv run` / `uv tool run` / `uvx` options that take a value (the others are flags).
_UV_OPTIONS = _Options("pifPCcbw", (
    "--with", "--with-editable", "--with-requirements", "--with-executables-from", "--python", "--extra",
    "--no-extra", "--group", "--no-group", "--only-group", "--package", "--env-file", "--index",
    "--default-index", "--index-url", "--extra-index-url", "--find-links", "--directory", "--project",
    "--config-file", "--cache-dir", "--index-strategy", "--keyring-provider", "--resolution", "--prerelease",
    "--exclude-newer", "--exclude-newer-package", "--link-mode", "--refresh-package", "--reinstall-package",
    "--upgrade-package", "--no-binary-package", "--no-build-package", "--no-build-isolation-package",
    "--no-sources-package", "--config-setting", "--config-settings-package", "--color", "--python-platform",
    "--allow-insecure-host", "--from", "--constraints", "--overrides", "--build-constraints",
    "--torch-backend", "--no-install-package",
))

# Shell options that take a value: `-o pipefail`, `+o posix`, `-O extglob` (bash), `--rcfile F`.
_SHELL_VALUE_LETTERS = frozenset("oO")
_SHELL_VALUE_LONG = frozenset({"--rcfile", "--init-file"})


def _shell_script_index(words: Sequence[str]) -> Optional[int]:
    """Index of the `-c` script in `sh [options] -c [options] SCRIPT`, or None without `-c`.

    Options may be clustered (`-lc`, `-euxo pipefail`) and come before or after `-c`; the script
    is the first operand after them (POSIX `sh -c command_string`).
    """
    j, has_c = 1, False
    while j < len(words):
        w = str(words[j])
        if w in ("--", "-"):
            j += 1
            break
        if w.startswith("--"):
            j += 2 if w in _SHELL_VALUE_LONG else 1
        elif len(w) > 1 and w[0] in "-+":
            letters = w[1:]
            has_c = has_c or (w[0] == "-" and "c" in letters)
            j += 1 + sum(1 for ch in letters if ch in _SHELL_VALUE_LETTERS)
        else:
            break
    return j if has_c and j < len(words) else None


def _uv_command(words: list[str], i: int) -> Optional[list[str]]:
    """The command `uv [global options] run|tool run [options] CMD` (or `uvx ...`) runs, from
    `i` just past `uv`/`uvx`; `-m/--module M` becomes `python -m M`. None for other uv commands."""
    if _basename(words[i - 1]) == "uv":
        i = _UV_OPTIONS.skip(words, i)
        if i < len(words) and words[i] == "run":
            i += 1
        elif i + 1 < len(words) and words[i] == "tool" and words[i + 1] == "run":
            i += 2
        else:
            return None
    # The run options, with `-m/--module` (a flag that makes the command a module) spotted first.
    j = i
    while j < len(words) and str(words[j]).startswith("-") and words[j] != "--":
        w = str(words[j])
        if w in ("-m", "--module"):
            return ["python", "-m", *words[j + 1:]]
        j = _UV_OPTIONS.skip_one(words, j)
    if j < len(words) and words[j] == "--":
        j += 1
    return words[j:]


def vllm_command(words: Sequence[str], variables: dict[str, Optional[str]], depth: int = 0
                 ) -> Optional[tuple[Entrypoint, list[str], dict[str, Optional[str]]]]:
    """(entrypoint, vLLM argv, environment the command line sets) when it starts vLLM's server.

    The environment is what a shell script exported for the command (`Command.env`) plus
    `A=1 cmd` prefixes and `env A=1 cmd` assignments.
    """
    env: dict[str, Optional[str]] = dict(getattr(words, "env", None) or {})
    words = list(words)
    i = 0
    # Wrappers and env assignments: exec, nohup, env A=1, numactl ..., uv run ..., A=1 cmd.
    while i < len(words):
        w = _basename(words[i])
        m = _ASSIGNMENT.match(str(words[i]))
        if w == "env":
            i += 1
            while i < len(words):
                m = _ASSIGNMENT.match(str(words[i]))
                if m:
                    env[m.group(1)] = None if isinstance(words[i], UnresolvedValue) else m.group(2)
                    i += 1
                elif str(words[i]).startswith("-"):
                    i = _WRAPPER_OPTIONS["env"].skip_one(words, i)
                else:
                    break
        elif w in _WRAPPER_OPTIONS:
            i = _WRAPPER_OPTIONS[w].skip(words, i + 1)
        elif w in ("uv", "uvx") and not isinstance(words[i], UnresolvedValue):
            rest = _uv_command(words, i + 1)
            if rest is None:
                return None
            words, i = rest, 0
            if w == "uvx" and words and str(words[0]).startswith("vllm@"):
                words[0] = "vllm"  # `uvx vllm@0.11.0 serve ...`
        elif m:
            env[m.group(1)] = None if isinstance(words[i], UnresolvedValue) else m.group(2)
            i += 1
        else:
            break
    words = words[i:]
    if not words:
        return None
    head = _basename(words[0])
    if isinstance(words[0], UnresolvedValue):
        return None
    if head == "vllm":
        if len(words) > 1 and words[1] == "serve":
            return "serve", words[2:], env
        return None
    if _PYTHON.match(head):
        j = 1
        while j < len(words):
            w = words[j]
            if w == "-m" and j + 1 < len(words):
                module = words[j + 1]
                if module in _API_SERVERS:
                    return "api_server", words[j + 2:], env
                if module in ("vllm.entrypoints.cli.main", "vllm") and j + 2 < len(words) and words[j + 2] == "serve":
                    return "serve", words[j + 3:], env
                return None
            if w.startswith("-m") and len(w) > 2:  # -mvllm.entrypoints...
                return ("api_server", words[j + 1:], env) if w[2:] in _API_SERVERS else None
            if not w.startswith("-") or w == "-c":
                return None  # a script or -c code: not a module launch
            j += 1
        return None
    if head in _SHELLS and depth < _MAX_NESTING:
        j = _shell_script_index(words)
        if j is None:
            return None
        found = _from_script(words[j], variables, depth + 1)
        return (found[0], found[1], {**env, **found[2]}) if found else None
    return None


def _from_script(script: str, variables: dict[str, Optional[str]], depth: int
                 ) -> Optional[tuple[Entrypoint, list[str], dict[str, Optional[str]]]]:
    if "vllm" not in script:
        return None
    first = None
    for command in split_script(script, variables):
        found = vllm_command(command, variables, depth)
        if found is None:
            continue
        # A script that starts the API server on one pod and `--headless` engine ranks on the others
        # (`if [ $LWS_WORKER_INDEX -eq 0 ]; then vllm serve ...; else vllm serve ... --headless`):
        # the launch is the API server's.
        if not any(str(word) == "--headless" for word in found[1]):
            return found
        first = first or found
    return first
