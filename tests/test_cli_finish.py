"""The command line behaves like a finished tool (issue 15): one-line errors instead of tracebacks,
consistent exit codes, no traceback when a reader goes away, and help and listings that let a
person find what the tool accepts."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from vllm_fit.cli.check import main as check_main

ROOT = Path(__file__).resolve().parent.parent
ADMISSION = Path(__file__).parent / "fixtures" / "admission" / "manifests"
MODEL = "Qwen/Qwen3-32B"


def vllm_fit(*args: str, env: dict | None = None, timeout: float = 60, cwd: Path | None = None):
    return subprocess.run([sys.executable, "-m", "vllm_fit", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def one_line(text: str) -> str:
    """The command's whole stderr is exactly one line, and no traceback."""
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def check(argv, stdin: str | None = None, monkeypatch=None):
    out, err = io.StringIO(), io.StringIO()
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = check_main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def closed_port() -> int:
    from webhook_harness import free_port

    return free_port()  # bound and released: nothing listens there


def kubeconfig_for(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    return path


@pytest.fixture()
def tls_files(tmp_path):
    from vllm_fit.admission.certs import write_tls

    tls = write_tls(tmp_path / "tls", hosts=("127.0.0.1",))
    return ["--tls-cert-file", str(tls.cert_path), "--tls-key-file", str(tls.key_path)]


# ---------------------------------------------------------------- 1. one line, not a traceback

def test_serve_dev_without_a_kubeconfig_says_so_in_one_line(tmp_path):
    result = vllm_fit("serve", "--dev", env={"KUBECONFIG": str(tmp_path / "missing"), "HOME": str(tmp_path)})
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "kubeconfig" in line and str(tmp_path / "missing") in line and "KUBECONFIG" in line


def test_serve_with_an_unknown_default_gpu_fails_at_start_in_one_line(tmp_path, tls_files):
    config = tmp_path / "config.yaml"
    config.write_text("default_gpu: foo\n")
    result = vllm_fit("serve", "--config", str(config), *tls_files, env={"HOME": str(tmp_path)})
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "default_gpu" in line and "'foo'" in line and "vllm-fit gpus" in line
    result = vllm_fit("serve", *tls_files, env={"VLLM_FIT_DEFAULT_GPU": "H1000", "HOME": str(tmp_path)})
    assert result.returncode == 2 and "H100-80GB" in one_line(result.stderr)  # a close name is offered


def test_serve_outside_a_cluster_says_what_credentials_are_missing(tmp_path, tls_files):
    if Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists():
        pytest.skip("this machine is a Kubernetes pod: it has a service account")
    env = {"HOME": str(tmp_path), "KUBECONFIG": ""}
    result = vllm_fit("serve", *tls_files, "--port", "0", "--health-port", "0", env=env, timeout=30)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "no Kubernetes credentials" in line and "KUBECONFIG" in line and "Helm chart" in line


def test_serve_dev_against_an_unreachable_api_server_gives_up_after_a_bounded_wait(tmp_path):
    kubeconfig = kubeconfig_for(tmp_path / "kubeconfig", f"https://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    result = vllm_fit("serve", "--dev", "--api-wait", "2", "--port", "0", "--health-port", "0",
                      env={"KUBECONFIG": str(kubeconfig)}, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 3
    line = one_line(result.stderr)
    assert "cannot reach the Kubernetes API server" in line and str(kubeconfig) in line
    assert "SSLContext object" not in line
    assert elapsed < 20, elapsed


def test_serve_waits_for_the_api_server_twenty_seconds_by_default():
    from vllm_fit.cli.serve import _parser

    assert _parser().parse_args([]).api_wait == 20.0


def test_kubeconfig_that_cannot_be_used_is_one_line(tmp_path):
    bad = tmp_path / "kubeconfig"
    bad.write_text("current-context: nowhere\ncontexts: []\n")
    result = vllm_fit("serve", "--dev", env={"KUBECONFIG": str(bad)})
    assert result.returncode == 2 and "'nowhere'" in one_line(result.stderr)
    bad.write_text("{{ not yaml")
    result = vllm_fit("serve", "--dev", env={"KUBECONFIG": str(bad)})
    assert result.returncode == 2 and "not valid YAML" in one_line(result.stderr)


def test_wait_for_api_returns_when_answered_and_refused_credentials_are_bad_input_at_once():
    from aiohttp import web
    from webhook_harness import free_port

    from vllm_fit.admission.kube import KubeClient, wait_for_api
    from vllm_fit.errors import VllmFitError

    async def scenario() -> None:
        status = {"code": 200}

        async def api(_request):
            return web.json_response({"kind": "APIVersions"}, status=status["code"])

        app = web.Application()
        app.router.add_get("/api", api)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            client = KubeClient(f"http://127.0.0.1:{port}", source="a test kubeconfig")
            await wait_for_api(client, 5)
            status["code"] = 401
            started = time.monotonic()
            with pytest.raises(VllmFitError, match="refused the credentials of a test kubeconfig"):
                await wait_for_api(client, 30)
            assert time.monotonic() - started < 5
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


# Commands, each run with its stdout closed before it writes: the reader of `| head -1` gone.
PIPED = [
    ["plan", "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", "--max-model-len", "16k"],
    ["plan", MODEL, "-o", "json"],
    ["plan", "--help"],
    ["check", str(ADMISSION)],
    ["check", str(ADMISSION), "-o", "json"],
    ["check", "--help"],
    ["models", "list"],
    ["models", "list", "-o", "json"],
    ["models", "--help"],
    ["gpus"],
    ["gpus", "-o", "json"],
    ["serve", "--help"],
    ["logs", "--help"],
    ["verify", "--help"],
    ["--help"],
]


@pytest.mark.parametrize("args", PIPED, ids=[" ".join(a[:2]) + (" " + a[-1] if len(a) > 2 else "") for a in PIPED])
def test_a_reader_that_goes_away_never_causes_a_traceback(args):
    process = subprocess.Popen([sys.executable, "-m", "vllm_fit", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, "VLLM_FIT_HUB": "0"})
    process.stdout.close()  # before the interpreter has even started: every write meets a closed pipe
    stderr = process.stderr.read().decode()
    process.wait(timeout=60)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception ignored" not in stderr, stderr
    assert stderr == "", stderr
    # 141 as a tool killed by SIGPIPE; argparse's own help printer drops write errors silently (0).
    assert process.returncode in ((0, 141) if "--help" in args and args[0] in ("models", "serve") else (141,))


def test_head_dash_1_in_a_shell_pipeline():
    shell = (f"{sys.executable} -m vllm_fit plan RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic --max-model-len 16k "
             f"| head -1; {sys.executable} -m vllm_fit models list | head -1")
    result = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120)
    assert result.stderr == "", result.stderr
    assert result.stdout.startswith("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic on H100-80GB")
    assert len(result.stdout.splitlines()) == 2


@pytest.fixture()
def without(tmp_path):
    """PYTHONPATH with stand-ins for packages, each failing to import as a missing package does."""
    def make(*names: str) -> dict[str, str]:
        for name in names:
            (tmp_path / f"{name}.py").write_text(f"raise ModuleNotFoundError(\"No module named '{name}'\", name={name!r})\n")
        return {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    return make


def test_a_missing_dependency_is_one_install_line(without, tmp_path):
    kubeconfig = kubeconfig_for(tmp_path / "kubeconfig", "https://127.0.0.1:1")
    result = vllm_fit("serve", "--dev", env={**without("kopf"), "KUBECONFIG": str(kubeconfig)})
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "'kopf'" in line and "pip install" in line
    # The offline commands never need the webhook's packages.
    result = vllm_fit("plan", MODEL, "-tp", "2", env=without("kopf", "aiohttp", "prometheus_client"))
    assert result.returncode == 0, result.stderr


def _requirement(name: str) -> str:
    from importlib.metadata import requires

    return next(r for r in requires("vllm-fit") if re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0].lower() == name)


def test_missing_dependency_message_follows_the_installed_requirements():
    from vllm_fit.cli import missing_dependency_message

    for module, distribution in (("kopf._core", "kopf"), ("huggingface_hub", "huggingface_hub"), ("yaml", "pyyaml")):
        requirement = _requirement(distribution)
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)", requirement)
        message = missing_dependency_message(module)
        if extra:  # an optional part: name the extra
            assert f"vllm-fit[{extra.group(1)}]" in message, message
        else:  # a dependency of vllm-fit itself: the installation is incomplete
            assert "reinstall vllm-fit" in message and "pip install vllm-fit" in message, message
    assert missing_dependency_message("leftpad").endswith("(pip install leftpad)")


