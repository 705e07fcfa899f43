"""e2e/image.sh's own edges (the build and run themselves are what it does in .ci/run)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "e2e" / "image.sh"


def _path_without_container_tools(tmp_path: Path) -> str:
    """A PATH with what the script needs before its tool check, and none of the tools."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("bash", "dirname", "id", "date", "tr", "awk", "cat"):
        found = shutil.which(name)
        assert found, name
        (bin_dir / name).symlink_to(found)
    return str(bin_dir)


def test_skips_with_exit_77_and_the_reason_when_the_tools_are_missing(tmp_path):
    env = {"PATH": _path_without_container_tools(tmp_path), "HOME": str(tmp_path),
           "IMAGE_WORKDIR": str(tmp_path / "work")}
    done = subprocess.run([str(tmp_path / "bin" / "bash"), str(SCRIPT)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 77, done.stdout + done.stderr
    assert "image.sh: SKIPPED: missing tools: buildah podman mmdebstrap runc openssl curl" in done.stderr
    assert "--install-tools" in done.stderr
    assert not (tmp_path / "work").exists()  # nothing made before the check


def test_install_tools_without_apt_or_root_skips_saying_why(tmp_path):
    env = {"PATH": _path_without_container_tools(tmp_path), "HOME": str(tmp_path)}
    done = subprocess.run([str(tmp_path / "bin" / "bash"), str(SCRIPT), "--install-tools"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 77, done.stdout + done.stderr
    assert "and cannot install them (needs root and apt-get)" in done.stderr


def test_unknown_argument_fails_with_the_usage():
    done = subprocess.run(["bash", str(SCRIPT), "--no-such-option"], capture_output=True, text=True,
                          timeout=60, env={**os.environ})
    assert done.returncode == 1
    assert "unknown argument: --no-such-option" in done.stderr
    assert "e2e/image.sh [--install-tools]" in done.stderr


def test_ci_runs_it_first_when_asked_and_lets_it_skip():
    ci = (ROOT / ".ci" / "run").read_text()
    image_at = ci.index("bash e2e/image.sh --install-tools")
    assert image_at < ci.index('exec bash tests/run -q "$@"')
    assert '"${VLLM_FIT_CI_IMAGE:-0}" = 1' in ci and "77)" in ci
