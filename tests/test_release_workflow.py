"""The release workflow cannot run here (no GitHub, no Docker, no registry); check what can be:
it parses, its jobs form a graph, and what it calls exists in the repository and agrees with it."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "release.yaml"


def _workflow() -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as "on".
    data = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


def _runs(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_jobs_form_a_graph_ending_in_the_chart():
    jobs = _workflow()["jobs"]
    needs = {name: ([job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs", []))
             for name, job in jobs.items()}
    for name, deps in needs.items():
        assert set(deps) <= set(jobs), (name, deps)

    def upstream(name: str) -> set[str]:
        seen: set[str] = set()
        todo = list(needs[name])
        while todo:
            dep = todo.pop()
            assert dep != name, f"cycle through {name}"
            if dep not in seen:
                seen.add(dep)
                todo.extend(needs[dep])
        return seen

    # Nothing is pushed before the tests and the e2e suite on kind have passed.
    assert {"test", "e2e-kind", "image", "version"} <= upstream("chart")
    assert {"test", "e2e-kind"} <= upstream("image")


def test_triggered_by_version_tags_and_by_hand():
    on = _workflow()["on"]
    assert on["push"]["tags"] == ["v*.*.*"]
    assert on["workflow_dispatch"]["inputs"]["publish"]["default"] is False


def test_multi_arch_image_and_oci_chart():
    workflow = _workflow()
    platforms = workflow["env"]["PLATFORMS"].split(",")
    assert {"linux/amd64", "linux/arm64"} <= set(platforms)
    image_steps = {step.get("uses", "").split("@")[0]: step for step in workflow["jobs"]["image"]["steps"]}
    assert "docker/setup-buildx-action" in image_steps and "docker/setup-qemu-action" in image_steps
    build = image_steps["docker/build-push-action"]["with"]
    assert build["platforms"] == "${{ env.PLATFORMS }}" and build["context"] == "."
    chart_runs = _runs(workflow["jobs"]["chart"])
    assert "helm package charts/vllm-fit" in chart_runs
    assert re.search(r'helm push "dist/vllm-fit-\$\{\{ needs\.version\.outputs\.version \}\}\.tgz" '
                     r'"\$\{\{ needs\.version\.outputs\.charts \}\}"', chart_runs)
    assert "oci://$REGISTRY/$owner/charts" in _runs(workflow["jobs"]["version"])
    # The packaged chart's default image is the one just pushed, pinned by digest.
    assert ".image.repository = strenv(IMAGE) | .image.digest = strenv(DIGEST)" in chart_runs


def test_calls_what_the_repository_has():
    workflow = _workflow()
    e2e = _runs(workflow["jobs"]["e2e-kind"])
    assert "e2e/kind.sh local" in e2e and "e2e/kind.sh helm" in e2e and "e2e/kind.sh --delete" in e2e
    assert (ROOT / "e2e" / "kind.sh").exists() and (ROOT / "tests" / "run").exists()
    kind_sh = (ROOT / "e2e" / "kind.sh").read_text()
    for mode in ("helm|local)", "--delete)"):
        assert mode in kind_sh
    assert "bash tests/run" in _runs(workflow["jobs"]["test"])
    assert (ROOT / "Dockerfile").exists() and (ROOT / "charts" / "vllm-fit" / "Chart.yaml").exists()


def test_the_versions_it_compares_agree_today():
    # The version job fails a release whose tag, pyproject and Chart.yaml disagree; they agree now.
    package = re.search(r'(?m)^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    chart = yaml.safe_load((ROOT / "charts" / "vllm-fit" / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == package
    assert 'tomllib.load(open("pyproject.toml", "rb"))["project"]["version"]' in _runs(
        _workflow()["jobs"]["version"])


def test_says_it_has_never_run():
    head = WORKFLOW.read_text().split("\nname:", 1)[0]
    assert "NEVER RUN" in head