def test_an_internal_error_is_one_line_with_how_to_see_more(monkeypatch, capsys):
    from vllm_fit import cli

    def boom(argv):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("vllm_fit.cli.gpus.main", boom)
    assert cli.main(["gpus"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: ZeroDivisionError" in err and "VLLM_FIT_DEBUG=1" in err


# ---------------------------------------------------------------- 2. exit codes

REFUSED = [
    (["--max-model-len", "-5"], "--max-model-len", "positive"),
    (["-tp", "0"], "--tensor-parallel-size", "at least 1"),
    (["-tp", "-2"], "--tensor-parallel-size", "at least 1"),
    (["--gpu-memory-utilization", "-0.5"], "--gpu-memory-utilization", "(0, 1]"),
    (["--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization", "(0, 1]"),
    (["--gpu-memory-utilization", "95"], "--gpu-memory-utilization", "(0, 1]"),
    (["--block-size", "7", "--vllm-version", "0.11.0"], "--block-size", "16"),  # choices until vLLM 0.2x
    (["--dtype", "int3"], "--dtype", "bfloat16"),
    (["--gpus-per-node", "abc"], "--gpus-per-node", "1 or more"),
    (["--gpus-per-node", "0"], "--gpus-per-node", "1 or more"),
    (["--concurrency-threshold", "x"], "--concurrency-threshold", "number"),
    (["--max-model-len", "garbage"], "--max-model-len", "16k"),
    (["-tp", "3"], "TP=3", "valid TP sizes: 1, 2, 4, 8"),
]


@pytest.mark.parametrize("args,flag,allowed", REFUSED, ids=[" ".join(a) for a, _, _ in REFUSED])
def test_plan_values_vllm_refuses_are_usage_errors(args, flag, allowed):
    for output in ("table", "json"):
        result = vllm_fit("plan", MODEL, *args, "-o", output)
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert result.stdout == ""  # no verdict, no KV figure, no concurrency
        line = one_line(result.stderr)
        assert line.startswith("vllm-fit plan: ") and flag in line and allowed in line, line


MANIFEST_REFUSED = [args[:2] for args, _, _ in REFUSED if args[0] not in ("--gpus-per-node", "--concurrency-threshold")]


def _pod(args: list[str]) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "llm"},
        "spec": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                 "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.11.0",
                                 "args": ["--model", MODEL, *args],
                                 "resources": {"limits": {"nvidia.com/gpu": 1}}}]}})


