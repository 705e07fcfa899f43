"""`vllm-fit check`: exit codes, stdin, broken documents, JSON shape."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from vllm_fit.check import check_object
from vllm_fit.cli.check import main

ADMISSION = Path(__file__).parent / "fixtures" / "admission" / "manifests"
CORPUS = Path(__file__).parent / "fixtures" / "manifests"


def run(argv, stdin: str | None = None, monkeypatch=None):
    out, err = io.StringIO(), io.StringIO()
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_directory_with_a_rejected_manifest_exits_1_and_names_it(tmp_path):
    for name in ("a-deploy-create.yaml", "b-deploy-update-tp2.yaml", "h-nginx-negative.yaml"):
        shutil.copy(ADMISSION / name, tmp_path / name)
    code, out, _ = run([str(tmp_path)])
    assert code == 1
    reject = [line for line in out.splitlines() if "REJECT" in line]
    assert len(reject) == 1 and "a-deploy-create.yaml" in reject[0] and "llama70b-fp8-tp1" in reject[0]
    assert "tensor-parallel-size 2" in reject[0]
    assert "[no-kv-cache-memory]" in out
    assert "2 vLLM launches: 1 rejected" in out


def test_fitting_directory_exits_0(tmp_path):
    shutil.copy(ADMISSION / "b-deploy-update-tp2.yaml", tmp_path / "b.yaml")
    code, out, _ = run([str(tmp_path)])
    assert code == 0 and "FITS" in out


def test_stdin(monkeypatch):
    code, out, _ = run(["-"], (ADMISSION / "a-deploy-create.yaml").read_text(), monkeypatch)
    assert code == 1 and "<stdin>:1" in out


def test_broken_document_exits_2_with_file_and_line_and_others_still_reported(tmp_path):
    good = (ADMISSION / "a-deploy-create.yaml").read_text()
    broken = "apiVersion: v1\nkind: Pod\nmetadata: {name: x\n  bad: [\n"
    path = tmp_path / "mixed.yaml"
    path.write_text(broken + "---\n" + good)
    code, out, err = run([str(path)])
    assert code == 2
    assert f"{path}:" in err and "not valid YAML" in err
    line = int(err.split(f"{path}:")[1].split(":")[0])
    assert 1 <= line <= 4
    assert "llama70b-fp8-tp1" in out  # the good document after the broken one is still checked


def test_broken_json_reports_line(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{\n  "kind": "Pod",\n  oops\n}')
    code, _, err = run([str(path)])
    assert code == 2 and f"{path}:3:" in err


def test_missing_file_is_bad_input(tmp_path):
    code, _, err = run([str(tmp_path / "nope.yaml")])
    assert code == 2 and "no such file" in err


def test_json_output_shape(tmp_path):
    shutil.copy(ADMISSION / "a-deploy-create.yaml", tmp_path / "a.yaml")
    code, out, _ = run([str(tmp_path), "-o", "json"])
    assert code == 1
    (entry,) = json.loads(out)
    assert set(entry) == {"file", "line", "kind", "namespace", "name", "container", "detected_by", "launch_in_image",
                          "launch", "gpus", "members", "config_maps", "plan", "verdict"}
    launch = entry["launch"]
    for key in ("model", "tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size",
                "gpu_memory_utilization", "max_model_len", "block_size", "kv_cache_dtype", "quantization", "dtype",
                "enforce_eager", "max_num_seqs", "vllm_version", "unresolved"):
        assert key in launch
    # only what the manifest states: no PP in the manifest, so null here, 1 in the plan
    assert launch["pipeline_parallel_size"] is None and launch["tensor_parallel_size"] == 1
    assert entry["plan"]["parallel"]["pipeline_parallel_size"] == 1
    assert entry["gpus"] == {"count": 1, "per_pod": 1, "pods": 1, "per_replica": 1, "resource": "nvidia.com/gpu",
                             "type": "NVIDIA-H100-80GB-HBM3", "type_source": "node-selector"}
    assert entry["detected_by"] == "command" and entry["members"] == [] and entry["launch_in_image"] is False
    assert entry["verdict"]["fits"] is False
    assert entry["verdict"]["reasons"][0]["code"] == "no-kv-cache-memory"


def test_unknown_model_is_a_warning_not_a_crash(tmp_path):
    shutil.copy(ADMISSION / "c-deploy-dryrun.yaml", tmp_path / "c.yaml")
    code, out, _ = run([str(tmp_path), "-o", "json"])
    assert code == 0
    (entry,) = json.loads(out)
    assert entry["plan"] is None and entry["verdict"]["fits"] is True
    assert [r["code"] for r in entry["verdict"]["reasons"]] == ["unknown-model"]
    code, _, _ = run([str(tmp_path), "--strict"])
    assert code == 1


def test_default_gpu_and_version(tmp_path):
    shutil.copy(ADMISSION / "d-bare-pod.yaml", tmp_path / "d.yaml")
    code, out, _ = run([str(tmp_path), "-o", "json"])
    assert json.loads(out)[0]["plan"] is None  # no GPU type known: warned, not planned
    code, out, _ = run([str(tmp_path), "-o", "json", "--gpu", "H100-80GB", "--vllm-version", "0.11.0"])
    entry = json.loads(out)[0]
    assert entry["gpus"]["type_source"] == "default" and entry["plan"]["gpu"]["name"] == "H100-80GB"


def test_bad_option_values_exit_2(tmp_path):
    assert run([str(tmp_path), "--gpu", "no-such-gpu"])[0] == 2
    assert run([str(tmp_path), "-o", "xml"])[0] == 2
    assert run([])[0] == 2


def test_whole_corpus_reads(tmp_path):
    code, out, err = run([str(CORPUS), "-o", "json"])
    assert err == "" and code in (0, 1)
    entries = json.loads(out)
    assert len(entries) == 22
    assert all(e["file"].endswith(".yaml") for e in entries)


def test_check_object_is_the_reusable_core(catalog, profiles, bundled):
    import yaml

    obj = yaml.safe_load((ADMISSION / "b-deploy-update-tp2.yaml").read_text())
    (result,) = check_object(obj, resolver=bundled, catalog=catalog, profiles=profiles)
    assert result.verdict.fits and result.plan is not None and result.plan.per_gpu.kv_cache_gib > 30


@pytest.mark.parametrize("doc", ["[1, 2]\n", "just a string\n"])
def test_non_object_documents_are_bad_input(tmp_path, doc):
    path = tmp_path / "x.yaml"
    path.write_text(doc)
    assert run([str(path)])[0] == 2
