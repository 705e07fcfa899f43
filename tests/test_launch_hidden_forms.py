"""Launch forms that hide vLLM from a reader that looks for the word (issue 16).

Each fixture in tests/fixtures/forms is written in the style of a published form (its header
cites where). The reader must find every launch with exactly the fields the manifest states,
say which rule found it, and `vllm-fit check -o json` must report the same fields.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from vllm_fit.cli.check import main as check_main
from vllm_fit.launch import find_launches
from vllm_fit.launch.find import ConfigMaps
from vllm_fit.launch.model import LOOSE_RULES
from vllm_fit.profiles import gpu_catalog

FORMS = Path(__file__).parent / "fixtures" / "forms"


def documents(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((FORMS / name).read_text()) if d]


CATALOG = gpu_catalog()


def launches(name: str, *, with_configmaps: bool = True, **kw):
    docs = documents(name)
    configmaps = ConfigMaps.from_objects(docs) if with_configmaps else None
    return [f for d in docs for f in find_launches(d, configmaps=configmaps, catalog=CATALOG, **kw)]


# file -> (container, detected_by, stated engine fields, model, unresolved, gpus count / per pod / pods)
EXPECTED = {
    "opea-gaudi-args-only-configmap.yaml": (
        "llm-server", "engine-flags",
        {"tensor_parallel_size": 1, "block_size": 128, "enforce_eager": True, "max_num_seqs": 256},
        "meta-llama/Llama-3.1-8B-Instruct", [], (0, 0, 1)),
    "rhaiis-args-only.yaml": (
        "server", "engine-flags", {"gpu_memory_utilization": 0.92, "max_model_len": 8192},
        "RedHatAI/Llama-3.2-1B-Instruct-FP8", [], (1, 1, 1)),
    "label-vendor-image.yaml": (
        "server", "label", {"dtype": "bfloat16", "max_num_seqs": 64}, "ibm-granite/granite-3.3-8b-instruct", [],
        (1, 1, 1)),
    "baked-launch-container-name.yaml": ("vllm", "container-name", {}, None, ["--model"], (2, 2, 1)),
    "configmapkeyref-shell.yaml": (
        "mistral-7b", "command", {"max_model_len": 16384}, "mistralai/Mistral-7B-Instruct-v0.3",
        ["--gpu-memory-utilization"], (1, 1, 1)),
    "lws-dp-headless.yaml": (
        "leader/vllm", "command",
        {"tensor_parallel_size": 1, "data_parallel_size": 8, "data_parallel_size_local": 4, "max_model_len": 32768,
         "enable_expert_parallel": True},
        "Qwen/Qwen3-30B-A3B", [], (8, 4, 2)),
    "kserve-llmisvc-pvc-dp-worker.yaml": (
        "template/main", "resource",
        {"tensor_parallel_size": 1, "data_parallel_size": 16, "data_parallel_size_local": 8,
         "enable_expert_parallel": True, "gpu_memory_utilization": 0.92, "max_model_len": 16384},
        "pvc://qwen3-235b-weights", ["--model"], (16, 8, 2)),
    "kserve-isvc-oci-modelcar.yaml": (
        "kserve-container", "resource", {"gpu_memory_utilization": 0.9, "max_model_len": 8192},
        "oci://registry.redhat.io/rhelai1/modelcar-granite-3-1-8b-instruct:1.5", ["--model"], (1, 1, 1)),
    "kserve-isvc-hf-revision.yaml": (
        "kserve-container", "resource", {"gpu_memory_utilization": 0.85, "max_model_len": 16384},
        "Qwen/Qwen2.5-7B-Instruct", [], (1, 1, 1)),
    "kaito-workspace-preset-config.yaml": (
        "inference", "resource",
        {"tensor_parallel_size": 2, "gpu_memory_utilization": 0.93, "max_model_len": 32768, "cpu_offload_gb": 0.0},
        "meta-llama/Llama-3.3-70B-Instruct", [], (2, 2, 1)),
    "openshift-template-servingruntime.yaml": (
        "kserve-container", "command", {"max_model_len": 8192}, "/mnt/models", [], (0, 0, 1)),
    "gke-vertex-demo-api-server.yaml": (
        "inference-server", "command",
        {"tensor_parallel_size": 2, "max_model_len": 8192, "gpu_memory_utilization": 0.95},
        "google/gemma-2-9b-it", [], (2, 2, 1)),
    "kaito-workspace-single-gpu.yaml": (
        "inference", "resource", {"gpu_memory_utilization": 0.8, "max_model_len": 8192},
        "microsoft/Phi-4-mini-instruct", [], (1, 1, 1)),
}
REVISIONS = {"kserve-isvc-hf-revision.yaml": "a09a35458c702b33eeacc393d103063234e8bc28"}


def test_every_form_fixture_has_an_expectation_and_a_citation():
    files = {p.name for p in FORMS.glob("*.yaml")}
    assert files == set(EXPECTED) | set(EXTRA_FIXTURES)
    for path in FORMS.glob("*.yaml"):
        head = path.read_text().splitlines()[:8]
        assert head[0].startswith("# Form:"), path.name
        assert any(line.startswith("# Published:") for line in head), path.name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_form_is_found_with_what_it_states(name):
    container, rule, stated, model, unresolved, (count, per_pod, pods) = EXPECTED[name]
    (found,) = launches(name)
    assert (found.container, found.detected_by) == (container, rule)
    assert found.launch.stated() == stated
    assert found.launch.model == model and found.launch.revision == REVISIONS.get(name)
    assert list(found.launch.unresolved) == unresolved
    assert (found.gpus.count, found.gpus.per_pod, found.gpus.pods) == (count, per_pod, pods)
    assert not found.problems


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if e[1] in LOOSE_RULES))
def test_strict_detection_turns_the_loose_rules_off(name):
    assert launches(name, loose=False) == []


def test_strict_detection_keeps_commands_and_vllm_images():
    assert [f.detected_by for f in launches("configmapkeyref-shell.yaml", loose=False)] == ["command"]
    pod = {"kind": "Pod", "spec": {"containers": [{"name": "c", "image": "vllm/vllm-openai:v0.11.0",
                                                   "args": ["--model", "org/m"]}]}}
    assert [f.detected_by for f in find_launches(pod, loose=False)] == ["image"]


# ---------------------------------------------------------------- item 1: the loose rules

def pod(container: dict, labels: dict | None = None, **spec) -> dict:
    base = {"name": "server", "image": "registry.example.com/ai/runtime:1", **container}
    meta = {"name": "p", "namespace": "ns", **({"labels": labels} if labels else {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [base], **spec}}


GPU = {"resources": {"limits": {"nvidia.com/gpu": 1}}}


@pytest.mark.parametrize("flag", ["--tensor-parallel-size=2", "--tensor_parallel_size=2",
                                  "--gpu-memory-utilization=0.8", "--max_model_len=4096"])
def test_engine_flags_rule_needs_model_and_one_engine_flag(flag):
    (found,) = find_launches(pod({"args": ["--model", "org/m", flag]}))
    assert found.detected_by == "engine-flags" and found.launch.model == "org/m"
    assert find_launches(pod({"args": ["--model", "org/m", "--port", "8000"]})) == []  # --model alone: not enough
    assert find_launches(pod({"args": [flag]})) == []


def test_other_servers_with_similar_flags_are_not_vllm():
    sglang = ["--model-path", "org/m", "--tp-size", "2", "--mem-fraction-static", "0.8", "--context-length", "4096"]
    tgi = ["--model-id", "org/m", "--num-shard", "2", "--max-input-length", "4096"]
    llamacpp = ["-m", "/models/m.gguf", "--ctx-size", "16384", "--n-gpu-layers", "99"]
    for args in (sglang, tgi, llamacpp):
        assert find_launches(pod({"args": args, **GPU})) == [], args


@pytest.mark.parametrize("labels", [{"app": "vllm"}, {"app.kubernetes.io/name": "vllm"}])
def test_label_rule(labels):
    (found,) = find_launches(pod({"args": ["--model", "org/m"], **GPU}, labels=labels))
    assert found.detected_by == "label" and found.launch.model == "org/m"


def test_label_rule_on_a_deployment_template_and_positional_model():
    deploy = {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {
        "metadata": {"labels": {"app": "vllm"}},
        "spec": {"containers": [{"name": "s", "image": "example/runtime:1", "args": ["org/m", "--dtype", "half"],
                                 **GPU}]}}}}
    (found,) = find_launches(deploy)
    assert (found.detected_by, found.launch.model, found.launch.dtype) == ("label", "org/m", "half")


def test_loose_rules_need_an_accelerator_and_skip_other_programs():
    assert find_launches(pod({"args": ["--model", "org/m"]}, labels={"app": "vllm"})) == []  # no accelerator
    assert find_launches(pod({"name": "vllm-router", "args": ["--port", "8000"]})) == []
    assert find_launches(pod({"args": ["python", "ui.py"], **GPU}, labels={"app": "vllm"})) == []
    assert find_launches(pod({"command": ["/entrypoint.sh"], **GPU}, labels={"app": "vllm"})) == []
    assert find_launches(pod(GPU, labels={"app": "vllm-ui"})) == []  # only the exact label value


def test_container_name_and_image_name_rules():
    (found,) = find_launches(pod({"name": "vllm-server", "args": ["--model", "org/m"], **GPU}))
    assert found.detected_by == "container-name"
    (found,) = find_launches(pod({"image": "registry.redhat.io/rhaiis/vllm-cuda-rhel9:3.2.4",
                                  "args": ["--model", "org/m"], **GPU}))
    assert found.detected_by == "image-name"
    # "vllm" as part of another word is not the name
    assert find_launches(pod({"image": "example/notvllmish:1", "args": ["--model", "org/m"], **GPU})) == []


def test_gaudi_and_other_accelerators_count_for_the_loose_rules():
    res = {"resources": {"limits": {"habana.ai/gaudi": 2}}}
    (found,) = find_launches(pod({"name": "vllm", **res}))
    assert found.launch_in_image and found.gpus.count == 0


def test_baked_launch_reports_every_engine_field_unknown_and_the_gpus():
    (found,) = launches("baked-launch-container-name.yaml")
    assert found.launch_in_image and found.launch.stated() == {} and found.launch.model is None
    assert found.gpus.count == 2 and found.gpus.resource == "nvidia.com/gpu"
    assert found.notes and "image" in found.notes[0]


def test_the_vllm_image_without_args_is_not_a_baked_launch():
    (found,) = find_launches(pod({"image": "vllm/vllm-openai:v0.11.0", **GPU}))
    assert found.detected_by == "image" and not found.launch_in_image and found.launch.unresolved == ()


# ---------------------------------------------------------------- item 2: ConfigMaps and Secrets

def test_configmap_values_resolve_only_when_the_configmap_is_given():
    (without,) = launches("opea-gaudi-args-only-configmap.yaml", with_configmaps=False)
    assert without.launch.model is None and without.launch.unresolved == ("--model",)
    assert without.config_maps == ("chatqna-vllm-config",)
    (shell,) = launches("configmapkeyref-shell.yaml", with_configmaps=False)
    assert shell.launch.model is None and set(shell.launch.unresolved) == {
        "--model", "--max-model-len", "--gpu-memory-utilization"}


def test_secret_values_are_never_read():
    configmaps = ConfigMaps([(None, "s", {"TP": "2"})])
    spec = pod({"image": "vllm/vllm-openai:v0.11.0", "args": ["--model", "org/m", "-tp", "$(TP)"],
                "envFrom": [{"secretRef": {"name": "s"}}]})
    (found,) = find_launches(spec, configmaps=configmaps)  # a ConfigMap of the same name is not the Secret
    assert found.launch.tensor_parallel_size is None and found.launch.unresolved == ("--tensor-parallel-size",)


def envfrom_pod(env_from: list, env: list | None = None) -> dict:
    return pod({"image": "vllm/vllm-openai:v0.11.0", "envFrom": env_from, "env": env or [],
                "args": ["--model", "$(M)", "--max-model-len", "$(APP_LEN)", "-tp", "$(TP)"]})


def test_envfrom_order_prefix_and_env_override():
    configmaps = ConfigMaps([("ns", "a", {"M": "org/a", "TP": "2", "LEN": "1000"}), ("ns", "b", {"M": "org/b"})])
    obj = envfrom_pod([{"configMapRef": {"name": "a"}}, {"configMapRef": {"name": "b"}},
                       {"prefix": "APP_", "configMapRef": {"name": "a"}}],
                      env=[{"name": "TP", "value": "4"}])
    (found,) = find_launches(obj, configmaps=configmaps)
    assert (found.launch.model, found.launch.max_model_len, found.launch.tensor_parallel_size) == ("org/b", 1000, 4)
    assert found.config_maps == ("a", "b")


def test_configmap_in_another_namespace_is_not_read():
    configmaps = ConfigMaps([("other", "a", {"M": "org/a", "APP_LEN": "1", "TP": "1"})])
    (found,) = find_launches(envfrom_pod([{"configMapRef": {"name": "a"}}]), configmaps=configmaps)
    assert found.launch.model is None and "--model" in found.launch.unresolved


def test_configmap_key_missing_is_unresolved():
    configmaps = ConfigMaps([("ns", "a", {"other": "x"})])
    obj = pod({"image": "vllm/vllm-openai:v0.11.0", "args": ["--model", "$(M)"],
               "env": [{"name": "M", "valueFrom": {"configMapKeyRef": {"name": "a", "key": "model"}}}]})
    (found,) = find_launches(obj, configmaps=configmaps)
    assert found.launch.unresolved == ("--model",)


# ---------------------------------------------------------------- item 5: multi-node groups

def test_lws_headless_worker_is_part_of_the_leaders_replica():
    (found,) = launches("lws-dp-headless.yaml")
    leader, worker = found.members
    assert (leader.container, leader.role, leader.pods, leader.gpus_per_pod, leader.headless) == (
        "leader/vllm", "leader", 1, 4, False)
    assert (worker.container, worker.role, worker.pods, worker.gpus_per_pod, worker.headless) == (
        "worker/vllm", "worker", 1, 4, True)
    assert (leader.data_parallel_start_rank, worker.data_parallel_start_rank) == (0, 4)
    assert worker.data_parallel_ranks_per_pod == 4


def test_lws_larger_group_counts_every_worker_pod():
    doc = documents("lws-dp-headless.yaml")[0]
    doc["spec"]["leaderWorkerTemplate"]["size"] = 4
    (found,) = find_launches(doc)
    assert (found.gpus.count, found.gpus.per_pod, found.gpus.pods) == (16, 4, 4)
    assert [m.pods for m in found.members] == [1, 3]


def test_lws_without_leader_template_is_one_template_for_every_pod():
    doc = documents("lws-dp-headless.yaml")[0]
    del doc["spec"]["leaderWorkerTemplate"]["leaderTemplate"]
    (found,) = find_launches(doc)
    assert found.container == "worker/vllm"
    (member,) = found.members
    assert (member.role, member.pods, member.gpus_per_pod) == ("worker", 2, 4)


# ---------------------------------------------------------------- item 3: KServe model sources, parallelism

def isvc(storage_uri: str, args: list | None = None) -> dict:
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "m"},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "huggingface"}, "storageUri": storage_uri,
                                             "args": args or [], "resources": {"limits": {"nvidia.com/gpu": 1}}}}}}


@pytest.mark.parametrize("uri", ["s3://bucket/models/llama-3-8b", "gs://kfserving-examples/llm/qwen",
                                 "pvc://models-pvc/granite", "oci://quay.io/org/modelcar:1",
                                 "https://example.com/m.tar.gz", "hf://${ORG}/model"])
def test_storage_uris_other_than_hf_are_reported_as_the_model_string(uri):
    (found,) = find_launches(isvc(uri))
    assert found.launch.model == uri and found.launch.unresolved == ("--model",)


def test_hf_uri_is_a_hugging_face_id_and_model_id_flag_wins():
    (found,) = find_launches(isvc("hf://meta-llama/Llama-3.1-8B-Instruct"))
    assert (found.launch.model, found.launch.revision, found.launch.unresolved) == (
        "meta-llama/Llama-3.1-8B-Instruct", None, ())
    (found,) = find_launches(isvc("s3://bucket/x", ["--model_id=org/named"]))
    assert found.launch.model == "org/named" and found.launch.unresolved == ()


def llmisvc(parallelism: dict, worker: bool) -> dict:
    main = {"name": "main", "resources": {"limits": {"nvidia.com/gpu": 4}}}
    spec = {"model": {"uri": "hf://Qwen/Qwen3-30B-A3B"}, "parallelism": parallelism,
            "template": {"containers": [main]}}
    if worker:
        spec["worker"] = {"containers": [dict(main)]}
    return {"apiVersion": "serving.kserve.io/v1alpha2", "kind": "LLMInferenceService", "metadata": {"name": "q"},
            "spec": spec}


def test_llmisvc_without_worker_passes_only_tensor_parallelism():
    """KServe's single-node config (config-llm-template.yaml) gives vLLM only --tensor-parallel-size."""
    (found,) = find_launches(llmisvc({"tensor": 4, "data": 2, "dataLocal": 2, "expert": True}, worker=False))
    assert found.launch.stated() == {"tensor_parallel_size": 4}
    assert (found.gpus.count, found.gpus.pods, found.members) == (4, 1, ())


