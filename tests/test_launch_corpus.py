"""Every real-world manifest in tests/fixtures/manifests extracts exactly as expected.yaml says."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vllm_fit.launch import find_launches
from vllm_fit.launch.model import VllmLaunch

CORPUS = Path(__file__).parent / "fixtures" / "manifests"
EXPECTED = yaml.safe_load((CORPUS / "expected.yaml").read_text())
STATED_FIELDS = [name for name in VllmLaunch.model_fields if name not in ("env", "unresolved", "sources", "vllm_version_source")]


def launches_in(path: Path):
    found = []
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            found.extend(find_launches(doc))
    return found


def test_every_manifest_has_an_expectation():
    files = {p.name for p in CORPUS.glob("*.yaml")} - {"expected.yaml"}
    assert files == set(EXPECTED), "expected.yaml and the corpus files differ"
    assert len([f for f in EXPECTED if EXPECTED[f]]) >= 20
    assert any(not v for v in EXPECTED.values())  # negatives are part of the corpus


@pytest.mark.parametrize("filename", sorted(EXPECTED))
def test_manifest_extracts_as_expected(filename):
    expected = EXPECTED[filename]
    found = launches_in(CORPUS / filename)
    assert len(found) == len(expected), [f.container for f in found]
    for want, got in zip(expected, found):
        assert (got.kind, got.name, got.container) == (want["kind"], want["name"], want["container"])
        stated = {name: getattr(got.launch, name) for name in STATED_FIELDS if getattr(got.launch, name) is not None}
        assert stated == want["launch"]
        assert list(got.launch.unresolved) == want["unresolved"]
        gpus = want["gpus"]
        assert got.gpus.count == gpus["count"]
        assert got.gpus.resource == gpus.get("resource")
        assert got.gpus.type == gpus.get("type")
        assert not got.problems


def test_sources_file_header_cites_every_manifest():
    for path in CORPUS.glob("*.yaml"):
        if path.name == "expected.yaml":
            continue
        head = path.read_text().splitlines()[:3]
        assert head[0].startswith("# Source: "), path.name
