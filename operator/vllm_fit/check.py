"""Check every vLLM launch in one Kubernetes object against the memory model.

`check_object(obj, ...)` is the one code path behind `vllm-fit check` and the admission
webhook: find the launches (`launch.find_launches`), resolve the model and the GPU, plan with
the GPUs the manifest gives, and return one `LaunchResult` per launch with a verdict. It does
no I/O itself beyond what the resolver it is given does.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from pydantic import BaseModel, ConfigDict

from .errors import VllmFitError
from .hub.resolver import ModelNotFound, ModelResolver
from .launch.find import DEFAULT_VLLM_IMAGES, ConfigMaps, FoundLaunch, find_launches
from .launch.model import MEMORY_FIELDS, GpuRequest
from .memory.gpu import GpuCatalog, GpuSpec, gpu_from_size
from .memory.plan import DEFAULT_CONCURRENCY_THRESHOLD, DEFAULT_GPUS_PER_NODE, MemoryPlan, Reason, Verdict, plan
from .memory.runtime import RuntimeProfiles

# The launch keys of the JSON report, in order (vLLM argument names).
LAUNCH_KEYS: tuple[str, ...] = (
    "model", "revision", "tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "gpu_memory_utilization",
    "max_model_len", "block_size", "kv_cache_dtype", "quantization", "dtype", "enforce_eager", "max_num_seqs",
)


class LaunchResult(BaseModel):
    """One launch, its plan (None when it cannot be planned), and the verdict."""

    model_config = ConfigDict(frozen=True)

    found: FoundLaunch
    gpu: Optional[str] = None  # the catalog GPU the plan used
    plan: Optional[MemoryPlan] = None
    verdict: Verdict

    @property
    def rejected(self) -> bool:
        return not self.verdict.fits

    @property
    def word(self) -> str:
        if not self.verdict.fits:
            return "REJECT"
        return "WARN" if self.verdict.reasons else "FITS"

    def fix(self) -> str:
        """The first actionable line: the plan's suggestion, else the first reason."""
        if self.plan is not None:
            s = self.plan.suggestions
            if s.tensor_parallel_size:
                return f"use --tensor-parallel-size {s.tensor_parallel_size} (and as many GPUs)"
            if s.max_model_len:
                return f"--max-model-len {s.max_model_len}"
            if s.kv_cache_dtype:
                return f"--kv-cache-dtype {s.kv_cache_dtype}"
            if s.multi_node:
                m = s.multi_node
                return (f"TP={m['tensor_parallel_size']} x PP={m['pipeline_parallel_size']} over {m['nodes']} nodes")
        return f"[{self.verdict.reasons[0].code}]" if self.verdict.reasons else ""

    def to_json_dict(self) -> dict[str, Any]:
        f = self.found
        launch: dict[str, Any] = {key: getattr(f.launch, key) for key in LAUNCH_KEYS}
        for key in MEMORY_FIELDS:
            launch.setdefault(key, getattr(f.launch, key))
        launch["vllm_version"] = f.launch.vllm_version
        launch["unresolved"] = list(f.launch.unresolved)
        gpus = f.gpus.model_dump(mode="json")
        gpus["per_replica"] = f.gpus.count  # the same as count: vLLM's world for one replica
        return {
            "kind": f.kind,
            "namespace": f.namespace,
            "name": f.name,
            "container": f.container,
            "detected_by": f.detected_by,
            "launch_in_image": f.launch_in_image,
            "launch": launch,
            "gpus": gpus,
            "members": [m.model_dump(mode="json") for m in f.members],
            "config_maps": list(f.config_maps),
            "plan": self.plan.to_json_dict() if self.plan is not None else None,
            "verdict": self.verdict.model_dump(mode="json"),
        }


def resolve_gpu(gpus: GpuRequest, catalog: GpuCatalog) -> Optional[GpuSpec]:
    """The catalog GPU a GpuRequest names, or None when it names none we know."""
    resource = gpus.resource or ""
    if resource.startswith("nvidia.com/mig-"):
        parent = None
        if gpus.type and gpus.type_source not in ("mig-resource", "unknown"):
            parent_spec = (catalog.by_instance_type(gpus.type) if gpus.type_source == "instance-type"
                           else catalog.find(gpus.type))
            parent = parent_spec.name if parent_spec is not None else None
        return catalog.find_mig(resource, parent=parent)
    if not gpus.type:
        return None
    if gpus.type_source == "instance-type":
        return catalog.by_instance_type(gpus.type)
    found = catalog.find(gpus.type)
    if found is not None:
        return found
    try:
        return gpu_from_size(gpus.type)
    except VllmFitError:
        return None


def _reason(code: str, severity: str, message: str) -> Reason:
    return Reason(code=code, severity=severity, message=message)  # type: ignore[arg-type]


