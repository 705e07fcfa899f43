"""The e2e suite (e2e/) skips, quickly and saying why, when there is no cluster to run against.

CI has no cluster: these tests prove that `pytest e2e` there is a clean, fast, explained skip
rather than a hang or a failure. (The suite itself runs only when named: testpaths is tests/.)
"""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: e2e-test
  cluster:
    server: {server}
contexts:
- name: e2e-test
  context: {{cluster: e2e-test, user: e2e-test}}
current-context: e2e-test
users:
- name: e2e-test
  user: {{token: not-a-real-token}}
"""


def run_e2e(tmp_path: Path, server: str | None, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    # Nothing of the caller's cluster settings leaks in (.ci/run sets VLLM_FIT_E2E_CLUSTER).
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("E2E_", "KUBECTL", "PYTEST_", "VLLM_FIT_E2E_", "KUBECONFIG", "HELM"))}
    if server is not None:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(KUBECONFIG.format(server=server))
        environ["KUBECONFIG"] = str(kubeconfig)
    environ.update({"E2E_MODE": "local", **env})
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "e2e", "-rs", "-p", "no:cacheprovider"], cwd=REPO,
                          env=environ, capture_output=True, text=True, timeout=60)
    return done, time.monotonic() - started


def assert_all_skipped(done: subprocess.CompletedProcess, reason: str) -> None:
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    summary = out.strip().splitlines()[-1]
    match = re.search(r"=+ (\d+) skipped in [\d.]+s", summary)
    assert match, summary  # nothing passed, failed or errored
    assert int(match.group(1)) >= 8, summary
    skipped_lines = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert skipped_lines, out
    assert all(reason in line for line in skipped_lines), "\n".join(skipped_lines)


def test_every_e2e_test_skips_without_a_cluster_script_or_kubeconfig(tmp_path):
    done, seconds = run_e2e(tmp_path, None, HOME=str(tmp_path))  # no ~/.kube/config fallback either
    assert_all_skipped(done, "no cluster: set VLLM_FIT_E2E_CLUSTER to a cluster script")
    assert seconds < 20, f"took {seconds:.1f} s"


def test_every_e2e_test_skips_when_the_cluster_script_is_missing(tmp_path):
    # .ci/run in a user's clone (no cluster script beside it) skips the e2e suite, saying why.
    done, seconds = run_e2e(tmp_path, None, VLLM_FIT_E2E_CLUSTER="../no-such-dir/cluster")
    assert_all_skipped(done, "VLLM_FIT_E2E_CLUSTER=../no-such-dir/cluster names no file")
    assert seconds < 20, f"took {seconds:.1f} s"


def test_every_e2e_test_skips_when_the_api_server_is_unreachable(tmp_path):
    done, seconds = run_e2e(tmp_path, "https://127.0.0.1:1")
    assert_all_skipped(done, f"no reachable Kubernetes API at https://127.0.0.1:1 from KUBECONFIG={tmp_path}")
    assert seconds < 20, f"took {seconds:.1f} s"


class _AnyAnswer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def answering_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AnyAnswer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_every_e2e_test_skips_without_kubectl(tmp_path, answering_server):
    done, seconds = run_e2e(tmp_path, answering_server, KUBECTL="kubectl-that-does-not-exist")
    assert_all_skipped(done, "kubectl not found")
    assert seconds < 20, f"took {seconds:.1f} s"


def test_pytest_without_arguments_does_not_collect_e2e():
    # `pytest` from the repository root collects tests/ only; e2e/ runs when named.
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^testpaths\s*=\s*\["tests"\]\s*$', pyproject, re.MULTILINE), "testpaths must stay ['tests']"


def test_e2e_and_tests_module_names_do_not_collide():
    # tests/ and e2e/ are no packages: pytest puts each on sys.path and imports their modules by
    # base name, so `.ci/run` (which collects both) would fail on a name used in both.
    ours = {p.name for p in (REPO / "tests").glob("*.py")} - {"conftest.py", "__init__.py"}
    theirs = {p.name for p in (REPO / "e2e").glob("*.py")} - {"conftest.py", "__init__.py"}
    assert not ours & theirs, sorted(ours & theirs)