@pytest.mark.parametrize("args", MANIFEST_REFUSED, ids=[" ".join(a) for a in MANIFEST_REFUSED])
def test_the_same_values_in_a_manifest_reject_the_launch(args, tmp_path):
    path = tmp_path / "pod.yaml"
    path.write_text(_pod(args))
    code, out, err = check([str(path), "-o", "json"])
    assert code == 1, (out, err)
    (entry,) = json.loads(out)
    codes = [r["code"] for r in entry["verdict"]["reasons"]]
    assert entry["verdict"]["fits"] is False and codes[0] in ("invalid-argument", "invalid-parallelism"), codes
    assert "no-model" not in codes  # a value vLLM refuses does not make the model disappear


@pytest.mark.parametrize("args", [["--max-model-len", "garbage"], ["-tp", "0"], ["--dtype", "int3"]])
def test_the_webhook_denies_them_too(args):
    from vllm_fit.admission.config import WebhookConfig
    from vllm_fit.admission.review import Reviewer
    from vllm_fit.hub.resolver import BundledResolver
    from vllm_fit.profiles import gpu_catalog, runtime_profiles

    reviewer = Reviewer(WebhookConfig(), BundledResolver(), gpu_catalog(), runtime_profiles())
    judgement = asyncio.run(reviewer.review(yaml.safe_load(_pod(args))))
    assert judgement.decision == "deny", judgement
    assert "no model" not in (judgement.message or "") and not any("names no model" in w for w in judgement.warnings)


def test_check_with_a_garbage_max_model_len_does_not_claim_the_model_is_missing(tmp_path):
    path = tmp_path / "pod.yaml"
    path.write_text(_pod(["--max-model-len", "garbage"]))
    code, out, _ = check([str(path)])
    assert code == 1
    assert "names no model" not in out and "--max-model-len" in out


# ---------------------------------------------------------------- 3. verdicts that say what they mean

