"""The published CRDs the e2e suite installs are the files tests/fixtures/e2e/SOURCE.md cites."""

from __future__ import annotations

import hashlib
import lzma
import re
from pathlib import Path

import pytest
import yaml

FIXTURES = Path(__file__).parent / "fixtures" / "e2e"
ROW = re.compile(r"^\| `(?P<file>[^`]+\.crd\.yaml\.xz)` \| (?P<project>\S+) (?P<tag>v\S+) \| `(?P<path>[^`]+)` \| "
                 r"(?P<commit>[0-9a-f]{40}) \| (?P<sha256>[0-9a-f]{64}) \|", re.M)
ROWS = {m["file"]: m for m in ROW.finditer((FIXTURES / "SOURCE.md").read_text())}


def test_every_compressed_crd_is_cited() -> None:
    assert set(ROWS) == {p.name for p in FIXTURES.glob("*.crd.yaml.xz")}
    assert len(ROWS) >= 3


@pytest.mark.parametrize("name", sorted(ROWS))
def test_crd_is_the_cited_file(name: str) -> None:
    row = ROWS[name]
    text = lzma.decompress((FIXTURES / name).read_bytes())
    assert hashlib.sha256(text).hexdigest() == row["sha256"]
    # Its head, without parsing megabytes of schema: one CRD, named as the source path says.
    head = yaml.safe_load(text[:text.index(b"\n  versions:")].decode())
    assert head["kind"] == "CustomResourceDefinition"
    assert text.count(b"\nkind: CustomResourceDefinition") == 1
    assert row["tag"] in name  # the file name says the release
    assert row["path"].endswith(f"{head['spec']['group']}_{head['spec']['names']['plural']}.yaml")