def test_llmisvc_data_parallel_worker_ranks_per_pod_and_replica_gpus():
    (found,) = find_launches(llmisvc({"tensor": 2, "data": 8, "dataLocal": 2}, worker=True))
    assert (found.launch.tensor_parallel_size, found.launch.data_parallel_size,
            found.launch.data_parallel_size_local, found.launch.enable_expert_parallel) == (2, 8, 2, None)
    assert (found.gpus.count, found.gpus.per_pod, found.gpus.pods) == (16, 4, 4)
    leader, worker = found.members
    assert (leader.pods, worker.pods, worker.headless, worker.data_parallel_ranks_per_pod) == (1, 3, True, 2)
    assert (leader.data_parallel_start_rank, worker.data_parallel_start_rank) == (0, 2)


def test_llmisvc_pipeline_worker_and_missing_template():
    (found,) = find_launches(llmisvc({"tensor": 4, "pipeline": 2}, worker=True))
    assert (found.launch.pipeline_parallel_size, found.gpus.count, found.gpus.pods) == (2, 8, 2)
    bare = {"kind": "LLMInferenceService", "metadata": {"name": "b"},
            "spec": {"model": {"uri": "hf://org/m"}, "parallelism": {"tensor": 2}}}
    (found,) = find_launches(bare)
    assert found.launch.model == "org/m" and found.gpus.count is None and found.notes