def plan_json(*args: str) -> dict:
    result = vllm_fit("plan", *args, "-o", "json")
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_a_request_that_can_never_be_scheduled_is_said_and_a_max_model_len_suggested():
    # Gemma 3 on vLLM 0.14: the startup check reads only the first (sliding-window) KV group, so vLLM
    # starts with a KV cache that holds 0.72 of one 131,072-token request.
    data = plan_json("google/gemma-3-27b-it", "-tp", "1", "--vllm-version", "0.14.0")
    assert data["verdict"]["fits"] is True and data["kv_cache"]["max_concurrency"] < 1
    (reason,) = data["verdict"]["reasons"]
    assert reason["severity"] == "warning" and reason["code"] == "max-model-len-unschedulable"
    assert "131,072-token request can never be scheduled" in reason["message"]
    assert "only the first KV cache group" in reason["message"]
    longest = data["suggestions"]["max_model_len"]
    assert longest and f"--max-model-len {longest}" in reason["message"]
    # ... and at that length one request fits, one token more it does not.
    at = plan_json("google/gemma-3-27b-it", "-tp", "1", "--vllm-version", "0.14.0", "--max-model-len", str(longest))
    assert at["kv_cache"]["max_concurrency"] >= 1 and at["verdict"]["reasons"][0]["code"] != "max-model-len-unschedulable"
    over = plan_json("google/gemma-3-27b-it", "-tp", "1", "--vllm-version", "0.14.0", "--max-model-len", str(longest + 64))
    assert over["kv_cache"]["max_concurrency"] < 1


def test_suggestions_prefer_one_node():
    # Llama-3.3-70B on L4: at TP=4 the weights do not fit; at TP=8 they do but 131,072 tokens do not.
    args = ("meta-llama/Llama-3.3-70B-Instruct", "--gpu", "L4", "-tp", "4", "--vllm-version", "0.11.0")
    data = plan_json(*args)
    sug = data["suggestions"]
    assert sug["max_model_len_tensor_parallel_size"] == 8 and sug["max_model_len"] > 0
    assert sug["multi_node"]["tensor_parallel_size"] == 8  # both are offered
    message = data["verdict"]["reasons"][0]["message"]
    single = message.index(f"--max-model-len {sug['max_model_len']} fits with --tensor-parallel-size 8 on one node")
    assert single < message.index("nodes (e.g. a LeaderWorkerSet)")
    assert "no TP on one" not in message
    # The single-node suggestion works.
    ok = vllm_fit("plan", "meta-llama/Llama-3.3-70B-Instruct", "--gpu", "L4", "-tp", "8", "--vllm-version", "0.11.0",
                  "--max-model-len", str(sug["max_model_len"]))
    assert ok.returncode == 0, ok.stdout


def test_gpu_count_mismatch_says_what_to_change(tmp_path):
    path = tmp_path / "pod.yaml"
    pod = yaml.safe_load(_pod(["-tp", "2", "--max-model-len", "16k"]))
    path.write_text(yaml.safe_dump(pod))
    code, out, _ = check([str(path), "-o", "json"])
    (entry,) = json.loads(out)
    (reason,) = [r for r in entry["verdict"]["reasons"] if r["code"] == "gpu-count-mismatch"]
    assert reason["severity"] == "error" and "request 2 GPUs" in reason["message"]
    assert "--tensor-parallel-size 1" in reason["message"]  # Qwen3-32B fits one H100 at 16k
    pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = 8
    path.write_text(yaml.safe_dump(pod))
    code, out, _ = check([str(path), "-o", "json"])
    (reason,) = [r for r in json.loads(out)[0]["verdict"]["reasons"] if r["code"] == "gpu-count-mismatch"]
    assert reason["severity"] == "warning" and "request 2 GPUs" in reason["message"]
    assert "--tensor-parallel-size 8" in reason["message"]


# ---------------------------------------------------------------- 4. output a person reads (plan)

