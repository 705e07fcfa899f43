#!/usr/bin/env python3
"""Generate profiles/vllm-flags.yaml: the options `vllm serve` accepts, per vLLM release.

Reads each release's own argument definitions with `ast` (vLLM is never imported):
- every option string given to `add_argument(...)` in `vllm/engine/arg_utils.py`
  (`EngineArgs.add_cli_args`, `AsyncEngineArgs.add_cli_args`), in the OpenAI server's
  `make_arg_parser` / `FrontendArgs.add_cli_args` (`vllm/entrypoints/openai/cli_args.py`, from
  0.3x `vllm/entrypoints/common/cli_args.py`) and in the `serve` subcommand
  (`vllm/entrypoints/cli/serve.py`);
- the fields of the `FrontendArgs` dataclass (and its bases), which vLLM turns into
  `--field-name` options in a loop;
- how each option is spelled on the command line: `bool` (argparse.BooleanOptionalAction:
  `--x` and `--no-x`), `switch` (store_true/store_false), `many` (nargs "+"/"*"), `optional`
  (nargs "?"), else `value`. For options built from a config dataclass field
  (`**model_kwargs["enforce_eager"]`, vLLM's get_kwargs) the field's annotation decides, as
  get_kwargs does.

Usage (adding a release is one command; the other releases already in the table are kept):
    python scripts/gen_vllm_flags.py 0.35.0                  # pip download --no-deps the wheel
    python scripts/gen_vllm_flags.py --src /work/vllm-src 0.11.0 0.11.1 ...   # unpacked sources
    python scripts/gen_vllm_flags.py --src /work/vllm-src --all                # every <version>/ in DIR

`--src DIR` reads `DIR/<version>/vllm/...` instead of downloading. The table stores, for each
option, the ranges of covered releases it exists in (`first..last`), so it stays small.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Optional

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "profiles" / "vllm-flags.yaml"

# Files that define the serve options. The frontend's file moved between releases
# (entrypoints/openai/cli_args.py, entrypoints/launchers/cli_args.py, entrypoints/common/cli_args.py):
# it is found as the entrypoints module that defines FrontendArgs or make_arg_parser.
ENGINE_FILES = ("vllm/engine/arg_utils.py",)
SERVE_FILES = ("vllm/entrypoints/cli/serve.py",)
_FRONTEND_MARKERS = ("class FrontendArgs", "def make_arg_parser(")
KINDS = ("value", "bool", "switch", "many", "optional")

Reader = Callable[[str], Optional[str]]


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:4])


# ---------------------------------------------------------------- reading one release

def _annotation_kind(annotation: str) -> str:
    """What vLLM's get_kwargs makes of a field with this annotation."""
    text = annotation.replace(" ", "")
    names = set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", text))
    if "bool" in names:
        return "optional" if "str" in names else "bool"
    if names & {"list", "List", "tuple", "Tuple", "set", "Set"}:
        return "many"
    return "value"


