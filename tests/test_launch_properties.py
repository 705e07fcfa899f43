"""Property tests: arbitrary objects and argv never raise anything but VllmFitError, and
reading time grows linearly with input size."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vllm_fit.errors import VllmFitError
from vllm_fit.launch import UnresolvedValue, find_launches, parse_vllm_args
from vllm_fit.launch.find import ConfigMaps, mentions_vllm
from vllm_fit.profiles import gpu_catalog

CATALOG = gpu_catalog()
from vllm_fit.launch.shell import split_script

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = st.sampled_from([
    "kind", "metadata", "spec", "template", "containers", "initContainers", "command", "args", "env", "envFrom",
    "name", "value", "valueFrom", "image", "resources", "limits", "requests", "nvidia.com/gpu", "items",
    "leaderWorkerTemplate", "leaderTemplate", "workerTemplate", "size", "predictor", "model", "nodeSelector",
    "annotations", "jobTemplate", "parallelism", "uri", "storageUri", "restartPolicy", "workerSpec", "x",
    # issue 16: ConfigMaps, labels, KServe workers, KAITO
    "configMapRef", "configMapKeyRef", "secretRef", "secretKeyRef", "prefix", "key", "data", "labels", "app",
    "worker", "dataLocal", "tensor", "inference", "preset", "config", "resource", "instanceType", "count",
    "inference_config.yaml", "apiVersion",
])
KINDS = st.sampled_from(["Pod", "Deployment", "StatefulSet", "Job", "CronJob", "LeaderWorkerSet", "List",
                         "InferenceService", "LLMInferenceService", "ServingRuntime", "AppWrapper", "Scale",
                         "Workspace", "ConfigMap"])
TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["vllm", "serve", "vllm serve m", "sh", "-c", "--model", "-tp", "$(X)", "$$", "${A:-1}",
                     "python3", "-m", "vllm.entrypoints.openai.api_server", "vllm/vllm-openai:v0.11.0", "2",
                     "'", '"', "\\", "$((", "hf://a/b", "Always", "--max-model-len=16k", "--no-enforce-eager",
                     "kaito.sh/v1beta1", "pvc://p", "s3://b/k", "hf://o/m:rev", "phi-4", "Standard_NC48ads_A100_v4",
                     "vllm:\n  tensor-parallel-size: 2\n", "app.kubernetes.io/name", "--tensor_parallel_size"]),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(allow_nan=True), TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)), max_leaves=40)
OBJECTS = st.builds(lambda kind, rest: {**rest, "kind": kind}, KINDS, st.dictionaries(KEYS, VALUES, max_size=5))


@SETTINGS
@given(OBJECTS)
def test_arbitrary_objects_raise_only_our_error(obj):
    try:
        found = find_launches(obj, default_gpu="H100-80GB")
        # the same object's ConfigMaps (if any), a catalog for KAITO instance types, and strict rules
        found += find_launches(obj, configmaps=ConfigMaps.from_objects([obj]), catalog=CATALOG, loose=False)
    except VllmFitError:
        return
    for launch in found:
        assert launch.gpus.count is None or launch.gpus.count >= 0


ARGV = st.lists(st.one_of(
    TEXT,
    st.sampled_from(["--tensor-parallel-size", "--max-model-len", "16K", "auto", "-1", "--gpu-mem", "0.9",
                     "--config", "x.yaml", "--enforce-eager=1", "--no-max-model-len", "-q", "-O3", "--", "-dp"]),
    st.builds(UnresolvedValue, st.sampled_from(["$(A)", "--max-model-len=$(B)", "${C}"])),
), max_size=20)


@SETTINGS
@given(ARGV, st.sampled_from(["serve", "api_server"]))
def test_arbitrary_argv_raise_only_our_error(argv, entrypoint):
    try:
        parsed = parse_vllm_args(argv, entrypoint=entrypoint)
    except VllmFitError:
        return
    assert all(u.startswith("--") for u in parsed.launch.unresolved)


@SETTINGS
@given(st.text(alphabet=st.sampled_from(list("vlm serh-c$(){}'\"\\`;&|#\n =:1AX*+")), max_size=200))
def test_arbitrary_shell_scripts_never_raise(script):
    commands = split_script(script, {"A": "1", "X": None})
    assert all(isinstance(word, str) for command in commands for word in command)


@SETTINGS
@given(st.text(max_size=300))
def test_arbitrary_script_in_a_pod(script):
    obj = {"kind": "Pod", "spec": {"containers": [{"name": "c", "image": "x", "command": ["sh", "-c", "vllm " + script]}]}}
    try:
        find_launches(obj)
    except VllmFitError:
        pass


# ---------------------------------------------------------------- linear time

def _best_time(fn, repeats: int = 5) -> float:
    # This thread's CPU time, not the wall clock: other processes on a busy machine (CI, parallel
    # jobs) preempt us at random and would make the ratio measure them instead of the algorithm.
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return best


def _ratio(make, small: int, factor: int = 8) -> float:
    a, b = make(small), make(small * factor)
    return _best_time(b) / max(_best_time(a), 1e-6)


# Linear growth gives a ratio near `factor` (8); quadratic would give ~64. 30 leaves room for noise
# on a busy CI machine (best of 5 runs each).
LIMIT = 30


def test_argv_parsing_is_linear():
    def make(n):
        argv = ["org/m"]
        for i in range(n):
            argv += ["--max-model-len", str(1000 + i), "--config", "c.yaml", "-tp", UnresolvedValue("$(T)"),
                     "--unknown-flag", "v", "--gpu-memory-util", "0.5"]
        return lambda: parse_vllm_args(argv)
    assert _ratio(make, 300) < LIMIT


def test_shell_splitting_is_linear():
    def make(n):
        unit = "A=1; vllm serve m --max-model-len ${A:-4} \"$X\" '$(y)' $((A*2)) `z` # c\\\n && echo ${B} | t\n"
        script = unit * n
        return lambda: split_script(script, {"X": "x"})
    assert _ratio(make, 200) < LIMIT


def test_pathological_shell_inputs_are_linear():
    for unit in ("${", "$(", "$((", "'", '"', "`", "\\", "$(($(", "(("):
        def make(n, unit=unit):
            script = "vllm serve " + unit * n
            return lambda: split_script(script, {})
        assert _ratio(make, 4000) < LIMIT, unit


def test_object_reading_is_linear():
    def make(n):
        # The same 50 chained env entries in every container, so that the input grows as n does
        # (env[:n] made the input itself grow ~50x for 8x containers and the ratio sat at the limit).
        env = [{"name": f"V{i}", "value": f"$(V{i - 1})x" if i else "0"} for i in range(50)]
        containers = [{"name": f"c{i}", "image": "vllm/vllm-openai:v0.11.0", "env": env[:50],
                       "args": ["--model", "org/m", "--max-model-len", "$(V3)"] * 5} for i in range(n)]
        obj = {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": containers}}}}
        return lambda: find_launches(obj)
    assert _ratio(make, 40) < LIMIT  # from 40 containers: below, the whole object sits in the CPU cache


def test_configmap_and_loose_reading_is_linear():
    def make(n):
        data = {f"K{i}": f"v{i}" for i in range(50)}
        configmaps = ConfigMaps([("ns", f"cm{i}", data) for i in range(n)])
        containers = [{"name": f"c{i}", "image": "example/runtime:1",
                       "envFrom": [{"configMapRef": {"name": f"cm{i}"}}, {"secretRef": {"name": "s"}}],
                       "env": [{"name": "M", "valueFrom": {"configMapKeyRef": {"name": f"cm{i}", "key": "K1"}}}],
                       "args": ["--model", "$(M)", "--max-model-len", "$(K2)"] * 5,
                       "resources": {"limits": {"nvidia.com/gpu": 1}}} for i in range(n)]
        obj = {"kind": "Deployment", "metadata": {"name": "d", "namespace": "ns", "labels": {"app": "vllm"}},
               "spec": {"template": {"spec": {"containers": containers}}}}
        return lambda: find_launches(obj, configmaps=configmaps)
    assert _ratio(make, 40) < LIMIT  # from 40 containers: below, the whole object sits in the CPU cache


def test_kaito_config_reading_is_linear():
    def make(n):
        config = "vllm:\n" + "".join(f"  max-model-len: {1000 + i}\n  gpu-memory-utilization: 0.9\n"
                                       for i in range(n))
        configmaps = ConfigMaps([(None, "p", {"inference_config.yaml": config})])
        obj = {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": "w"},
               "resource": {"instanceType": "Standard_NC48ads_A100_v4"},
               "inference": {"preset": {"name": "phi-4"}, "config": "p"}}
        return lambda: find_launches(obj, configmaps=configmaps, catalog=CATALOG)
    assert _ratio(make, 100) < LIMIT


def test_non_vllm_object_is_rejected_cheaply():
    big = {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [
        {"name": f"c{i}", "image": "nginx", "args": ["--flag", "x"] * 20} for i in range(200)]}}}}
    assert not mentions_vllm(big["spec"])
    assert find_launches(big) == []