def test_cuda_graph_memory_is_never_negative():
    from vllm_fit.hub.resolver import BundledResolver
    from vllm_fit.launch.model import VllmLaunch
    from vllm_fit.memory.plan import plan
    from vllm_fit.profiles import gpu_catalog, runtime_profiles

    resolver, catalog, profiles = BundledResolver(), gpu_catalog(), runtime_profiles()
    h100 = catalog.resolve("H100-80GB")
    for model in resolver.known():
        for tp in (1, 2):
            for version in ("0.11.0", "0.20.0", "0.34.0"):
                p = plan(resolver.resolve(model), VllmLaunch(model=model, tensor_parallel_size=tp, vllm_version=version),
                         h100, profiles, suggest=False)
                if p.settings:
                    assert p.per_gpu.cuda_graph_gib >= 0, (model, tp, version, p.per_gpu.cuda_graph_gib)
    # Qwen3-32B's capture on 0.11 was logged as -0.88 GiB: shown as memory freed, not as a negative size.
    out = vllm_fit("plan", MODEL, "-tp", "1", "--max-model-len", "16k", "--vllm-version", "0.11.0").stdout
    row = next(line for line in out.splitlines() if line.strip().startswith("CUDA graphs"))
    assert "-0." not in row and "0.88 GiB freed" in row


def test_enforce_eager_shows_no_graphs():
    out = vllm_fit("plan", MODEL, "-tp", "2", "--enforce-eager", "--vllm-version", "0.11.0").stdout
    row = next(line for line in out.splitlines() if line.strip().startswith("CUDA graphs"))
    assert "none" in row and "--enforce-eager" in row and "captured after" not in row


def test_no_internal_notes_and_one_note_per_fact(tmp_path):
    out = vllm_fit("plan", "openai/gpt-oss-120b", "-tp", "1", "--max-model-len", "16k", "--vllm-version", "0.11.0").stdout
    assert "seed" not in out and "0.95" not in out
    (tmp_path / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 16,
        "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 8192, "vocab_size": 128256,
        "max_position_embeddings": 131072, "torch_dtype": "bfloat16", "tie_word_embeddings": True}))
    notes = plan_json(str(tmp_path), "--max-model-len", "8k")["notes"]
    assert len([n for n in notes if "from the architecture" in n]) == 1, notes
    assert len(notes) == len(set(notes))


def test_an_unknown_architecture_says_its_activation_is_a_family_default(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "architectures": ["FooBarForCausalLM"], "model_type": "foobar", "hidden_size": 2048, "num_hidden_layers": 16,
        "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 8192, "vocab_size": 128256,
        "max_position_embeddings": 131072, "torch_dtype": "bfloat16", "tie_word_embeddings": True}))
    for version in ("0.11.0", "0.34.0"):
        notes = plan_json(str(tmp_path), "--max-model-len", "8k", "--vllm-version", version)["notes"]
        assert any("FooBarForCausalLM" in n and "family default" in n for n in notes), notes
    known = plan_json("meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "8k", "-tp", "1")["notes"]
    assert not any("family default" in n for n in known)


_BARE_NUMBER = re.compile(r"(?<![-\w.,])(\d{5,})(?![\d.,]|x)")  # 5+ digits with no thousands separator


def test_numbers_are_formatted_the_same_everywhere():
    outputs = [vllm_fit("plan", *args).stdout for args in (
        (MODEL, "--max-model-len", "32000", "--vllm-version", "0.11.0"),
        ("meta-llama/Llama-3.3-70B-Instruct", "--gpu", "L4", "-tp", "4", "--vllm-version", "0.11.0"),
        ("google/gemma-3-27b-it", "-tp", "1", "--vllm-version", "0.14.0"))]
    for out in outputs:
        for line in out.splitlines():
            # A value written as a flag to copy stays as vLLM parses it (--max-model-len 18176).
            prose = re.sub(r"--[a-z-]+ \d+", "", line)
            assert not _BARE_NUMBER.search(prose), line
    assert "maximum model length is 18,208" in outputs[0] and "32,000-token" in outputs[0]


# ---------------------------------------------------------------- 4. output a person reads (check)

def _table_rows(out: str) -> list[str]:
    return [line for line in out.splitlines() if re.search(r"\.yaml:\d+\s", line) or line.startswith("WHERE")]


def test_check_table_columns_line_up(tmp_path):
    for name in ("a-deploy-create.yaml", "b-deploy-update-tp2.yaml", "j-lws.yaml", "d-bare-pod.yaml"):
        shutil.copy(ADMISSION / name, tmp_path / name)
    code, out, _ = check([str(tmp_path), "--gpu", "H100-80GB"])
    rows = _table_rows(out)
    assert len(rows) == 5 and rows[0].startswith("WHERE")
    # Every column starts at the same offset in every row: the header's words mark them.
    header = rows[0]
    for word in ("OBJECT", "CONTAINER", "VERDICT", "GPUS"):
        start = header.index(word)
        for row in rows[1:]:
            assert row[start - 2:start] == "  " and row[start] != " ", (word, row)
    # Numbers are right-aligned: the KV cache figures end in the same column.
    ends = {row.index(" GiB") for row in rows[1:] if " GiB" in row}
    assert len(ends) == 1, rows


def test_items_of_a_list_get_their_own_line_numbers(tmp_path):
    first = yaml.safe_load((ADMISSION / "a-deploy-create.yaml").read_text())
    second = yaml.safe_load((ADMISSION / "b-deploy-update-tp2.yaml").read_text())
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [first, second]}, sort_keys=False)
    path = tmp_path / "list.yaml"
    path.write_text("# exported\n" + text)
    lines = text.splitlines()
    item_lines = [i + 2 for i, line in enumerate(lines) if line.startswith("- ")]
    assert len(item_lines) == 2
    code, out, _ = check([str(path), "-o", "json"])
    assert [entry["line"] for entry in json.loads(out)] == item_lines
    code, out, _ = check([str(path)])
    assert f"list.yaml:{item_lines[0]} " in out and f"list.yaml:{item_lines[1]} " in out
    # The same for a JSON List.
    json_path = tmp_path / "list.json"
    json_path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [first, second]}, indent=2))
    code, out, _ = check([str(json_path), "-o", "json"])
    json_lines = [entry["line"] for entry in json.loads(out)]
    assert json_lines[0] > 1 and json_lines[1] > json_lines[0]


