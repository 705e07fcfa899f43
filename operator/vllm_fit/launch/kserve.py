"""KServe: the vLLM launch an InferenceService or LLMInferenceService asks its controller for.

KServe writes the `vllm serve` command itself, from its own fields, so the launch is assembled
here as the controller would assemble it (what vLLM will see), read from:
- InferenceService `predictor.model`: the Hugging Face runtime's `--model_id` and its vLLM
  pass-through flags, `storageUri`, `workerSpec.tensorParallelSize/pipelineParallelSize`
  (multi-node); custom `predictor.containers` are read as any pod spec;
- LLMInferenceService: `spec.model.uri`, `spec.parallelism`, `spec.template`, `spec.worker`,
  `spec.prefill`, and the `VLLM_ADDITIONAL_ARGS` env, as KServe's well-known configs
  (config/llmisvcconfig/config-llm-*.yaml) turn them into flags: without a worker only
  `--tensor-parallel-size`; with a worker and data parallelism every pod runs `vllm serve` with
  `--data-parallel-size`, `--data-parallel-size-local`, `--enable-expert-parallel` and TP, the
  leader from `template`, the other `data/dataLocal - 1` pods `--headless` from `worker`.

Model sources: `hf://owner/model[:revision]` is a Hugging Face id; any other URI (`pvc://`,
`s3://`, `gs://`, `oci://`, `https://`) is reported as the model string and the model is
unknown (`--model` unresolved) unless the `vllm-fit.io/model-id` annotation names it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

from .argv import UnresolvedValue
from .gpus import container_gpus, gpu_request, gpu_type, other_accelerator, placement_of
from .k8s import PodTemplate
from .model import ReplicaMember, VllmLaunch
from .shell import split_words

if TYPE_CHECKING:  # the reader context and its result type live in find.py, which imports this module
    from .find import FoundLaunch, _Context

_HF_ONLY_FLAGS = ("--model_name", "--model-name", "--model_id", "--model-id", "--model_dir", "--model-dir",
                  "--model_revision", "--model-revision", "--backend", "--task")
STORAGE_SCHEMES = ("hf://", "pvc://", "s3://", "gs://", "oci://", "https://", "http://")


class ModelSource:
    """What a KServe storage URI says about the model."""

    __slots__ = ("uri", "model_id", "revision")

    def __init__(self, uri: str, model_id: Optional[str] = None, revision: Optional[str] = None) -> None:
        self.uri, self.model_id, self.revision = uri, model_id, revision

    def head(self) -> list[str]:
        """The flags KServe's runtime effectively gives vLLM for this source."""
        if self.model_id is not None:
            return ["--model", self.model_id] + (["--revision", self.revision] if self.revision else [])
        return ["--model", UnresolvedValue(self.uri, f"{self.uri}: the weights' contents are not knowable here")]

    def apply(self, launch: VllmLaunch) -> VllmLaunch:
        """A non-Hugging-Face source: the model is reported as the URI, and stays unknown."""
        if self.model_id is not None or launch.model is not None:
            return launch
        unresolved = launch.unresolved if "--model" in launch.unresolved else (*launch.unresolved, "--model")
        return launch.model_copy(update={"model": self.uri, "unresolved": unresolved,
                                         "sources": {**launch.sources, "model": "storage-uri"}})


def model_source(uri: Any) -> Optional[ModelSource]:
    """`hf://owner/model[:revision]` -> the Hugging Face id (KServe's storage initializer format);
    any other URI (or an hf:// one with a placeholder) -> the URI itself, model unknown."""
    if not isinstance(uri, str) or not uri.strip():
        return None
    uri = uri.strip()
    if uri.startswith("hf://") and "${" not in uri and "$(" not in uri:
        path = uri[5:].split("?", 1)[0].strip("/")
        repo, _, revision = path.partition(":")
        if repo.count("/") == 1 and all(repo.split("/")):
            return ModelSource(uri, repo, revision or None)
    return ModelSource(uri)


def _hf_flag(argv: list[str], names: Sequence[str]) -> Optional[str]:
    value = None
    for i, token in enumerate(argv):
        key, eq, attached = token.partition("=")
        if key in names:
            if eq:
                value = UnresolvedValue(attached) if isinstance(token, UnresolvedValue) else attached
            elif i + 1 < len(argv):
                value = argv[i + 1]
    return value


def _is_hf_token(argv: list[str], i: int) -> bool:
    if argv[i].partition("=")[0] in _HF_ONLY_FLAGS:
        return True
    return i > 0 and argv[i - 1] in _HF_ONLY_FLAGS