# ---------------------------------------------------------------- item 4: KAITO Workspaces

def kaito(name: str = "phi-4-mini-instruct", instance: str | None = "Standard_NC80adis_H100_v5", count: int = 1,
          config: str | None = None, **meta) -> dict:
    resource = {"count": count, **({"instanceType": instance} if instance else {})}
    inference: dict = {"preset": {"name": name}}
    if config:
        inference["config"] = config
    return {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": "w", **meta},
            "resource": resource, "inference": inference}


def config_map(name: str, vllm: dict) -> ConfigMaps:
    return ConfigMaps([(None, name, {"inference_config.yaml": yaml.safe_dump({"vllm": vllm})})])


def test_kaito_parallelism_left_to_kaito_is_not_judged_and_says_why():
    (found,) = find_launches(kaito(), catalog=CATALOG)
    assert found.launch.model == "microsoft/Phi-4-mini-instruct" and found.gpus.count == 2
    assert found.not_judged and "tensor-parallel-size" in found.not_judged
    (one_gpu,) = find_launches(kaito(instance="Standard_NC40ads_H100_v5"), catalog=CATALOG)
    assert one_gpu.not_judged is None and one_gpu.gpus.count == 1


def test_kaito_multi_node_with_parallelism_in_the_config():
    cms = config_map("p", {"tensor-parallel-size": 2, "pipeline-parallel-size": 2})
    (found,) = find_launches(kaito(count=2, config="p"), catalog=CATALOG, configmaps=cms)
    assert (found.launch.tensor_parallel_size, found.launch.pipeline_parallel_size) == (2, 2)
    assert (found.gpus.count, found.gpus.per_pod, found.gpus.pods) == (4, 2, 2)
    assert [m.pods for m in found.members] == [1, 1] and found.not_judged is None