def _class_fields(tree: ast.Module) -> dict[str, tuple[list[str], dict[str, str]]]:
    """class name -> (base names, {field: annotation}) for every class in a module."""
    out: dict[str, tuple[list[str], dict[str, str]]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            fields: dict[str, str] = {}
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    if not item.target.id.startswith("_") and "ClassVar" not in ast.unparse(item.annotation):
                        fields[item.target.id] = ast.unparse(item.annotation)
            bases = [ast.unparse(b).split(".")[-1] for b in node.bases]
            out[node.name] = (bases, fields)
    return out


def _all_fields(classes: dict[str, tuple[list[str], dict[str, str]]], name: str, depth: int = 0) -> dict[str, str]:
    if name not in classes or depth > 8:
        return {}
    bases, fields = classes[name]
    merged: dict[str, str] = {}
    for base in bases:
        merged.update(_all_fields(classes, base, depth + 1))
    merged.update(fields)
    return merged


def _explicit_kind(call: ast.Call) -> Optional[str]:
    for kw in call.keywords:
        if kw.arg == "action":
            text = ast.unparse(kw.value)
            if "BooleanOptionalAction" in text:
                return "bool"
            if text.strip("'\"") in ("store_true", "store_false"):
                return "switch"
            if text.strip("'\"") in ("store_const", "count"):
                return "switch"
        if kw.arg == "nargs":
            text = ast.unparse(kw.value).strip("'\"")
            if text in ("+", "*"):
                return "many"
            if text == "?":
                return "optional"
    return None


def _unpacked(call: ast.Call) -> list[ast.AST]:
    """The `**x` arguments of a call, also inside a dict display: `**{**x, "default": None}`."""
    out: list[ast.AST] = []
    stack = [kw.value for kw in call.keywords if kw.arg is None]
    while stack:
        value = stack.pop()
        if isinstance(value, ast.Dict):
            stack.extend(v for k, v in zip(value.keys, value.values) if k is None)
        else:
            out.append(value)
    return out


def _kwargs_field(call: ast.Call, kwargs_vars: dict[str, tuple[str, Optional[str]]]) -> Optional[tuple[str, str]]:
    """(config class, field) for `add_argument(..., **model_kwargs["field"])`."""
    for value in _unpacked(call):
        if isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name):
            key = value.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str) and value.value.id in kwargs_vars:
                return kwargs_vars[value.value.id][0], key.value
        if isinstance(value, ast.Name) and value.id in kwargs_vars and kwargs_vars[value.id][1]:
            cls, field = kwargs_vars[value.id]
            return cls, field or ""
    return None


def _get_kwargs_target(value: ast.AST) -> Optional[tuple[str, Optional[str]]]:
    """`get_kwargs(Cls)` -> (Cls, None); `get_kwargs(Cls)["field"]` -> (Cls, field)."""
    field = None
    if isinstance(value, ast.Subscript) and isinstance(value.slice, ast.Constant):
        field = value.slice.value if isinstance(value.slice.value, str) else None
        value = value.value
    if isinstance(value, ast.Call) and ast.unparse(value.func).split(".")[-1] == "get_kwargs" and value.args:
        return ast.unparse(value.args[0]).split(".")[-1], field
    return None