def _int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _annotations(node: Any, obj: dict) -> list[Optional[dict]]:
    own = node.get("annotations") if isinstance(node, dict) else None
    if isinstance(node, dict) and isinstance(node.get("metadata"), dict):
        own = node["metadata"].get("annotations")
    top = obj.get("metadata", {}).get("annotations") if isinstance(obj.get("metadata"), dict) else None
    return [own if isinstance(own, dict) else None, top if isinstance(top, dict) else None]


# ---------------------------------------------------------------- InferenceService

def inference_service(ctx: "_Context", obj: dict) -> list["FoundLaunch"]:
    predictor = obj.get("spec", {}).get("predictor") if isinstance(obj.get("spec"), dict) else None
    if not isinstance(predictor, dict):
        return []
    annotations = _annotations(predictor, obj)
    out: list[FoundLaunch] = []
    model = predictor.get("model")
    if isinstance(model, dict):
        found = _predictor_model(ctx, predictor, model, annotations)
        if found is not None:
            out.append(found)
    if isinstance(predictor.get("containers"), list):
        out.extend(ctx.template_launches(PodTemplate("", predictor, annotations)))
    return out


def _predictor_model(ctx: "_Context", predictor: dict, model: dict, annotations: list[Optional[dict]]
                     ) -> Optional["FoundLaunch"]:
    fmt = model.get("modelFormat") if isinstance(model.get("modelFormat"), dict) else {}
    fmt_name = str(fmt.get("name", "")).lower()
    env = ctx.env(model)
    argv = ctx.expand(ctx.strings(model.get("args"), "predictor.model.args"), dict(env.values))
    backend = _hf_flag(argv, ("--backend",))
    runtime = str(model.get("runtime") or "")
    if not (fmt_name == "vllm" or "vllm" in runtime or (fmt_name == "huggingface" and backend in (None, "vllm"))):
        return None
    model_id = _hf_flag(argv, ("--model_id", "--model-id"))
    rest = [t for i, t in enumerate(argv) if not _is_hf_token(argv, i)]
    source = None
    head: list[str] = []
    if model_id is not None:
        head = ["--model", model_id]
    elif _hf_flag(argv, ("--model",)) is None:
        source = model_source(model.get("storageUri"))
        head = source.head() if source is not None else []
    worker = predictor.get("workerSpec")
    nodes = 1
    if isinstance(worker, dict):
        tp, pp = _int(worker.get("tensorParallelSize")), _int(worker.get("pipelineParallelSize"))
        if tp is not None:
            head += ["--tensor-parallel-size", str(tp)]
        if pp is not None:
            head += ["--pipeline-parallel-size", str(pp)]
            nodes = max(pp, 1)
    image = model.get("image") if isinstance(model.get("image"), str) else None
    launch, problems, ignored, options = ctx.parse("serve", head + rest, image, dict(env.values))
    if source is not None:
        launch = source.apply(launch)
    count, resource = container_gpus(model, "predictor.model.resources")
    kind_source = gpu_type(annotations, predictor, resource, ctx.default_gpu)
    gpus = gpu_request(count * nodes, resource, kind_source).model_copy(update={"per_pod": count, "pods": nodes})
    members: tuple[ReplicaMember, ...] = ()
    if nodes > 1:
        members = (ReplicaMember(container="kserve-container", role="leader", pods=1, gpus_per_pod=count),
                   ReplicaMember(container="worker", role="worker", pods=nodes - 1, gpus_per_pod=count))
    return ctx.found("kserve-container", image, launch, gpus, problems, ignored, detected_by="resource",
                     config_maps=env.config_maps, members=members, options=options,
                     placement=placement_of(predictor),
                     accelerator=other_accelerator(model, image, rest, dict(env.values)) if not count else None)


# ---------------------------------------------------------------- LLMInferenceService

def _main_container(pod_spec: Any) -> Optional[dict]:
    if not isinstance(pod_spec, dict):
        return None
    containers = [c for c in (pod_spec.get("containers") or []) if isinstance(c, dict)] \
        if isinstance(pod_spec.get("containers"), list) else []
    return next((c for c in containers if c.get("name") == "main"), containers[0] if containers else None)


def llm_inference_service(ctx: "_Context", obj: dict) -> list["FoundLaunch"]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return []
    model = spec.get("model") if isinstance(spec.get("model"), dict) else {}
    source = model_source(model.get("uri"))
    out: list[FoundLaunch] = []
    roles: list[tuple[str, dict]] = [("", spec)]
    if isinstance(spec.get("prefill"), dict):
        roles.append(("prefill.", spec["prefill"]))
    for prefix, role in roles:
        found = _llmisvc_role(ctx, obj, prefix, role, source)
        if found is not None:
            out.append(found)
    return out