def test_kaito_unknowns_are_said():
    (found,) = find_launches(kaito(name="my-private-preset", instance="Standard_NC40ads_H100_v5"), catalog=CATALOG)
    assert found.launch.model is None and found.launch.unresolved == ("--model",)
    assert "preset table" in found.notes[0]
    (found,) = find_launches(kaito(name="Qwen/Qwen3-8B", instance="Standard_NC40ads_H100_v5", config="gone"),
                             catalog=CATALOG)
    assert found.launch.model == "Qwen/Qwen3-8B" and found.launch.unresolved == ("--config",)
    assert found.config_maps == ("gone",) and "not available" in found.notes[0]
    (found,) = find_launches(kaito(instance="Standard_Unknown_v9"), catalog=CATALOG)
    assert found.gpus.count is None and "not in vllm-fit's GPU catalog" in found.notes[0]
    (found,) = find_launches(kaito(instance=None), catalog=CATALOG)
    assert found.gpus.count is None and "instanceType" in found.notes[0]
    bad = ConfigMaps([(None, "bad", {"inference_config.yaml": "vllm: [unclosed"})])
    (found,) = find_launches(kaito(config="bad"), catalog=CATALOG, configmaps=bad)
    assert "not valid YAML" in found.notes[0] and "--config" in found.launch.unresolved