def test_check_json_reports_unreadable_inputs_in_the_json(tmp_path):
    shutil.copy(ADMISSION / "b-deploy-update-tp2.yaml", tmp_path / "good.yaml")
    (tmp_path / "broken.yaml").write_text("kind: Pod\nmetadata: {name: x\n")
    missing = str(tmp_path / "nope.yaml")
    code, out, err = check([str(tmp_path), missing, "-o", "json"])
    assert code == 2
    entries = json.loads(out)
    bad = [e for e in entries if e["verdict"]["reasons"] and e["verdict"]["reasons"][0]["code"] == "unreadable-input"]
    assert {Path(e["file"]).name for e in bad} == {"broken.yaml", "nope.yaml"}
    assert all(e["verdict"]["fits"] is False and e["plan"] is None for e in bad)
    assert next(e for e in bad if e["file"].endswith("broken.yaml"))["line"] in (1, 2, 3)
    assert any(e["name"] == "llama70b-fp8-tp1" for e in entries)
    assert set(entries[0]) == set(bad[0])  # one shape for every entry


def test_check_on_a_helm_chart_says_to_render_it(tmp_path):
    code, out, err = check([str(ROOT / "charts" / "vllm-fit")])
    assert code == 2
    line = one_line(err)
    assert "helm template" in line and "| vllm-fit check -" in line
    # A tree holding a chart and plain manifests: the manifests are checked, the chart named once.
    shutil.copytree(ROOT / "charts" / "vllm-fit", tmp_path / "charts" / "vllm-fit")
    shutil.copy(ADMISSION / "b-deploy-update-tp2.yaml", tmp_path / "b.yaml")
    code, out, err = check([str(tmp_path)])
    assert code == 2 and "helm template" in one_line(err) and "FITS" in out


def test_an_invalid_launch_shows_no_memory_figures_in_the_table(tmp_path):
    path = tmp_path / "pod.yaml"
    path.write_text(_pod(["-tp", "0"]))
    code, out, _ = check([str(path)])
    row = _table_rows(out)[1]
    assert "REJECT" in row and "0.00" not in row


# ---------------------------------------------------------------- 5. discoverability

def test_gpus_lists_the_catalog():
    from vllm_fit.profiles import gpu_catalog

    catalog = gpu_catalog()
    result = vllm_fit("gpus")
    assert result.returncode == 0, result.stderr
    for gpu in catalog.gpus:
        assert re.search(rf"^{re.escape(gpu.name)}\s+{gpu.total_gib:,.2f}\s+(measured|nominal)", result.stdout, re.M), gpu.name
        for alias in gpu.aliases[:2]:
            assert alias in result.stdout
        assert gpu.source[:40] in result.stdout
    data = json.loads(vllm_fit("gpus", "-o", "json").stdout)
    assert [g["name"] for g in data["gpus"]] == [g.name for g in catalog.gpus]
    detail = vllm_fit("gpus", "nvidia-h100-80gb")
    assert detail.returncode == 0 and detail.stdout.startswith("H100-80GB: 79.18 GiB")
    unknown = vllm_fit("gpus", "H1000")
    assert unknown.returncode == 2 and "vllm-fit gpus" in one_line(unknown.stderr)