def _options_in(tree: ast.Module, config_fields: dict[str, dict[str, str]], frontend_fields: dict[str, str]
                ) -> dict[str, str]:
    """option string -> kind, for every add_argument call in one module."""
    kwargs_vars: dict[str, tuple[str, Optional[str]]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target = _get_kwargs_target(node.value)
            if target is not None:
                kwargs_vars[node.targets[0].id] = target
    extra_flags: list[str] = []  # `"flags": ["-x"]` entries popped into add_argument(*extra_flags, ...)
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "flags" and isinstance(value, (ast.List, ast.Tuple)):
                    extra_flags += [e.value for e in value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript):
            sub = node.targets[0]
            if isinstance(sub.slice, ast.Constant) and sub.slice.value == "flags" and isinstance(node.value, (ast.List, ast.Tuple)):
                extra_flags += [e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"):
            continue
        literal = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
                   and a.value.startswith("-")]
        generated = any(isinstance(a, ast.JoinedStr) for a in node.args)
        kind = _explicit_kind(node)
        if kind is None:
            source = _kwargs_field(node, kwargs_vars)
            annotation = config_fields.get(source[0], {}).get(source[1]) if source is not None else None
            if annotation is None and _unpacked(node):
                # kwargs built some other way: the config field the option is named after, in the
                # classes this module takes get_kwargs from
                field = next((o.lstrip("-").replace("-", "_") for o in literal if o.startswith("--")), None)
                annotation = next((config_fields.get(cls, {}).get(field) for cls, _ in kwargs_vars.values()
                                   if field in config_fields.get(cls, {})), None)
            if annotation:
                kind = _annotation_kind(annotation)
        for option in literal:
            out[option] = kind or "value"
        if generated:  # for key, value in get_kwargs(FrontendArgs).items(): add_argument(f"--{key...}")
            for field, annotation in frontend_fields.items():
                out["--" + field.replace("_", "-")] = _annotation_kind(annotation)
            for option in extra_flags:
                if option.startswith("-"):
                    out.setdefault(option, "value")
    return out


def _parse(text: Optional[str], where: str) -> Optional[ast.Module]:
    if text is None:
        return None
    try:
        return ast.parse(text)
    except SyntaxError as exc:
        raise SystemExit(f"{where}: cannot parse: {exc}") from None


def release_options(read: Reader, version: str) -> dict[str, str]:
    """Every option string of `vllm serve` in one release, with its kind."""
    config_fields: dict[str, dict[str, str]] = {}
    names = read.list()  # type: ignore[attr-defined]
    config_names = [name for name in names if re.match(r"^vllm/(config/[^/]+|config)\.py$", name)]
    frontend_files: list[str] = []
    for name in names:
        if name.startswith("vllm/entrypoints/") and "run_batch" not in name and name not in SERVE_FILES:
            text = read(name) or ""
            if any(marker in text for marker in _FRONTEND_MARKERS) or "FrontendArgs:" in text:
                frontend_files.append(name)
    trees: dict[str, ast.Module] = {}
    for name in (*config_names, *ENGINE_FILES, *frontend_files, *SERVE_FILES):
        tree = _parse(read(name), f"vLLM {version} {name}")
        if tree is not None:
            trees[name] = tree
    classes: dict[str, tuple[list[str], dict[str, str]]] = {}
    for tree in trees.values():
        classes.update(_class_fields(tree))
    for name in classes:
        config_fields[name] = _all_fields(classes, name)
    frontend_fields = _all_fields(classes, "FrontendArgs")
    if ENGINE_FILES[0] not in trees:
        raise SystemExit(f"vLLM {version}: {ENGINE_FILES[0]} not found")
    options: dict[str, str] = {}
    for name in (*ENGINE_FILES, *frontend_files, *SERVE_FILES):
        if name in trees and (name in ENGINE_FILES or name in SERVE_FILES
                              or any(m in (read(name) or "") for m in _FRONTEND_MARKERS)):
            for option, kind in _options_in(trees[name], config_fields, frontend_fields).items():
                options.setdefault(option, kind)
    if "--tensor-parallel-size" not in options or "--port" not in options:
        raise SystemExit(f"vLLM {version}: found no --tensor-parallel-size/--port; the source layout changed")
    return options


class DirReader:
    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, name: str) -> Optional[str]:
        path = self.root / name
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def list(self) -> list[str]:
        base = self.root / "vllm"
        return [str(p.relative_to(self.root)) for p in base.rglob("*.py")] if base.is_dir() else []


class WheelReader:
    def __init__(self, wheel: Path) -> None:
        self.zip = zipfile.ZipFile(wheel)
        self.names = set(self.zip.namelist())

    def __call__(self, name: str) -> Optional[str]:
        return self.zip.read(name).decode("utf-8") if name in self.names else None

    def list(self) -> list[str]:
        return sorted(n for n in self.names if n.endswith(".py"))