def test_kaito_transformers_runtime_and_other_workspace_kinds_are_not_vllm():
    assert find_launches(kaito(annotations={"kaito.sh/runtime": "transformers"}), catalog=CATALOG) == []
    other = dict(kaito(), apiVersion="app.terraform.io/v1alpha2")
    assert find_launches(other, catalog=CATALOG) == []


def test_kaito_custom_template_is_read_as_a_pod_spec():
    obj = kaito()
    obj["inference"] = {"template": {"spec": {"containers": [{
        "name": "custom", "image": "vllm/vllm-openai:v0.11.0", "args": ["--model", "org/m", "-tp", "2"],
        "resources": {"limits": {"nvidia.com/gpu": 2}}}]}}}
    (found,) = find_launches(obj, catalog=CATALOG)
    assert (found.container, found.launch.tensor_parallel_size, found.gpus.count) == ("inference.template/custom", 2, 2)


def test_check_json_for_a_kaito_workspace_left_to_kaito():
    code, out, _ = run_check([str(FORMS / "kaito-workspace-single-gpu.yaml"), "-o", "json"])
    (entry,) = json.loads(out)
    assert entry["gpus"]["type"] == "Standard_NV36ads_A10_v5" and entry["config_maps"] == ["phi-params"]


# ---------------------------------------------------------------- check -o json

