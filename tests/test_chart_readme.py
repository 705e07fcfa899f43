"""The chart README's values table is generated from values.yaml's comments and kept up to date."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "vllm-fit"
SCRIPT = ROOT / "charts" / "values_table.py"


def _load():
    spec = importlib.util.spec_from_file_location("values_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules["values_table"] = module
    spec.loader.exec_module(module)
    return module


vt = _load()


def test_readme_values_table_is_up_to_date():
    result = subprocess.run([sys.executable, str(SCRIPT), str(CHART), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (
        "charts/vllm-fit/README.md is stale: run `python charts/values_table.py charts/vllm-fit`\n"
        + result.stdout[-3000:] + result.stderr)


def _leaf_paths(node, path=()):
    if isinstance(node, dict) and node:
        for key, child in node.items():
            yield from _leaf_paths(child, path + (str(key),))
    else:
        yield ".".join(path)


def test_every_value_of_the_chart_is_in_the_table():
    values_text = (CHART / "values.yaml").read_text()
    schema = json.loads((CHART / "values.schema.json").read_text())
    table_paths = [row.path for row in vt.rows(values_text, schema)]
    readme = (CHART / "README.md").read_text()
    for leaf in _leaf_paths(yaml.safe_load(values_text)):
        covering = [p for p in table_paths if leaf == p or leaf.startswith(p + ".")]
        assert covering, f"{leaf} is in values.yaml but in no row of the table"
    for path in table_paths:
        assert f"| `{path}` |" in readme


def test_readme_has_the_usual_sections():
    headings = [line[3:].strip() for line in (CHART / "README.md").read_text().splitlines()
                if line.startswith("## ")]
    for wanted in ("Install", "Upgrade", "Values", "Uninstall", "Troubleshooting"):
        assert wanted in headings, headings


SAMPLE = """\
# A file header, not a value's description.

# -- Replicas of the server.
replicas: 2

# A section comment (no `--`): the keys below carry their own.
image:
  # -- Repository, with a pipe | in the text
  # and a second line.
  repository: vllm-fit
  # -- Tag; empty = appVersion.
  tag: ""

# -- Container security context.
securityContext:
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]

# -- Bundles. Example:
#   - model: org/name
#     configMap: bundle
bundles: []

# -- A block scalar whose lines look like keys.
script: |
  notakey: 1
  # -- not a description
after: 3
"""


def test_rows_from_comments():
    # `after` has no `# --` comment: an error that names it.
    with pytest.raises(vt.ValuesDocError, match=r"\bafter\b"):
        vt.rows(SAMPLE)
    text = SAMPLE.replace("after: 3", "# -- After the block scalar.\nafter: 3")
    schema = {"properties": {"image": {"properties": {"tag": {"type": "string", "enum": ["", "v1"]}}}}}
    by_path = {row.path: row for row in vt.rows(text, schema)}
    assert list(by_path) == ["replicas", "image.repository", "image.tag", "securityContext",
                             "bundles", "script", "after"]
    assert by_path["replicas"].type_name == "integer" and by_path["replicas"].default == "`2`"
    assert by_path["image.repository"].description == (
        "Repository, with a pipe \\| in the text and a second line.")
    assert by_path["image.tag"].type_name == 'string (, v1)'
    # A documented mapping is one row; its keys are in its default.
    assert by_path["securityContext"].default == (
        '`{"readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}}`')
    assert by_path["bundles"].description.endswith(
        "Example:<br>`- model: org/name`<br>`configMap: bundle`")
    assert by_path["script"].default == '`"notakey: 1\\n# -- not a description\\n"`'
    assert by_path["after"].description == "After the block scalar."


def test_a_comment_separated_by_a_blank_line_documents_nothing():
    with pytest.raises(vt.ValuesDocError, match="replicas"):
        vt.rows("# -- Replicas.\n\nreplicas: 2\n")


def test_render_readme_replaces_only_between_the_markers():
    readme = f"# Chart\n\nbefore\n\n{vt.START}\nold table\n{vt.END}\n\nafter\n"
    out = vt.render_readme(readme, "| new |\n")
    assert out.startswith("# Chart\n\nbefore\n\n" + vt.START)
    assert "old table" not in out and "| new |" in out and out.endswith(vt.END + "\n\nafter\n")
    assert vt.render_readme(out, "| new |\n") == out
    with pytest.raises(vt.ValuesDocError):
        vt.render_readme("# no markers\n", "| new |\n")


def test_check_mode_reports_a_stale_table(tmp_path):
    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "values.yaml").write_text("# -- Replicas.\nreplicas: 2\n")
    (chart / "README.md").write_text(f"# c\n\n{vt.START}\n{vt.END}\n")
    assert vt.main([str(chart), "--check"]) == 1
    assert vt.main([str(chart)]) == 0
    assert vt.main([str(chart), "--check"]) == 0
    assert "| `replicas` | integer | `2` | Replicas. |" in (chart / "README.md").read_text()
    (chart / "values.yaml").write_text("# -- Replicas.\nreplicas: 2\nundocumented: 1\n")
    assert vt.main([str(chart), "--check"]) == 2


def test_schema_types_from_any_of_and_long_enums_left_out():
    text = "# -- GPU.\ngpu: null\n# -- Mode.\nmode: a\n"
    schema = {"properties": {
        "gpu": {"anyOf": [{"type": "null"}, {"type": "string", "enum": [f"g{i}" for i in range(40)]}]},
        "mode": {"type": "string", "enum": [f"m{i}" for i in range(vt.MAX_ENUM_LISTED + 1)]},
    }}
    by_path = {row.path: row for row in vt.rows(text, schema)}
    assert by_path["gpu"].type_name == "null or string"
    assert by_path["mode"].type_name == "string"
