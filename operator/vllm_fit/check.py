"""Check every vLLM launch in one Kubernetes object against the memory model.

`check_object(obj, ...)` is the one code path behind `vllm-fit check` and the admission
webhook: find the launches (`launch.find_launches`), resolve the model and the GPU, plan with
the GPUs the manifest gives, and return one `LaunchResult` per launch with a verdict. It does
no I/O itself beyond what the resolver it is given does.
"""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence

from pydantic import BaseModel, ConfigDict

from .errors import VllmFitError
from .hub.resolver import ModelNotFound, ModelResolver
from .inventory import GpuOption, Inventory, reachable_gpus
from .launch.find import ConfigMaps, FoundLaunch, find_launches
from .launch.images import DEFAULT_VLLM_IMAGES
from .launch.flags import FlagTable
from .launch.model import MEMORY_FIELDS, GpuRequest
from .gpu_catalog import GpuCatalog, GpuSpec, gpu_from_size
from .memory.model_info import ModelInfo
from .memory.plan import (
    DEFAULT_CONCURRENCY_THRESHOLD,
    DEFAULT_GPUS_PER_NODE,
    MemoryPlan,
    Reason,
    Verdict,
    gpu_count_fix,
    gpu_count_reason,
    parallelism_problems,
    plan,
    valid_tensor_parallel_sizes,
)
from .memory.runtime import RuntimeProfiles
from .memory.settings import InvalidSetting, check_values
from .memory.versions import DEFAULT_VLLM_VERSION as DEFAULT_VERSION

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
        if self.verdict.problems:
            return "WARN"
        return "FITS" if self.plan is not None else "SKIP"

    def fix(self) -> str:
        """The first actionable line: the plan's suggestion, else the first reason."""
        errors = self.verdict.errors
        if errors and errors[0].code in _ARGUMENT_CODES:
            return f"[{errors[0].code}]"
        if self.plan is not None:
            s = self.plan.suggestions
            if s.tensor_parallel_size:
                return f"use --tensor-parallel-size {s.tensor_parallel_size} (and as many GPUs)"
            if s.max_model_len:
                tp = s.max_model_len_tensor_parallel_size
                other = tp and tp != self.plan.parallel.get("tensor_parallel_size")
                return f"--max-model-len {s.max_model_len}" + (f" --tensor-parallel-size {tp}" if other else "")
            if s.kv_cache_dtype:
                return f"--kv-cache-dtype {s.kv_cache_dtype}"
            if s.tensor_parallel_size_for_gpus_given:
                return f"--tensor-parallel-size {s.tensor_parallel_size_for_gpus_given} to match the GPUs given"
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


def _reason(code: str, severity: str, message: str, summary: str = "") -> Reason:
    return Reason(code=code, severity=severity, message=message, summary=summary)  # type: ignore[arg-type]


# Reasons about the arguments themselves: vLLM exits before it measures memory.
_ARGUMENT_CODES = frozenset({"invalid-argument", "invalid-parallelism", "unknown-flag", "gpu-count-mismatch"})


_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
_FIRST_CODES = frozenset({"invalid-argument", "invalid-parallelism", "unknown-flag"})


def _short(model_id: Optional[str]) -> str:
    return (model_id or "the launch").rsplit("/", 1)[-1]


def flag_reasons(found: FoundLaunch, table: FlagTable) -> list[Reason]:
    """Options the launch's vLLM release would not accept (an error when the image states a
    release in the table, else a warning against every release)."""
    version = found.launch.vllm_version
    out: list[Reason] = []
    for option in dict.fromkeys(found.options):
        if option.startswith("-O") and not option.startswith("--"):
            continue  # -O3 / -O.level: the compilation shorthand every release parses specially
        verdict = table.judge(option, version)
        if verdict.status == "known":
            continue
        where = f"{found.container}: "
        if verdict.version_known:
            release = f"vLLM {version}"
            severity = "error"
        else:
            release = (f"no vLLM release {table.first_version()}-{table.last_version()}" if version is None
                       else f"vLLM {version} is not in the flag table; no release {table.first_version()}-"
                            f"{table.last_version()}")
            severity = "warning"
        if verdict.status == "ambiguous":
            text = (f"{release} cannot tell which option {verdict.option} means "
                    f"({', '.join(verdict.matches)}); vLLM exits with \"ambiguous option\"")
        else:
            hint = f" (did you mean {verdict.nearest}?)" if verdict.nearest else ""
            since = (f" (it exists in {verdict.releases[0]}-{verdict.releases[1]})" if verdict.releases else "")
            has = "has no option" if verdict.version_known else "has the option"
            text = (f"{release} {has} {verdict.option}{since}{hint}"
                    + ("; vLLM exits with \"unrecognized arguments\"" if severity == "error" else ""))
        out.append(_reason("unknown-flag", severity, where + text,
                           summary=f"{found.container}: unknown vLLM option {verdict.option}"
                                   + (f" (did you mean {verdict.nearest}?)" if verdict.nearest else "")))
    return out