def run_check(argv):
    out, err = io.StringIO(), io.StringIO()
    code = check_main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_check_json_reports_the_engine_fields_as_the_manifest_gives_them(name):
    container, rule, stated, model, unresolved, (count, per_pod, pods) = EXPECTED[name]
    code, out, err = run_check([str(FORMS / name), "-o", "json"])
    assert code in (0, 1), err
    (entry,) = json.loads(out)
    assert (entry["container"], entry["detected_by"]) == (container, rule)
    launch = entry["launch"]
    given = {k: v for k, v in launch.items()
             if v is not None and k not in ("model", "revision", "unresolved", "vllm_version")}
    assert given == stated
    assert launch["model"] == model and launch["unresolved"] == unresolved
    assert launch["revision"] == REVISIONS.get(name)
    gpus = entry["gpus"]
    assert (gpus["per_replica"], gpus["per_pod"], gpus["pods"]) == (count, per_pod, pods)
    assert gpus["count"] == gpus["per_replica"]


def test_check_json_names_the_members_and_the_in_image_launch():
    _, out, _ = run_check([str(FORMS / "lws-dp-headless.yaml"), "-o", "json"])
    (entry,) = json.loads(out)
    assert [(m["container"], m["headless"], m["gpus_per_pod"]) for m in entry["members"]] == [
        ("leader/vllm", False, 4), ("worker/vllm", True, 4)]
    _, out, _ = run_check([str(FORMS / "baked-launch-container-name.yaml"), "-o", "json"])
    (entry,) = json.loads(out)
    assert entry["launch_in_image"] is True
    assert "launch-in-image" in [r["code"] for r in entry["verdict"]["reasons"]]