def download_wheel(version: str, into: Path) -> Path:
    """`pip download --no-deps vllm==VERSION` (any platform wheel; only its .py files are read)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--only-binary=:all:",
           "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
           "--platform", "manylinux_2_31_x86_64", "--platform", "manylinux_2_35_x86_64",
           "--python-version", "3.12", "--implementation", "cp", "-d", str(into), f"vllm=={version}"]
    subprocess.run(cmd, check=True)
    wheels = sorted(into.glob(f"vllm-{version}-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download gave no wheel for vllm=={version}")
    return wheels[0]


# ---------------------------------------------------------------- the table

def load_table(path: Path) -> tuple[list[str], dict[str, set[str]], dict[str, str]]:
    """(versions, version -> options, option -> kind) from an existing table."""
    if not path.exists():
        return [], {}, {}
    import yaml  # the project depends on PyYAML

    data = yaml.safe_load(path.read_text()) or {}
    versions = [str(v) for v in data.get("versions", [])]
    per_version: dict[str, set[str]] = {v: set() for v in versions}
    kinds: dict[str, str] = {}
    for option, entry in (data.get("options") or {}).items():
        kind, ranges = entry.split(" ", 1) if " " in entry else ("value", entry)
        kinds[option] = kind
        for part in ranges.split(","):
            first, _, last = part.strip().partition("..")
            last = last or first
            inside = False
            for v in versions:
                if v == first:
                    inside = True
                if inside:
                    per_version[v].add(option)
                if v == last:
                    inside = False
    return versions, per_version, kinds


def _ranges(versions: list[str], present: set[str]) -> str:
    parts: list[str] = []
    start: Optional[str] = None
    previous: Optional[str] = None
    for v in versions:
        if v in present and start is None:
            start = v
        if v not in present and start is not None:
            parts.append(start if start == previous else f"{start}..{previous}")
            start = None
        previous = v
    if start is not None:
        parts.append(start if start == previous else f"{start}..{previous}")
    return ",".join(parts)


def write_table(path: Path, versions: list[str], per_version: dict[str, set[str]], kinds: dict[str, str]) -> None:
    versions = sorted(versions, key=version_key)
    options = sorted({o for v in versions for o in per_version[v]}, key=lambda o: (o.lstrip("-"), o))
    lines = [
        "# GENERATED by scripts/gen_vllm_flags.py from the released vLLM wheels; do not edit by hand.",
        "# Add a release: python scripts/gen_vllm_flags.py X.Y.Z",
        "#",
        "# The options `vllm serve` accepts (EngineArgs/AsyncEngineArgs, the OpenAI server's frontend",
        "# arguments and the serve subcommand), read from each release's source with ast.",
        "# options: <option>: \"<kind> <first>..<last>[,<first>..<last>]\" over the releases listed in",
        "# `versions` (a flag that left and came back has several ranges). kind: value (takes a value),",
        "# bool (--x and --no-x), switch (--x only), many (nargs +), optional (nargs ?).",
        "versions: [" + ", ".join(f'"{v}"' for v in versions) + "]",
        "options:",
    ]
    for option in options:
        present = {v for v in versions if option in per_version[v]}
        lines.append(f'  "{option}": "{kinds.get(option, "value")} {_ranges(versions, present)}"')
    path.write_text("\n".join(lines) + "\n")


def main(argv: Optional[Iterable[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("versions", nargs="*", help="vLLM releases to (re)read, e.g. 0.35.0")
    parser.add_argument("--src", type=Path, help="read DIR/<version>/vllm/... instead of downloading wheels")
    parser.add_argument("--all", action="store_true", help="with --src: every <version>/ directory in DIR")
    parser.add_argument("--min-version", default="0.11.0", help="with --all: the oldest release to include")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"table to update (default {DEFAULT_OUT})")
    args = parser.parse_args(list(argv) if argv is not None else None)
    wanted = list(args.versions)
    if args.all:
        if args.src is None:
            parser.error("--all needs --src")
        wanted += [p.name for p in args.src.iterdir()
                   if p.is_dir() and re.fullmatch(r"\d+\.\d+\.\d+(\.\d+)?", p.name)
                   and version_key(p.name) >= version_key(args.min_version) and (p / "vllm").is_dir()]
    if not wanted:
        parser.error("name the releases to read (or --src DIR --all)")
    versions, per_version, kinds = load_table(args.out)
    for version in sorted(set(wanted), key=version_key):
        if args.src is not None:
            root = args.src / version
            if not (root / "vllm").is_dir():
                raise SystemExit(f"{root}/vllm does not exist")
            options = release_options(DirReader(root), version)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                options = release_options(WheelReader(download_wheel(version, Path(tmp))), version)
        per_version[version] = set(options)
        for option, kind in options.items():
            if version not in versions or all(version_key(version) >= version_key(v) for v in versions if option in per_version.get(v, ())):
                kinds[option] = kind  # the newest release's spelling wins
            kinds.setdefault(option, kind)
        if version not in versions:
            versions.append(version)
        print(f"vLLM {version}: {len(options)} options", file=sys.stderr)
    write_table(args.out, versions, per_version, kinds)
    print(f"wrote {args.out} ({len(versions)} releases)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