def check_launch(
    found: FoundLaunch,
    *,
    resolver: ModelResolver,
    catalog: GpuCatalog,
    profiles: RuntimeProfiles,
    default_vllm_version: Optional[str] = None,
    gpus_per_node: int = DEFAULT_GPUS_PER_NODE,
    concurrency_threshold: float = DEFAULT_CONCURRENCY_THRESHOLD,
) -> LaunchResult:
    findings: list[Reason] = []
    launch = found.launch
    where = found.container
    for problem in found.problems:
        findings.append(_reason("invalid-argument", "error", f"{where}: vLLM would refuse to start: {problem}"))
    for note in found.notes:
        code = "launch-in-image" if found.launch_in_image else "launch-unknown"
        findings.append(_reason(code, "warning", f"{where}: {note}"))
    if found.not_judged:
        findings.append(_reason("not-judged", "warning", f"{where}: not judged: {found.not_judged}"))
    memory_unresolved = [u for u in launch.unresolved if u != "--model"]
    if memory_unresolved:
        findings.append(_reason("unresolved-values", "warning",
                                f"{where}: not knowable at admission, planned with vLLM's defaults instead: "
                                f"{', '.join(memory_unresolved)}"))
    gpu = resolve_gpu(found.gpus, catalog)
    if gpu is None:
        stated = f" ({found.gpus.type} from {found.gpus.type_source})" if found.gpus.type else ""
        findings.append(_reason("unknown-gpu", "warning",
                                f"{where}: the GPU type is not known{stated}; label the node selector, add the "
                                f"vllm-fit.io/gpu annotation, or give a default GPU"))
    if found.gpus.count == 0 and not found.runtime_template:
        findings.append(_reason("no-gpu-requested", "warning",
                                f"{where}: the container requests no GPU (nvidia.com/gpu, amd.com/gpu or a MIG "
                                f"resource); vLLM needs one"))
    model_info = None
    if "--model" in launch.unresolved and found.launch_in_image:
        pass  # said above: the image decides the model too
    elif "--model" in launch.unresolved:
        if launch.model:  # a storage URI (pvc://, s3://, oci://...): what it holds is not knowable here
            findings.append(_reason("unresolved-model", "warning",
                                    f"{where}: the model comes from {launch.model}, whose contents are not knowable "
                                    f"at admission; name its Hugging Face id with the vllm-fit.io/model-id "
                                    f"annotation; not planned"))
        else:
            findings.append(_reason("unresolved-model", "warning",
                                    f"{where}: the model is not knowable at admission (from a Secret, envFrom, a "
                                    f"storage URI or a variable); not planned"))
    elif not launch.model:
        if not found.problems:  # an argument vLLM refuses ends the parse early: then nothing is known of the model
            findings.append(_reason("no-model", "warning", f"{where}: the launch names no model; not planned"))
    else:
        try:
            model_info = resolver.resolve(launch.model, launch.revision)
        except ModelNotFound:
            findings.append(_reason("unknown-model", "warning",
                                    f"{where}: no metadata for model {launch.model!r} (add a bundle with "
                                    f"`vllm-fit models`); not planned"))
        except VllmFitError as exc:
            findings.append(_reason("model-metadata", "warning", f"{where}: {exc}; not planned"))
    result_plan: Optional[MemoryPlan] = None
    if model_info is not None and gpu is not None and not found.problems and not found.not_judged:
        gpus_given = found.gpus.count if found.gpus.count else None
        try:
            kwargs: dict[str, Any] = {}
            if default_vllm_version:
                kwargs["default_version"] = default_vllm_version
            result_plan = plan(model_info, launch, gpu, profiles, gpus_given=gpus_given,
                               gpus_per_node=gpus_per_node, concurrency_threshold=concurrency_threshold, **kwargs)
        except VllmFitError as exc:
            findings.append(_reason("plan-failed", "warning", f"{where}: cannot plan: {exc}"))
        if result_plan is not None and launch.vllm_version is None:
            image = found.image or "the image"
            findings.append(Reason(
                code="vllm-version-assumed", severity="warning",
                message=f"{where}: {image} states no vLLM version; judged as vLLM {result_plan.vllm_version} "
                        f"({result_plan.vllm_version_source}); pin a versioned tag or set default_vllm_version",
                summary=f"{where}: image states no vLLM version; judged as vLLM {result_plan.vllm_version}"))
    reasons = list(findings)
    if result_plan is not None:
        reasons.extend(result_plan.verdict.reasons)
    fits = not any(r.severity == "error" for r in reasons)
    return LaunchResult(found=found, gpu=gpu.name if gpu is not None else None, plan=result_plan,
                        verdict=Verdict(fits=fits, reasons=tuple(reasons)))


def check_object(
    obj: Any,
    *,
    resolver: ModelResolver,
    catalog: GpuCatalog,
    profiles: RuntimeProfiles,
    default_gpu: Optional[str] = None,
    default_vllm_version: Optional[str] = None,
    vllm_images: Sequence[str] = DEFAULT_VLLM_IMAGES,
    gpus_per_node: int = DEFAULT_GPUS_PER_NODE,
    concurrency_threshold: float = DEFAULT_CONCURRENCY_THRESHOLD,
    loose: bool = True,
    configmaps: Optional[ConfigMaps] = None,
) -> list[LaunchResult]:
    """Every vLLM launch in `obj`, planned. Raises VllmFitError only for an unusable object."""
    if default_gpu is not None:
        catalog.resolve(default_gpu)  # fail early on a default nobody can resolve
    return [
        check_launch(found, resolver=resolver, catalog=catalog, profiles=profiles,
                     default_vllm_version=default_vllm_version, gpus_per_node=gpus_per_node,
                     concurrency_threshold=concurrency_threshold)
        for found in find_launches(obj, vllm_images=vllm_images, default_gpu=default_gpu, catalog=catalog, loose=loose,
                                   configmaps=configmaps)
    ]
