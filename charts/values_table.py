#!/usr/bin/env python3
"""Generate the values table of a chart's README.md from the comments in its values.yaml.

    python charts/values_table.py charts/vllm-fit           rewrite the table in README.md
    python charts/values_table.py charts/vllm-fit --check   exit 1 (with a diff) if it is stale

A key is documented by the comment block right above it when the block starts with `# -- `
(the convention of cert-manager's and Kyverno's charts); the block's later `#` lines continue the
text, and lines indented further (`#   - name: x`) are kept as example lines. Every key gets a row:
the documented ones with their text, the keys inside a documented mapping (a securityContext, the
resources) only through the parent's default. A leaf that neither it nor a parent documents is an
error, so the table can never silently miss a value.

The table goes between `<!-- values-table:start -->` and `<!-- values-table:end -->` in the
README. Types come from values.schema.json where it states them, else from the default.
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-]+|\"[^\"]+\"|'[^']+')\s*:(?:\s|$)")
_COMMENT = re.compile(r"^(?P<indent> *)#(?P<text>.*)$")
MAX_ENUM_LISTED = 8


class ValuesDocError(ValueError):
    """values.yaml cannot be turned into a table (an undocumented value, a missing marker)."""


@dataclass(frozen=True)
class Row:
    path: str
    type_name: str
    default: str
    description: str


@dataclass
class _Doc:
    lines: list[str]
    examples: list[str]


def _comment_doc(block: list[str]) -> Optional[_Doc]:
    """The description of a comment block that starts with `-- `, else None."""
    if not block or not block[0].startswith(" -- "):
        return None
    lines = [block[0][len(" -- "):].strip()]
    examples: list[str] = []
    for text in block[1:]:
        if text.startswith("   ") and text.strip():  # `#   - model: x`: an example line
            examples.append(text[1:].rstrip())
        elif text.strip():
            lines.append(text.strip())
    return _Doc(lines=lines, examples=examples)


def documented_paths(values_text: str) -> dict[tuple[str, ...], _Doc]:
    """Key path -> the `# --` comment right above it, for every documented key of values.yaml."""
    docs: dict[tuple[str, ...], _Doc] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    block: list[str] = []
    block_indent: Optional[int] = None
    in_literal: Optional[int] = None  # indent of a key whose value is a block scalar (| or >)
    for raw in values_text.splitlines():
        if not raw.strip():
            block, block_indent = [], None
            continue
        if in_literal is not None:
            if len(raw) - len(raw.lstrip(" ")) > in_literal:
                continue
            in_literal = None
        comment = _COMMENT.match(raw)
        if comment:
            indent = len(comment.group("indent"))
            if block and block_indent != indent:
                block = []
            block_indent = indent
            block.append(comment.group("text"))
            continue
        key = _KEY.match(raw)
        if not key:  # a list item or a flow continuation: belongs to the key above
            block, block_indent = [], None
            continue
        indent = len(key.group("indent"))
        name = key.group("key").strip("\"'")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = tuple(k for _, k in stack) + (name,)
        doc = _comment_doc(block) if block_indent == indent else None
        if doc:
            docs[path] = doc
        rest = raw[key.end():].split(" #", 1)[0].strip()
        if rest in ("|", ">", "|-", ">-", "|+", ">+"):
            in_literal = indent
        stack.append((indent, name))
        block, block_indent = [], None
    return docs


def _schema_type(schema: dict[str, Any], path: tuple[str, ...]) -> Optional[str]:
    node: Any = schema
    for key in path:
        props = node.get("properties") if isinstance(node, dict) else None
        if not isinstance(props, dict) or key not in props:
            return None
        node = props[key]
    if not isinstance(node, dict):
        return None
    kinds = _types(node)
    for branch in node.get("anyOf", []) + node.get("oneOf", []):
        if isinstance(branch, dict):
            kinds += [k for k in _types(branch) if k not in kinds]
    if not kinds:
        return None
    kind = " or ".join(kinds)
    # A short enum is worth listing; a long one (the GPU catalog) is the schema's business.
    enum = node.get("enum")
    if isinstance(enum, list) and len(enum) <= MAX_ENUM_LISTED:
        kind += " (" + ", ".join(v if isinstance(v, str) else json.dumps(v) for v in enum) + ")"
    return kind


def _types(node: dict[str, Any]) -> list[str]:
    kind = node.get("type")
    if isinstance(kind, list):
        return [str(k) for k in kind]
    return [str(kind)] if kind else []


def _value_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # GFM tables: a pipe ends the cell, even in code


def _code(value: Any) -> str:
    rendered = json.dumps(value, separators=(", ", ": "), ensure_ascii=False)
    # A backtick inside would end the code span early: use a longer fence.
    fence = "``" if "`" in rendered else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{_cell(rendered)}{pad}{fence}"


def rows(values_text: str, schema: Optional[dict[str, Any]] = None) -> list[Row]:
    values = yaml.safe_load(values_text) or {}
    docs = documented_paths(values_text)
    out: list[Row] = []
    undocumented: list[str] = []

    def walk(node: Any, path: tuple[str, ...]) -> None:
        doc = docs.get(path)
        if doc is None and isinstance(node, dict) and (node or not path):
            for key, child in node.items():  # an undocumented mapping: its keys get the rows
                walk(child, path + (str(key),))
            return
        if doc is None:
            undocumented.append(".".join(path))
            return
        text = _cell(" ".join(doc.lines))
        text += "".join(f"<br>`{_cell(line.strip()).replace('`', '')}`" for line in doc.examples)
        kind = (schema and _schema_type(schema, path)) or _value_type(node)
        out.append(Row(".".join(path), _cell(kind), _code(node), text))

    walk(values, ())
    if undocumented:
        raise ValuesDocError(
            "values without a `# -- ` comment (document them in values.yaml): " + ", ".join(undocumented))
    return out


def table(values_text: str, schema: Optional[dict[str, Any]] = None) -> str:
    lines = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for row in rows(values_text, schema):
        lines.append(f"| `{row.path}` | {row.type_name} | {row.default} | {row.description} |")
    return "\n".join(lines) + "\n"


def render_readme(readme_text: str, table_text: str) -> str:
    if START not in readme_text or END not in readme_text:
        raise ValuesDocError(f"README.md has no {START} ... {END} section for the table")
    head, rest = readme_text.split(START, 1)
    _, tail = rest.split(END, 1)
    return (f"{head}{START}\n<!-- Generated by charts/values_table.py from values.yaml: edit the "
            f"comments there, then run it. -->\n\n{table_text}\n{END}{tail}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chart", type=Path, help="chart directory (with values.yaml and README.md)")
    parser.add_argument("--check", action="store_true", help="only check that README.md is up to date")
    args = parser.parse_args(argv)
    values_path, readme_path = args.chart / "values.yaml", args.chart / "README.md"
    schema_path = args.chart / "values.schema.json"
    try:
        schema = json.loads(schema_path.read_text()) if schema_path.exists() else None
        current = readme_path.read_text()
        wanted = render_readme(current, table(values_path.read_text(), schema))
    except (OSError, ValuesDocError, yaml.YAMLError, json.JSONDecodeError) as exc:
        print(f"values_table: {exc}", file=sys.stderr)
        return 2
    if current == wanted:
        return 0
    if args.check:
        sys.stdout.writelines(difflib.unified_diff(
            current.splitlines(True), wanted.splitlines(True), str(readme_path), f"{readme_path} (generated)"))
        print(f"\n{readme_path} is out of date: run python charts/values_table.py {args.chart}",
              file=sys.stderr)
        return 1
    readme_path.write_text(wanted)
    print(f"wrote the values table of {readme_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