def test_check_reads_configmaps_from_other_input_files(tmp_path):
    docs = documents("opea-gaudi-args-only-configmap.yaml")
    (tmp_path / "cm.yaml").write_text(yaml.safe_dump(docs[0]))
    (tmp_path / "deploy.yaml").write_text(yaml.safe_dump(docs[1]))
    _, out, _ = run_check([str(tmp_path / "deploy.yaml"), "-o", "json"])
    assert json.loads(out)[0]["launch"]["model"] is None
    _, out, _ = run_check([str(tmp_path), "-o", "json"])
    (entry,) = json.loads(out)
    assert entry["launch"]["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert entry["config_maps"] == ["chatqna-vllm-config"]


def test_check_detection_option():
    code, out, _ = run_check([str(FORMS / "rhaiis-args-only.yaml"), "--detection", "strict", "-o", "json"])
    assert code == 0 and json.loads(out) == []
    code, _, err = run_check([str(FORMS / "rhaiis-args-only.yaml"), "--detection", "maybe"])
    assert code == 2 and "--detection" in err


EXTRA_FIXTURES: dict[str, str] = {}


# ---------------------------------------------------------------- the webhook

def reviewer(**config):
    from vllm_fit.admission.config import WebhookConfig
    from vllm_fit.admission.review import Reviewer
    from vllm_fit.hub.resolver import BundledResolver
    from vllm_fit.profiles import gpu_catalog, runtime_profiles

    return Reviewer(WebhookConfig(**config), BundledResolver(), gpu_catalog(), runtime_profiles())


@pytest.mark.parametrize("name", ["rhaiis-args-only.yaml", "label-vendor-image.yaml",
                                  "baked-launch-container-name.yaml"])
def test_webhook_gate_and_review_see_the_loose_forms(name):
    import asyncio

    obj = next(d for d in documents(name) if d["kind"] != "ConfigMap")
    loose, strict = reviewer(), reviewer(loose_detection=False)
    assert loose.needs_review(obj, json.dumps(obj)) and loose.needs_review(obj)
    judgement = asyncio.run(loose.review(obj))
    assert [r.found.detected_by for r in judgement.launches] == [EXPECTED[name][1]]
    assert asyncio.run(strict.review(obj)).launches == ()


def test_webhook_match_conditions_let_the_loose_forms_through():
    """The API server's CEL filter (same text in the chart) names engine flags, labels and names."""
    from vllm_fit.admission.webhooks import MATCH_CONDITIONS

    expression = MATCH_CONDITIONS[0]["expression"]
    for needle in ("c.name.contains('vllm')", "x.contains('max-model-len')", "x.contains('tensor_parallel_size')",
                   "labels['app.kubernetes.io/name'] == 'vllm'", "'Workspace'"):
        assert needle in expression


def test_shell_defaults_are_unknowable_when_an_unread_source_may_define_the_name():
    script = "vllm serve org/m --max-model-len ${MAX_LEN:-4096} --gpu-memory-utilization ${UTIL:=0.85}"
    base = {"image": "vllm/vllm-openai:v0.11.0", "command": ["sh", "-c", script]}
    (plain,) = find_launches(pod(base))
    assert (plain.launch.max_model_len, plain.launch.gpu_memory_utilization) == (4096, 0.85)
    (secret,) = find_launches(pod({**base, "envFrom": [{"secretRef": {"name": "tuning"}}]}))
    assert secret.launch.max_model_len is None
    assert set(secret.launch.unresolved) == {"--max-model-len", "--gpu-memory-utilization"}
    # A ConfigMap that is read names its keys: the defaults apply to the others.
    cms = ConfigMaps([("ns", "tuning", {"UTIL": "0.7"})])
    (read,) = find_launches(pod({**base, "envFrom": [{"configMapRef": {"name": "tuning"}}]}), configmaps=cms)
    assert (read.launch.max_model_len, read.launch.gpu_memory_utilization) == (4096, 0.7)


def test_a_vllm_image_name_with_vllm_flags_needs_no_accelerator_but_a_bare_one_does():
    cpu = {"image": "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.10.2", "args": ["--model", "org/m"]}
    (found,) = find_launches(pod(cpu))
    assert found.detected_by == "image-name" and found.gpus.count == 0
    assert find_launches(pod({"image": cpu["image"]})) == []  # no args, no accelerator: nothing to say
    assert find_launches(pod({"image": cpu["image"], "args": ["python", "app.py"]})) == []
    # a label or a container name alone never marks an accelerator-less container (sidecars share labels)
    assert find_launches(pod({"name": "vllm", "args": ["--listen", ":9400"]}, labels={"app": "vllm"})) == []


def test_one_lws_template_whose_script_branches_into_a_headless_worker():
    """KServe's worker config runs `vllm serve` on pod 0 and `vllm serve ... --headless` on the others
    from one script (config-llm-worker-data-parallel.yaml): one replica, the API server's launch."""
    script = ("START_RANK=$(( ${LWS_WORKER_INDEX:-0} * 4 ))\n"
              "if [ \"${LWS_WORKER_INDEX:-0}\" -eq 0 ]; then\n"
              "  exec vllm serve org/m -tp 1 --data-parallel-size 8 --data-parallel-size-local 4\n"
              "else\n"
              "  exec vllm serve org/m -tp 1 --data-parallel-size 8 --data-parallel-size-local 4 "
              "--data-parallel-start-rank $START_RANK --headless\n"
              "fi\n")
    lws = {"kind": "LeaderWorkerSet", "metadata": {"name": "g"}, "spec": {"leaderWorkerTemplate": {
        "size": 2, "workerTemplate": {"spec": {"containers": [{
            "name": "main", "image": "vllm/vllm-openai:v0.11.0", "command": ["/bin/bash", "-c", script],
            "resources": {"limits": {"nvidia.com/gpu": 4}}}]}}}}}
    (found,) = find_launches(lws)
    assert not found.headless and found.launch.data_parallel_size == 8 and found.gpus.count == 8
    leader, worker = found.members
    assert (leader.role, leader.pods, leader.headless) == ("leader", 1, False)
    assert (worker.role, worker.pods, worker.headless, worker.data_parallel_start_rank) == ("worker", 1, True, 4)


def test_check_model_id_annotation_fills_only_an_unknown_model(tmp_path):
    docs = documents("kserve-isvc-oci-modelcar.yaml")
    docs[0]["metadata"]["annotations"]["vllm-fit.io/model-id"] = "ibm-granite/granite-3.1-8b-instruct"
    (tmp_path / "isvc.yaml").write_text(yaml.safe_dump(docs[0]))
    _, out, _ = run_check([str(tmp_path / "isvc.yaml"), "-o", "json"])
    (entry,) = json.loads(out)
    assert entry["launch"]["model"] == "ibm-granite/granite-3.1-8b-instruct" and entry["launch"]["unresolved"] == []
    # a model the launch states as a Hugging Face id is never replaced
    docs = documents("kserve-isvc-hf-revision.yaml")
    docs[0]["metadata"]["annotations"] = {"vllm-fit.io/model-id": "org/other"}
    (tmp_path / "hf.yaml").write_text(yaml.safe_dump(docs[0]))
    _, out, _ = run_check([str(tmp_path / "hf.yaml"), "-o", "json"])
    assert json.loads(out)[0]["launch"]["model"] == "Qwen/Qwen2.5-7B-Instruct"