def test_the_unknown_gpu_error_points_to_the_catalog_not_a_truncated_list():
    result = vllm_fit("plan", MODEL, "--gpu", "H1000")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "`vllm-fit gpus`" in line and "..." not in line and "H100-80GB" in line  # the close names only


def test_plan_help_lists_every_flag():
    from vllm_fit.launch import argv as vllm_argv

    result = vllm_fit("plan", "--help")
    assert result.returncode == 0
    for flag in vllm_argv._MEMORY_FLAGS:
        assert f"--{flag} " in result.stdout or f"--{flag}\n" in result.stdout, flag
    for own in ("--gpu ", "--vllm-version", "--gpus-per-node", "--concurrency-threshold", "-o, --output", "--revision"):
        assert own in result.stdout, own
    for short in ("-tp", "-pp", "-dp", "-q"):
        assert f"{short}, --" in result.stdout


def test_serve_help_documents_every_option_with_its_default():
    from vllm_fit.cli.serve import _parser

    result = vllm_fit("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for action in _parser()._actions:
        if action.dest == "help":
            continue
        assert action.option_strings[-1] in text
        assert action.help and "(default:" in action.help, action.dest
    assert "VLLM_FIT_DEV_HOST" in text


def test_models_fetch_errors_do_not_suggest_models_fetch(tmp_path):
    result = vllm_fit("models", "fetch", "acme/none", env={"HF_HUB_OFFLINE": "1", "VLLM_FIT_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert "models fetch`" not in line.split("vllm-fit models fetch:", 1)[1] and "HF_HUB_OFFLINE" in line
    from vllm_fit.cli.models import _fetch_error
    from vllm_fit.hub.errors import BUNDLE_HINT, HubUnavailable
    from vllm_fit.hub.settings import HubSettings

    text = _fetch_error(HubUnavailable(f"'a/b': the Hub is unreachable; check HF_ENDPOINT, or {BUNDLE_HINT}"),
                        HubSettings.from_env())
    assert "models fetch" not in text and text.endswith("check HF_ENDPOINT")
    # plan and check still give the advice: there it is the fix.
    plan = vllm_fit("plan", "acme/none", env={"HF_HUB_OFFLINE": "1", "VLLM_FIT_CACHE_DIR": str(tmp_path)})
    assert "vllm-fit models fetch" in plan.stderr


def _emitted_reason_codes() -> set[str]:
    codes: set[str] = set()
    for path in (ROOT / "operator" / "vllm_fit").rglob("*.py"):
        text = path.read_text()
        codes.update(re.findall(r'\bcode="([a-z][a-z0-9-]+)"', text))
        codes.update(re.findall(r'_reason\(\s*"([a-z][a-z0-9-]+)"', text))
        codes.update(re.findall(r'"code": "([a-z][a-z0-9-]+)"', text))
        for chosen in re.findall(r'\bcode = "([a-z][a-z0-9-]+)"(?: if [^\n]* else "([a-z][a-z0-9-]+)")?', text):
            codes.update(c for c in chosen if c)
    return codes


def test_readme_lists_every_reason_code():
    readme = (ROOT / "README.md").read_text()
    codes = _emitted_reason_codes()
    assert {"no-kv-cache-memory", "invalid-argument", "unknown-model", "unreadable-input"} <= codes
    missing = sorted(code for code in codes if f"`{code}`" not in readme)
    assert not missing, f"README.md does not list: {missing}"


def test_readme_says_how_to_try_the_webhook_without_a_cluster_and_with_kind():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The admission webhook", 1)[1].split("\n## ", 1)[0]
    assert "VLLM_FIT_DEV_HOST" in section and "kind" in section
    assert "without a cluster" in section.lower() and "vllm-fit check" in section
    assert "host.docker.internal" in section and "docker network inspect kind" in section


def test_an_unknown_command_is_one_line_with_the_nearest_one():
    result = vllm_fit("chek", "x.yaml")
    assert result.returncode == 2 and result.stdout == ""
    line = one_line(result.stderr)
    assert "'chek'" in line and "did you mean check?" in line and "vllm-fit --help" in line
