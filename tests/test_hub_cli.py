"""`vllm-fit plan` and `vllm-fit models` with the fixture Hub as HF_ENDPOINT: the acceptance of issue 7."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml
from hub_fake import LLAMA, QWEN, fixture_models, hub, hub_env  # noqa: F401

from vllm_fit.cli import main

ROOT = Path(__file__).resolve().parents[1]
VLLM_FIT = [sys.executable, "-m", "vllm_fit"]


def run(args, **env):
    merged = {**os.environ, **{k: str(v) for k, v in env.items()}}
    return subprocess.run([*VLLM_FIT, *args], capture_output=True, text=True, env=merged, timeout=60)


def test_plan_an_unbundled_model_from_the_hub_then_without_it(hub_env):
    hub = hub_env
    first = run(["plan", LLAMA, "--gpu", "H100-80GB"])
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"{LLAMA} on H100-80GB")
    assert re.search(r"weights\s+14\.9\d", first.stdout)  # 8,030,261,248 BF16 parameters from the headers
    assert "FITS" in first.stdout and "Every valid tensor-parallel size" in first.stdout
    assert hub.count(r"\.safetensors$") == 4
    hub.stop()
    second = run(["plan", LLAMA, "--gpu", "H100-80GB"])
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    listing = run(["models", "list"])
    assert listing.returncode == 0
    assert re.search(rf"^{LLAMA}\s+cache\s+main\s+8,030,261,248", listing.stdout, re.M)
    assert re.search(r"^Qwen/Qwen3-0\.6B\s+bundled", listing.stdout, re.M)


def test_plan_with_a_hanging_hub_fails_within_the_deadline(hub_env, monkeypatch, capsys):
    hub_env.faults[QWEN] = "hang"
    monkeypatch.setenv("VLLM_FIT_HUB_TIMEOUT", "0.5")
    began = time.monotonic()
    assert main(["plan", QWEN]) == 2
    assert time.monotonic() - began < 2.0
    err = capsys.readouterr().err
    assert "did not answer within 0.5 s" in err
    hub_env.release()


def test_plan_reports_a_gated_model(hub_env, capsys):
    assert main(["plan", "acme/gated-llama"]) == 2
    assert "gated" in capsys.readouterr().err


def test_fetch_writes_bundles_that_plan_air_gapped(hub_env, tmp_path, monkeypatch, capsys):
    out = tmp_path / "bundles"
    assert main(["models", "fetch", QWEN, LLAMA, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{QWEN} @ " in printed and "751,632,384 parameters" in printed
    folder = out / "acme--llama-sharded"
    assert sorted(p.name for p in folder.iterdir()) == ["SOURCE.md", "config.json", "weights.yaml"]
    facts = yaml.safe_load((folder / "weights.yaml").read_text())
    sha = hub_env.models[LLAMA].sha
    assert facts["params_by_dtype"] == {"BF16": 8_030_261_248} and facts["total_params"] == 8_030_261_248
    assert facts["safetensors_total_bytes"] == 16_060_522_496 and facts["sha"] == sha
    assert re.fullmatch(rf"{re.escape(hub_env.url)}/{LLAMA} @ {sha} \(revision main\), fetched \d{{4}}-\d\d-\d\dT.*Z",
                        facts["source"])
    # An air-gapped cluster: no Hub, an empty cache, the bundles mounted.
    hub_env.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VLLM_FIT_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("VLLM_FIT_MODEL_BUNDLE_DIRS", str(out))
    assert main(["plan", LLAMA, "-tp", "1"]) == 0
    assert re.search(r"weights\s+14\.9\d", capsys.readouterr().out)
    assert main(["plan", "acme/not-bundled"]) == 2
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err


def test_fetch_failure_and_usage(hub_env, capsys):
    assert main(["models", "fetch", "acme/missing"]) == 1
    assert "no such model (HTTP 404)" in capsys.readouterr().err
    assert main(["models"]) == 2
    assert main(["models", "fetch"]) == 2
    assert main(["models", "--help"]) == 0


def test_bundled_models_plan_with_no_hub_and_never_import_the_client(tmp_path):
    code = ("import sys; from vllm_fit.cli import main; rc = main(['plan', 'Qwen/Qwen3-0.6B', '-o', 'json']);"
            "assert 'huggingface_hub' not in sys.modules, 'imported'; sys.exit(rc)")
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "VLLM_FIT_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr


def test_only_the_hub_client_imports_huggingface_hub():
    package = ROOT / "operator" / "vllm_fit"
    offenders = [str(p.relative_to(package)) for p in package.rglob("*.py")
                 if re.search(r"^\s*(from|import)\s+huggingface_hub", p.read_text(), re.M)
                 and p.relative_to(package).as_posix() != "hub/hub_client.py"]
    assert offenders == []