def _largest_gpu(catalog: GpuCatalog, resource: Optional[str]) -> Optional[GpuSpec]:
    """The largest GPU the launch could possibly get (AMD for amd.com/gpu, else NVIDIA)."""
    vendor = "amd" if resource == "amd.com/gpu" else "nvidia"
    gpus = [g for g in catalog.gpus if g.vendor == vendor]
    return max(gpus, key=lambda g: g.total_bytes) if gpus else None


def _count_with_fix(found: FoundLaunch, model_info: ModelInfo, gpu: GpuSpec, profiles: RuntimeProfiles,
                    default_vllm_version: Optional[str], gpus_per_node: int) -> Optional[Reason]:
    """Too few GPUs for TPxPPxDP (vLLM never gets to memory): the mismatch, with the largest TP
    that fits the GPUs given on this GPU type, if one does."""
    launch, given = found.launch, found.gpus.count or 0
    tp, pp = launch.tensor_parallel_size or 1, launch.pipeline_parallel_size or 1
    per_tp = pp * (launch.data_parallel_size_local or launch.data_parallel_size or 1)
    need = tp * per_tp
    if need <= given:
        return None
    kwargs: dict[str, Any] = {"default_version": default_vllm_version} if default_vllm_version else {}
    tp_fit = None
    for candidate in sorted(valid_tensor_parallel_sizes(model_info, max(given // per_tp, 1)), reverse=True):
        if candidate * per_tp > given:
            continue
        try:
            fitted = plan(model_info, launch.model_copy(update={"tensor_parallel_size": candidate}), gpu, profiles,
                          gpus_given=given, gpus_per_node=gpus_per_node, suggest=False, **kwargs)
        except VllmFitError:
            return None
        if fitted.verdict.fits:
            tp_fit = candidate
            break
    return gpu_count_reason(_short(model_info.model_id), tp, pp, need, given,
                            gpu_count_fix(need, given, tp_fit, (tp_fit or 0) * per_tp))


def _gpu_free_reasons(found: FoundLaunch, model_info: ModelInfo, catalog: GpuCatalog, profiles: RuntimeProfiles,
                      default_vllm_version: Optional[str], gpus_per_node: int) -> list[Reason]:
    """What can be said without knowing the GPU type: vLLM rejects the parallel layout for this
    model, or the weights alone exceed even the largest GPU the launch could be given."""
    launch, g = found.launch, model_info.geometry
    name = _short(model_info.model_id)
    tp, pp = launch.tensor_parallel_size or 1, launch.pipeline_parallel_size or 1
    dp = launch.data_parallel_size or 1
    block = g.quant.block_size if g.quant and g.quant.method == "fp8" else None
    problems = parallelism_problems(g, tp, pp, dp, expert_parallel=bool(launch.enable_expert_parallel), block_fp8=block)
    if problems:
        valid = valid_tensor_parallel_sizes(model_info, max(gpus_per_node, tp))
        sizes = ", ".join(map(str, valid))
        return [_reason("invalid-parallelism", "error",
                        f"{found.container}: {name} at TP={tp}" + (f" PP={pp}" if pp > 1 else "")
                        + f": {problems[0]}; valid TP sizes: {sizes}",
                        summary=f"{name}: TP={tp} is invalid; valid TP: {sizes}")]
    largest = _largest_gpu(catalog, found.gpus.resource)
    if largest is None:
        return []
    kwargs: dict[str, Any] = {"default_version": default_vllm_version} if default_vllm_version else {}
    try:
        best = plan(model_info, launch, largest, profiles, gpus_per_node=gpus_per_node, **kwargs)
    except VllmFitError:
        return []
    out = [r for r in best.verdict.reasons if r.code == "invalid-argument"]
    if any(r.code == "weights-exceed-gpu" for r in best.verdict.reasons):
        fix = (f"; TP={best.suggestions.tensor_parallel_size} is the smallest that fits a {largest.name}"
               if best.suggestions.tensor_parallel_size else "")
        out.append(_reason(
            "weights-exceed-gpu", "error",
            f"{found.container}: {name} at TP={tp}" + (f" PP={pp}" if pp > 1 else "")
            + f": the weights need {best.per_gpu.weights_gib:.2f} GiB per GPU, more than the largest "
              f"{largest.vendor.upper()} GPU vllm-fit knows ({largest.name}, {largest.total_gib:.2f} GiB) holds{fix}",
            summary=f"{name}: {best.per_gpu.weights_gib:.1f} GiB weights/GPU exceed even a {largest.name} at TP={tp}"))
    return out


def _cluster_result(found: FoundLaunch, model_info: ModelInfo, options: Sequence[GpuOption], plan_for: Any
                    ) -> tuple[Optional[MemoryPlan], Optional[GpuOption], list[Reason]]:
    """Judge the launch on every GPU type of the Nodes its pod can be scheduled on.

    Denies (errors) when it fits none, warns and names a nodeSelector when only some fit. The
    plan kept is the one for the GPU assumed: the smallest that fits, else the largest."""
    name = _short(model_info.model_id)
    judged = [(o, plan_for(o.spec)) for o in options if o.spec is not None]
    unknown = [o for o in options if o.spec is None]
    reasons: list[Reason] = []
    for o in unknown:
        reasons.append(_reason("unknown-gpu", "warning",
                               f"{found.container}: {len(o.nodes)} Node(s) it can be scheduled on offer a GPU vllm-fit "
                               f"does not know ({o.label or o.name}); not judged there"))
    if not judged:
        return None, None, reasons
    fitting = [(o, p) for o, p in judged if p.verdict.fits]
    failing = [(o, p) for o, p in judged if not p.verdict.fits]
    where = ", ".join(f"{o.name} ({len(o.nodes)} node{'s' if len(o.nodes) != 1 else ''})" for o, _ in judged)
    if not fitting:
        option, chosen = judged[0]  # the largest GPU: its reasons carry the fix that needs the least
        for r in chosen.verdict.reasons:
            if r.severity == "error" and r.code in _ARGUMENT_CODES:
                reasons.append(r)  # the arguments themselves: true on every GPU
            elif r.severity == "error" and not unknown:
                reasons.append(r.model_copy(update={
                    "message": f"fits none of the cluster's GPUs this pod can be scheduled on ({where}); "
                               f"on {option.name}: {r.message}",
                    "summary": r.short()}))
            elif r.severity == "error":  # some Nodes not judged: do not deny on the others alone
                reasons.append(r.model_copy(update={"severity": "warning"}))
            else:
                reasons.append(r)
        return chosen, option, reasons
    option, chosen = fitting[-1]  # options come largest first: the last fitting one is the smallest
    if failing:
        bad = failing[0][1].verdict.errors
        why = bad[0].short() if bad else "does not fit"
        pins = " or ".join(f"{o.label.replace('=', ': ')}" for o, _ in fitting if o.label)
        reasons.append(_reason(
            "fits-some-cluster-gpus", "warning",
            f"{found.container}: fits {', '.join(o.name for o, _ in fitting)} but not "
            f"{', '.join(o.name for o, _ in failing)} ({why}); pin it with nodeSelector {pins or 'on a GPU label'}",
            summary=f"{name}: fits {fitting[0][0].name}, not {failing[0][0].name}; add nodeSelector {pins}"[:160]))
    reasons.extend(chosen.verdict.reasons)
    return chosen, option, reasons


def check_launch(
    found: FoundLaunch,
    *,
    resolver: ModelResolver,
    catalog: GpuCatalog,
    profiles: RuntimeProfiles,
    default_vllm_version: Optional[str] = None,
    gpus_per_node: int = DEFAULT_GPUS_PER_NODE,
    concurrency_threshold: float = DEFAULT_CONCURRENCY_THRESHOLD,
    flag_table: Optional[FlagTable] = None,
    inventory: Optional[Inventory] = None,
) -> LaunchResult:
    """Judge one launch. Checks that need no GPU type (values, flags, GPU count, TP/PP against
    the model, weights against the largest GPU) always run; memory needs the GPU type, stated
    or learnt from `inventory` (the Nodes the pod can be scheduled on)."""
    where = found.container
    if found.accelerator and not found.gpus.count:
        note = _reason("not-modelled", "info", f"{where}: not judged: {found.accelerator} is not modelled")
        return LaunchResult(found=found, verdict=Verdict(fits=True, reasons=(note,)))
    findings: list[Reason] = []
    launch = found.launch
    for problem in found.problems:
        findings.append(_reason("invalid-argument", "error", f"{where}: vLLM would refuse to start: {problem}"))
    for note in found.notes:
        code = "launch-in-image" if found.launch_in_image else "launch-unknown"
        findings.append(_reason(code, "warning", f"{where}: {note}"))
    if found.not_judged:
        findings.append(_reason("not-judged", "warning", f"{where}: not judged: {found.not_judged}"))
    values_ok = not found.problems
    if values_ok:
        try:
            check_values(launch, default_version=default_vllm_version or DEFAULT_VERSION)
        except InvalidSetting as exc:
            values_ok = False
            findings.append(_reason("invalid-argument", "error", f"{where}: vLLM would refuse to start: {exc}",
                                    summary=f"{where}: vLLM rejects the arguments: {exc}"[:160]))
    if flag_table is not None:
        findings.extend(flag_reasons(found, flag_table))
    if values_ok and found.gpus.count and not found.not_judged:
        tp, pp = launch.tensor_parallel_size or 1, launch.pipeline_parallel_size or 1
        need = tp * pp * (launch.data_parallel_size_local or launch.data_parallel_size or 1)
        if need != found.gpus.count:
            findings.append(gpu_count_reason(_short(launch.model), tp, pp, need, found.gpus.count))
    memory_unresolved = [u for u in launch.unresolved if u != "--model"]
    if memory_unresolved:
        findings.append(_reason("unresolved-values", "warning",
                                f"{where}: not knowable at admission, planned with vLLM's defaults instead: "
                                f"{', '.join(memory_unresolved)}"))
    gpu = resolve_gpu(found.gpus, catalog)
    options: tuple[GpuOption, ...] = ()
    if gpu is None and inventory is not None and found.gpus.count:
        per_pod = found.gpus.per_pod or found.gpus.count  # a Node must hold one pod's GPUs
        reach = reachable_gpus(inventory, found.placement, found.gpus.resource, per_pod, catalog)
        options = reach.options
        if not options and reach.too_few_gpus:
            shown = ", ".join(reach.too_few_gpus[:3]) + (", ..." if len(reach.too_few_gpus) > 3 else "")
            findings.append(_reason(
                "too-few-gpus-on-nodes", "warning",
                f"{where}: the pod asks for {per_pod} GPUs but the {len(reach.too_few_gpus)} Node(s) it can be "
                f"scheduled on ({shown}) have fewer allocatable; it stays Pending until such a Node exists",
                summary=f"{where}: no Node offers {per_pod} GPUs; the pod stays Pending"))
    if gpu is None and not options:
        stated = f" ({found.gpus.type} from {found.gpus.type_source})" if found.gpus.type else ""
        findings.append(_reason("unknown-gpu", "warning",
                                f"{where}: the GPU type is not known{stated}, so memory is not judged; set a "
                                f"nodeSelector on a GPU label, the vllm-fit.io/gpu annotation, or a default GPU"))
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
    assumed: Optional[GpuOption] = None
    plan_reasons: list[Reason] = []
    if model_info is not None and values_ok and not found.not_judged:
        kwargs: dict[str, Any] = {"default_version": default_vllm_version} if default_vllm_version else {}
        gpus_given = found.gpus.count if found.gpus.count else None

        def plan_for(spec: GpuSpec) -> MemoryPlan:
            return plan(model_info, launch, spec, profiles, gpus_given=gpus_given, gpus_per_node=gpus_per_node,
                        concurrency_threshold=concurrency_threshold, **kwargs)

        arguments_rejected = any(r.severity == "error" and r.code in _ARGUMENT_CODES for r in findings)
        try:
            if arguments_rejected:
                # vLLM exits on the arguments before it measures memory: judging memory would
                # price a launch that never happens (with misspelled flags, at the defaults).
                plan_reasons = _gpu_free_reasons(found, model_info, catalog, profiles, default_vllm_version,
                                                 gpus_per_node)
            elif gpu is not None:
                result_plan = plan_for(gpu)
                plan_reasons = list(result_plan.verdict.reasons)
            elif options:
                result_plan, assumed, plan_reasons = _cluster_result(found, model_info, options, plan_for)
            else:
                plan_reasons = _gpu_free_reasons(found, model_info, catalog, profiles, default_vllm_version,
                                                 gpus_per_node)
        except VllmFitError as exc:
            findings.append(_reason("plan-failed", "warning", f"{where}: cannot plan: {exc}"))
    if result_plan is not None and launch.vllm_version is None:
        image = found.image or "the image"
        findings.append(Reason(
            code="vllm-version-assumed", severity="warning",
            message=f"{where}: {image} states no vLLM version; judged as vLLM {result_plan.vllm_version} "
                    f"({result_plan.vllm_version_source}); pin a versioned tag or set default_vllm_version",
            summary=f"{where}: image states no vLLM version; judged as vLLM {result_plan.vllm_version}"))
    # The GPU count is judged once, above, without the model; the plan's own judgement of it, when
    # there is one, replaces it: it also names the TP that fits the GPUs given.
    planned_count = next((r for r in plan_reasons if r.code == "gpu-count-mismatch"), None)
    if planned_count is None and model_info is not None and gpu is not None and values_ok and found.gpus.count:
        planned_count = _count_with_fix(found, model_info, gpu, profiles, default_vllm_version, gpus_per_node)
    if planned_count is not None:
        findings = [planned_count if r.code == "gpu-count-mismatch" else r for r in findings]
    reasons = list(findings) + [r for r in plan_reasons if r.code != "gpu-count-mismatch"]
    # Stable: errors first, the arguments' own faults before the rest, each in the order found.
    reasons.sort(key=lambda r: (_SEVERITY_ORDER[r.severity], r.code not in _FIRST_CODES))
    if any(r.severity == "error" and r.code in _ARGUMENT_CODES for r in reasons) and result_plan is not None:
        result_plan = result_plan.model_copy(update={"valid": False})
    if assumed is not None:
        found = found.model_copy(update={"gpus": found.gpus.model_copy(update={
            "type": assumed.name, "type_source": "cluster"})})
    fits = not any(r.severity == "error" for r in reasons)
    gpu_name = gpu.name if gpu is not None else (assumed.name if assumed is not None else None)
    return LaunchResult(found=found, gpu=gpu_name, plan=result_plan, verdict=Verdict(fits=fits, reasons=tuple(reasons)))


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
    flag_table: Optional[FlagTable] = None,
    inventory: Optional[Inventory] = None,
) -> list[LaunchResult]:
    """Every vLLM launch in `obj`, planned. Raises VllmFitError only for an unusable object."""
    if default_gpu is not None:
        catalog.resolve(default_gpu)  # fail early on a default nobody can resolve
    named = _model_id_annotation(obj)
    return [
        check_launch(_with_named_model(found, named), resolver=resolver, catalog=catalog, profiles=profiles,
                     default_vllm_version=default_vllm_version, gpus_per_node=gpus_per_node,
                     concurrency_threshold=concurrency_threshold, flag_table=flag_table, inventory=inventory)
        for found in find_launches(obj, vllm_images=vllm_images, default_gpu=default_gpu, catalog=catalog, loose=loose,
                                   configmaps=configmaps)
    ]


MODEL_ID_ANNOTATION = "vllm-fit.io/model-id"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def _model_id_annotation(obj: Any) -> Optional[str]:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    value = annotations.get(MODEL_ID_ANNOTATION) if isinstance(annotations, dict) else None
    return value.strip() if isinstance(value, str) and _HUB_ID.match(value.strip()) and ".." not in value else None


def _with_named_model(found: FoundLaunch, named: Optional[str]) -> FoundLaunch:
    """The `vllm-fit.io/model-id` annotation fills a model the manifest leaves unknown (a storage
    URI, a local path, a variable); it never replaces a Hugging Face id the launch states."""
    launch = found.launch
    states = bool(launch.model) and "--model" not in launch.unresolved and bool(_HUB_ID.match(launch.model or ""))
    if not named or states:
        return found
    launch = launch.model_copy(update={"model": named,
                                       "unresolved": tuple(u for u in launch.unresolved if u != "--model"),
                                       "sources": {**launch.sources, "model": MODEL_ID_ANNOTATION}})
    return found.model_copy(update={"launch": launch})
