"""KAITO Workspaces (kaito.sh/v1alpha1, v1beta1): the vLLM launch KAITO's controller makes.

A Workspace states no command. KAITO runs vLLM's OpenAI server (its default runtime since
v0.4.0; the `kaito.sh/runtime: transformers` annotation picks Hugging Face transformers instead)
for `inference.preset.name`, on `resource.count` nodes of `resource.instanceType`, and appends
the `vllm:` section of the `inference_config.yaml` key of the ConfigMap named by
`inference.config` as `--key value` flags after its own, so those win
(presets/workspace/inference/vllm/inference_api.py, KaitoConfig). What this reader reports:
- the model: the preset's Hugging Face id from the table below (newer KAITO also accepts the
  Hugging Face id itself as the preset name);
- the engine fields exactly as the inference config gives them (nothing KAITO adds);
- the GPUs: the instance type's GPU count per node (from the GPU catalog) times the node count.

KAITO chooses the parallelism itself when the config does not (pkg/model/interface.go,
configureParallelism: data parallel when the model takes under half a GPU, else tensor
parallel over the node's GPUs, plus pipeline parallel over nodes), from the model's size at
deploy time. Such a Workspace on more than one GPU is reported as not judged, saying why.
`inference.template` (a custom pod template) is read as any pod spec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import yaml

from .k8s import PodTemplate
from .model import GpuRequest, ReplicaMember

if TYPE_CHECKING:
    from .find import FoundLaunch, _Context

# KAITO preset name -> Hugging Face id. From kaito-project/kaito
# presets/workspace/models/supported_models.yaml (commit 056b8280, 2026-08-21): each preset's
# `version` is https://huggingface.co/<id>/commit/<sha>.
PRESET_MODELS: dict[str, str] = {
    "llama-3.1-8b-instruct": "meta-llama/Llama-3.1-8B-Instruct",
    "llama-3.3-70b-instruct": "meta-llama/Llama-3.3-70B-Instruct",
    "deepseek-r1-0528": "deepseek-ai/DeepSeek-R1-0528",
    "deepseek-v3-0324": "deepseek-ai/DeepSeek-V3-0324",
    "deepseek-r1-distill-qwen-14b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
    "deepseek-r1-distill-llama-8b": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
    "falcon-7b": "tiiuae/falcon-7b",
    "falcon-7b-instruct": "tiiuae/falcon-7b-instruct",
    "falcon-40b": "tiiuae/falcon-40b",
    "falcon-40b-instruct": "tiiuae/falcon-40b-instruct",
    "mistral-7b": "mistralai/Mistral-7B-v0.3",
    "mistral-7b-instruct": "mistralai/Mistral-7B-Instruct-v0.3",
    "ministral-3-3b-instruct": "mistralai/Ministral-3-3B-Instruct-2512",
    "ministral-3-8b-instruct": "mistralai/Ministral-3-8B-Instruct-2512",
    "ministral-3-14b-instruct": "mistralai/Ministral-3-14B-Instruct-2512",
    "mistral-large-3-675b-instruct": "mistralai/Mistral-Large-3-675B-Instruct-2512",
    "phi-2": "microsoft/phi-2",
    "phi-3-mini-4k-instruct": "microsoft/Phi-3-mini-4k-instruct",
    "phi-3-mini-128k-instruct": "microsoft/Phi-3-mini-128k-instruct",
    "phi-3-medium-4k-instruct": "microsoft/Phi-3-medium-4k-instruct",
    "phi-3-medium-128k-instruct": "microsoft/Phi-3-medium-128k-instruct",
    "phi-3.5-mini-instruct": "microsoft/Phi-3.5-mini-instruct",
    "phi-4-mini-instruct": "microsoft/Phi-4-mini-instruct",
    "phi-4": "microsoft/phi-4",
    "qwen2.5-coder-7b-instruct": "Qwen/Qwen2.5-Coder-7B-Instruct",
    "qwen2.5-coder-32b-instruct": "Qwen/Qwen2.5-Coder-32B-Instruct",
    "gemma-3-4b-instruct": "google/gemma-3-4b-it",
    "gemma-3-27b-instruct": "google/gemma-3-27b-it",
    "gpt-oss-20b": "openai/gpt-oss-20b",
    "gpt-oss-120b": "openai/gpt-oss-120b",
}

CONFIG_KEY = "inference_config.yaml"
RUNTIME_ANNOTATION = "kaito.sh/runtime"
_MAX_CONFIG_BYTES = 256 * 1024


def preset_model(name: Any) -> Optional[str]:
    """The Hugging Face id a preset name stands for: the table, or the name itself when it is one."""
    if not isinstance(name, str) or not name.strip():
        return None
    name = name.strip()
    found = PRESET_MODELS.get(name.lower())
    if found:
        return found
    parts = name.split("/")
    return name if len(parts) == 2 and all(parts) else None


def config_flags(text: Any) -> tuple[Optional[list[str]], Optional[str]]:
    """(`--key value` flags of the config's `vllm:` section, as KAITO appends them; a problem)."""
    if not isinstance(text, str):
        return [], None
    if len(text) > _MAX_CONFIG_BYTES:
        return None, f"{CONFIG_KEY} is larger than {_MAX_CONFIG_BYTES // 1024} KiB"
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        return None, f"{CONFIG_KEY} is not valid YAML ({str(exc).splitlines()[0][:80]})"
    section = data.get("vllm") if isinstance(data, dict) else None
    if section is None:
        return [], None
    if not isinstance(section, dict):
        return None, f"the vllm section of {CONFIG_KEY} is not a mapping"
    flags: list[str] = []
    for key, value in list(section.items())[:1000]:
        if not isinstance(key, str) or isinstance(value, (dict, list)):
            continue  # KAITO would pass str(value); nested values name no memory setting
        flags += [f"--{key}", _kaito_str(value)]
    return flags, None


def _kaito_str(value: Any) -> str:
    # KAITO's own str(value) in Python: True -> "True", None -> "None".
    return str(value)


def _int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def workspace(ctx: "_Context", obj: dict) -> list["FoundLaunch"]:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
    if str(annotations.get(RUNTIME_ANNOTATION, "")).strip().lower() in ("transformers", "tfs"):
        return []  # Hugging Face transformers, not vLLM
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else obj  # fields are top-level in KAITO
    inference = spec.get("inference") if isinstance(spec.get("inference"), dict) else None
    if inference is None:
        return []  # a tuning Workspace, or nothing to serve
    resource = spec.get("resource") if isinstance(spec.get("resource"), dict) else {}
    template = inference.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        labels = template.get("metadata", {}).get("labels") if isinstance(template.get("metadata"), dict) else None
        return ctx.template_launches(PodTemplate("inference.template", template["spec"], [annotations],
                                                 labels=[labels if isinstance(labels, dict) else None]))
    preset = inference.get("preset") if isinstance(inference.get("preset"), dict) else {}
    name = preset.get("name")
    if not isinstance(name, str) or not name.strip():
        return []
    notes: list[str] = []
    model = preset_model(name)
    head: list[str] = ["--model", model] if model else []
    config_name = inference.get("config") if isinstance(inference.get("config"), str) else None
    config_maps: tuple[str, ...] = ()
    unknown_config = False
    flags: list[str] = []
    if config_name:
        config_maps = (config_name,)
        data = ctx.configmap(config_name) if ctx.configmap is not None else None
        if data is None:
            unknown_config = True
            notes.append(f"the inference config ConfigMap {config_name} is not available here: its vLLM settings "
                         f"are unknown")
        else:
            parsed, problem = config_flags(data.get(CONFIG_KEY))
            if problem:
                unknown_config = True
                notes.append(f"ConfigMap {config_name}: {problem}; KAITO would not start")
            flags = parsed or []
    launch, problems, ignored, options = ctx.parse("api_server", head + flags, None, {})
    updates: dict[str, Any] = {}
    if not model:
        updates["unresolved"] = (*launch.unresolved, "--model")
        notes.append(f"KAITO preset {name!r} is not in vllm-fit's preset table (kaito.py): its model is unknown")
    if unknown_config:
        updates["unresolved"] = (*updates.get("unresolved", launch.unresolved), "--config")
    if updates:
        launch = launch.model_copy(update=updates)
    gpus, per_node, nodes, gpu_note = _gpus(ctx, resource)
    if gpu_note:
        notes.append(gpu_note)
    not_judged = None
    if per_node is not None and per_node * nodes > 1 and launch.tensor_parallel_size is None \
            and not unknown_config:
        not_judged = (f"KAITO chooses the parallelism over the {per_node * nodes} GPUs ({nodes} x {per_node}) from "
                      f"the model's size when it deploys; set tensor-parallel-size (and pipeline-parallel-size over "
                      f"nodes) in the inference config to have this Workspace judged")
    members: tuple[ReplicaMember, ...] = ()
    if nodes > 1 and per_node is not None:
        members = (ReplicaMember(container="workspace/leader", role="leader", pods=1, gpus_per_pod=per_node),
                   ReplicaMember(container="workspace/worker", role="worker", pods=nodes - 1, gpus_per_pod=per_node))
    return [ctx.found("inference", None, launch, gpus, problems, ignored, detected_by="resource",
                      config_maps=config_maps, notes=tuple(notes), members=members, not_judged=not_judged,
                      options=options)]


def _gpus(ctx: "_Context", resource: dict) -> tuple[GpuRequest, Optional[int], int, Optional[str]]:
    """(GpuRequest, GPUs per node, nodes, a note when the GPUs are not known)."""
    nodes = _int(resource.get("count")) or 1
    nodes = max(nodes, 1)
    instance = resource.get("instanceType") if isinstance(resource.get("instanceType"), str) else None
    if not instance:
        return (GpuRequest(count=None, pods=nodes, type_source="unknown"), None, nodes,
                "the Workspace names no instanceType (preferred nodes only): its GPUs are not known here")
    gpu = ctx.catalog.by_instance_type(instance) if ctx.catalog is not None else None
    per_node = gpu.instance_types.get(instance) if gpu is not None else None
    if per_node is None:
        return (GpuRequest(count=None, pods=nodes, type=instance, type_source="instance-type"), None, nodes,
                f"instance type {instance} is not in vllm-fit's GPU catalog: its GPUs are not known here")
    resource_name = "amd.com/gpu" if gpu is not None and getattr(gpu, "vendor", "") == "amd" else "nvidia.com/gpu"
    return (GpuRequest(count=per_node * nodes, per_pod=per_node, pods=nodes, resource=resource_name, type=instance,
                       type_source="instance-type"), per_node, nodes, None)