def _llmisvc_role(ctx: "_Context", obj: dict, prefix: str, role: dict, source: Optional[ModelSource]
                  ) -> Optional["FoundLaunch"]:
    template = role.get("template") if isinstance(role.get("template"), dict) else None
    worker = role.get("worker") if isinstance(role.get("worker"), dict) else None
    if template is None and not prefix and worker is None and source is None:
        return None
    if template is None and prefix:
        return None  # a prefill section without its own pods
    par = role.get("parallelism") if isinstance(role.get("parallelism"), dict) else {}
    tensor, pipeline = _int(par.get("tensor")), _int(par.get("pipeline"))
    data, data_local = _int(par.get("data")), _int(par.get("dataLocal"))
    data_parallel = bool((data or 0) > 0 or (data_local or 0) > 0)
    head: list[str] = source.head() if source is not None else []
    pods = 1
    if tensor:
        head += ["--tensor-parallel-size", str(tensor)]
    if worker is not None and data_parallel:
        # config-llm-worker-data-parallel.yaml: every pod gets the whole DP geometry.
        data_size, local_size = max(data or 1, 1), max(data_local or 1, 1)
        head += ["--data-parallel-size", str(data_size), "--data-parallel-size-local", str(local_size)]
        if par.get("expert") is True:
            head.append("--enable-expert-parallel")
        pods = max(data_size // local_size, 1)  # KServe's ParallelismSpec.GetSize(): the LWS size
    elif worker is not None and (pipeline or 0) > 0:
        head += ["--pipeline-parallel-size", str(pipeline)]
        pods = pipeline or 1
    main = _main_container(template)
    env = ctx.env(main or {})
    variables = dict(env.values)
    extra: list[str] = []
    additional = variables.get("VLLM_ADDITIONAL_ARGS")
    if additional:
        extra = split_words(additional, variables)
    # The template's args follow KServe's own flags (its `bash -c '... vllm serve ... $@' --`).
    args = ctx.expand(ctx.strings((main or {}).get("args"), f"{prefix}template.args"), variables)
    image = main.get("image") if main is not None and isinstance(main.get("image"), str) else None
    launch, problems, ignored, options = ctx.parse("serve", head + args + extra, image, variables)
    if source is not None:
        launch = source.apply(launch)
    if "VLLM_ADDITIONAL_ARGS" in variables and additional is None:
        launch = launch.model_copy(update={"unresolved": launch.unresolved + ("VLLM_ADDITIONAL_ARGS",)})
    count, resource = container_gpus(main, f"{prefix}template.resources") if main is not None else (0, None)
    worker_main = _main_container(worker)
    worker_count = container_gpus(worker_main, f"{prefix}worker.resources")[0] if worker_main is not None else 0
    worker_count = worker_count or count  # KServe merges the worker from the config: same GPUs unless stated
    annotations = _annotations(template, obj)
    kind_source = gpu_type(annotations, template or {}, resource, ctx.default_gpu)
    name = main.get("name") if main is not None and isinstance(main.get("name"), str) else "main"
    container = f"{prefix}template/{name}"
    members: tuple[ReplicaMember, ...] = ()
    if pods > 1:
        local = launch.data_parallel_size_local
        members = (ReplicaMember(container=container, role="leader", pods=1, gpus_per_pod=count,
                                 data_parallel_ranks_per_pod=local, data_parallel_start_rank=0 if local else None),
                   ReplicaMember(container=f"{prefix}worker/{(worker_main or {}).get('name') or 'main'}",
                                 role="worker", pods=pods - 1, gpus_per_pod=worker_count,
                                 headless=data_parallel, data_parallel_ranks_per_pod=local,
                                 # START_RANK = LWS_WORKER_INDEX * dataLocal in KServe's worker config
                                 data_parallel_start_rank=local if local else None))
    total = count + (pods - 1) * worker_count
    gpus = gpu_request(total, resource, kind_source).model_copy(update={"per_pod": count, "pods": pods})
    notes: tuple[str, ...] = ()
    if template is None:
        notes = ("the pods come from KServe's LLMInferenceServiceConfig, not this object: their GPUs are not "
                 "stated here",)
        gpus = gpus.model_copy(update={"count": None, "per_pod": None})
    return ctx.found(container, image, launch, gpus, problems, ignored, detected_by="resource",
                     config_maps=env.config_maps, members=members, notes=notes, options=options,
                     placement=placement_of(template or {}),
                     accelerator=other_accelerator(main or {}, image, args + extra, variables) if not count else None)
