"""Every vLLM launch in one Kubernetes object: the public entry point of `vllm_fit.launch`.

`find_launches(obj)` takes a dict as the API server or a YAML file gives it and returns one
`FoundLaunch` per container that starts vLLM, with what the launch states (`VllmLaunch`),
the GPUs it gets (`GpuRequest`), and problems vLLM would refuse to start with. Pure: no
Kubernetes client, no network, no files. Bad input raises only `VllmFitError`.

Here: the cheap gate, containers (which rule recognises vLLM), pod templates and
LeaderWorkerSet groups, ConfigMaps, the entry point. Elsewhere: images.py (image names, the
vLLM release a tag states), commands.py (which command lines start vLLM), kserve.py and
kaito.py (resources whose controller writes the command).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from pydantic import BaseModel, ConfigDict

from ..errors import VllmFitError
from ..gpu_catalog import GpuCatalog
from .argv import Entrypoint, UnresolvedValue, parse_vllm_args
from .gpus import container_gpus, gpu_request, gpu_type, other_accelerator, placement_of, requests_accelerator
from .k8s import (KSERVE_KINDS, ConfigMapLookup, ContainerEnv, PodTemplate, container_env,
                  kubelet_expand, pod_templates)
from .model import DetectionRule, GpuRequest, Placement, ReplicaMember, VllmLaunch
from .shell import split_script
from . import kaito, kserve
from .images import DEFAULT_VLLM_IMAGES, _matcher, image_repository, vllm_version_from_image
# Command recognition lives in commands.py; these names stay importable from here.
from .commands import (_API_SERVER, _ASSIGNMENT, _PYTHON, _SHELLS, _WRAPPER_OPTIONS, _basename,  # noqa: F401
                       _shell_script_index, vllm_command)


_MAX_LIST_ITEMS = 10_000


class FoundLaunch(BaseModel):
    """One vLLM launch in an object."""

    model_config = ConfigDict(frozen=True)

    kind: str
    namespace: Optional[str] = None
    name: Optional[str] = None
    container: str  # "<container>", or "<template>/<container>" (e.g. "leader/vllm-leader")
    image: Optional[str] = None
    launch: VllmLaunch
    gpus: GpuRequest
    problems: tuple[str, ...] = ()  # what vLLM would reject (it would not start)
    ignored: tuple[str, ...] = ()  # options that do not change memory or are unknown
    runtime_template: bool = False  # a KServe runtime: the InferenceService supplies the GPUs
    detected_by: DetectionRule = "command"  # the rule that recognised this container as vLLM
    # The image starts vLLM by itself (no command, no args): every engine setting is the image's.
    launch_in_image: bool = False
    headless: bool = False  # `--headless`: this pod runs engine ranks for a replica led elsewhere
    headless_peers: bool = False  # the same container's script also has a `--headless` branch
    # The pods of one replica when it spans several (LeaderWorkerSet, multi-node LLMInferenceService).
    members: tuple[ReplicaMember, ...] = ()
    config_maps: tuple[str, ...] = ()  # ConfigMaps (same namespace) the launch's values come from
    notes: tuple[str, ...] = ()  # what the reader could not see, and why
    # Why this launch cannot be judged at all (e.g. a controller picks its parallelism later); not planned.
    not_judged: Optional[str] = None
    options: tuple[str, ...] = ()  # every vLLM option string the launch gives (checked per release)
    placement: Placement = Placement()  # nodeSelector, required node affinity, tolerations
    # A device vllm-fit does not model (TPU, Gaudi, Ascend, Neuron, CPU, ...), e.g. "TPU (google.com/tpu)".
    accelerator: Optional[str] = None


# ---------------------------------------------------------------- cheap pre-check

def _literal_fragments(pattern: str) -> tuple[str, ...]:
    """The literal runs of a shell-style pattern: `registry.corp/*/llm-server` -> both halves.

    Every string the pattern matches contains each of them, so they make a sound cheap gate.
    """
    out: list[str] = []
    run: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c in "*?":
            out.append("".join(run))
            run = []
            i += 1
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            j = pattern.find("]", j)
            if j < 0:  # no closing bracket: fnmatch reads '[' literally
                run.append(c)
                i += 1
            else:
                out.append("".join(run))
                run = []
                i = j + 1
        else:
            run.append(c)
            i += 1
    out.append("".join(run))
    return tuple(f.lower() for f in out if f)


# vLLM engine flags that name vLLM without the word (the engine-flags rule needs one of them).
ENGINE_FLAGS: tuple[str, ...] = ("tensor-parallel-size", "gpu-memory-utilization", "max-model-len")
_ENGINE_FRAGMENTS: tuple[tuple[str, ...], ...] = tuple(
    (spelling,) for flag in ENGINE_FLAGS for spelling in (flag, flag.replace("-", "_")))


def text_gate(extra: Sequence[str] = (), loose: bool = True) -> Callable[[str], bool]:
    """The cheap test for one piece of text: it contains "vllm", or every literal fragment of one
    of the `extra` image patterns (a pattern without literals, e.g. `*`, passes any text), or
    (with the loose rules) a vLLM engine flag."""
    groups = tuple({_literal_fragments(p) for p in extra})
    # One search for the single words ("vllm", and the engine flags with the loose rules).
    single = re.compile("|".join(re.escape(w) for w in ("vllm", *(f for (f,) in _ENGINE_FRAGMENTS))))

    def may_mention(text: str) -> bool:
        low = text.lower()
        found = single.search(low) is not None if loose else "vllm" in low
        return found or any(all(f in low for f in frags) for frags in groups)

    return may_mention


def mentions_vllm(obj: Any, extra: Sequence[str] = (), loose: bool = True) -> bool:
    """True when any string in the object mentions vLLM (or could match a configured image, or with
    the loose rules names a vLLM engine flag)."""
    may_mention = text_gate(extra, loose)
    stack = [obj]
    budget = 1_000_000
    while stack:
        node = stack.pop()
        budget -= 1
        if budget < 0:
            return True  # enormous objects go to the full reader, which stays linear
        if isinstance(node, str):
            if may_mention(node):
                return True
        elif isinstance(node, dict):
            for key, value in node.items():
                if key == "managedFields":
                    continue
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return False


# ---------------------------------------------------------------- containers

def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise VllmFitError(f"{where} must be a list of strings, not {type(value).__name__}")
    if len(value) > _MAX_LIST_ITEMS:
        raise VllmFitError(f"{where} has {len(value)} items; that is not a real container command")
    return [v if isinstance(v, str) else "" if v is None else str(v) for v in value]


def _expand_argv(tokens: list[str], variables: dict[str, Optional[str]]) -> list[str]:
    out: list[str] = []
    for token in tokens:
        text, unknown = kubelet_expand(token, variables)
        out.append(UnresolvedValue(text) if unknown else text)
    return out


def _expand_for_shell(tokens: list[str], variables: dict[str, Optional[str]]) -> list[str]:
    # Unknown $(X) stay literal: the shell then sees a command substitution, i.e. unknowable.
    return [kubelet_expand(token, variables)[0] for token in tokens]


class ContainerLaunch:
    """What the reader found in one container: vLLM's argv, its environment, and why it is vLLM."""

    __slots__ = ("entrypoint", "argv", "variables", "rule", "in_image", "env")

    def __init__(self, entrypoint: Entrypoint, argv: list[str], variables: dict[str, Optional[str]],
                 rule: DetectionRule, env: ContainerEnv, in_image: bool = False) -> None:
        self.entrypoint, self.argv, self.variables = entrypoint, argv, variables
        self.rule, self.env, self.in_image = rule, env, in_image


_VLLM_LABELS = (("app.kubernetes.io/name", "vllm"), ("app", "vllm"))
_WORD = re.compile(r"[a-z0-9]+")
# A Hugging Face id or a relative path as the first argument: `vllm serve MODEL ...` args.
_MODEL_ARG = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _has_engine_flags(args: Sequence[str]) -> bool:
    """`--model` and one of vLLM's long engine flags, dashes or underscores (not `-tp`: too short to
    tell vLLM from other servers)."""
    model = engine = False
    for token in args:
        key = str(token).partition("=")[0]
        if key.startswith("--"):
            name = key[2:].replace("_", "-")
            model = model or name == "model"
            engine = engine or name in ENGINE_FLAGS
    return model and engine


def _names_vllm(text: Optional[str]) -> bool:
    return bool(text) and "vllm" in _WORD.findall(str(text).lower())


def _loose_rule(container: dict, labels: Sequence[Optional[dict]], image: Optional[str], flag_args: bool
                ) -> Optional[DetectionRule]:
    """The loose rule that marks a command-less container as vLLM, if any.

    A vllm label or container name marks only a container that asks for an accelerator (a pod's
    sidecars share its labels). An image whose own name says vllm also marks one that passes
    vLLM-style arguments without an accelerator (CPU builds); never one that passes nothing.
    """
    accelerator = requests_accelerator(container)
    if accelerator:
        for table in labels:
            if isinstance(table, dict) and any(str(table.get(k, "")).strip().lower() == v for k, v in _VLLM_LABELS):
                return "label"
        if _names_vllm(container.get("name")):
            return "container-name"
    if (accelerator or flag_args) and image and _names_vllm(image_repository(image).rsplit("/", 1)[-1]):
        return "image-name"
    return None


def container_launch(container: dict, where: str, *, injected: Optional[dict[str, Optional[str]]] = None,
                     is_vllm_image: bool = False, loose: bool = True, labels: Sequence[Optional[dict]] = (),
                     configmap: Optional[ConfigMapLookup] = None) -> Optional[ContainerLaunch]:
    """The vLLM launch this container runs, or None."""
    command = _strings(container.get("command"), f"{where}.command")
    args = _strings(container.get("args"), f"{where}.args")
    env = container_env(container, injected, configmap)
    variables = dict(env.values)

    def from_words(raw: list[str]) -> Optional[ContainerLaunch]:
        head = _basename(raw[0])
        expanded = _expand_for_shell(raw, variables) if head in _SHELLS else _expand_argv(raw, variables)
        found = vllm_command(expanded, variables)
        if found is None:
            return None
        return ContainerLaunch(found[0], found[1], {**variables, **found[2]}, "command", env)

    if command:
        return from_words(command + args)
    if is_vllm_image:
        return ContainerLaunch("serve", _expand_argv(args, variables), variables, "image", env)
    if args:  # an image whose entrypoint runs its arguments (a shell wrapper, tini, ...)
        found = from_words(args)
        if found is not None:
            return found
    if not loose:
        return None
    if args and _has_engine_flags(args):
        return ContainerLaunch("serve", _expand_argv(args, variables), variables, "engine-flags", env)
    image = container.get("image") if isinstance(container.get("image"), str) else None
    first = str(args[0]) if args else ""
    flag_args = bool(args) and (first.startswith("-") or bool(_MODEL_ARG.match(first)))
    rule = _loose_rule(container, labels, image, flag_args)
    if rule is None:
        return None
    if not args:
        return ContainerLaunch("serve", [], variables, rule, env, in_image=True)
    if flag_args:
        return ContainerLaunch("serve", _expand_argv(args, variables), variables, rule, env)
    return None  # a command of some other program


def _vllm_env(variables: dict[str, Optional[str]]) -> dict[str, str]:
    return {k: v for k, v in variables.items() if k.startswith("VLLM_") and v is not None}


def _parse(entrypoint: Entrypoint, argv: list[str], version: Optional[str], env: dict[str, str]
           ) -> tuple[VllmLaunch, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(launch, problems, ignored tokens, option strings)."""
    source = "image tag" if version else None
    try:
        parsed = parse_vllm_args(argv, entrypoint=entrypoint, vllm_version=version, env=env)
    except VllmFitError as exc:
        return VllmLaunch(vllm_version=version, vllm_version_source=source, env=env), (str(exc),), (), ()
    launch = parsed.launch.model_copy(update={"vllm_version_source": source}) if source else parsed.launch
    return launch, (), tuple(parsed.ignored), tuple(parsed.options)


def _containers(spec: dict) -> list[tuple[dict, bool]]:
    """(container, is_init) for regular and init containers (native sidecars can run vLLM)."""
    out: list[tuple[dict, bool]] = []
    for key, is_init in (("initContainers", True), ("containers", False)):
        items = spec.get(key)
        if isinstance(items, list):
            out.extend((c, is_init) for c in items[:_MAX_LIST_ITEMS] if isinstance(c, dict))
    return out


def _pod_gpus(spec: Optional[dict]) -> int:
    if not isinstance(spec, dict):
        return 0
    total = 0
    for container, is_init in _containers(spec):
        if is_init and container.get("restartPolicy") != "Always":
            continue
        total += container_gpus(container)[0]
    return total


class _Context:
    def __init__(self, obj: dict, vllm_images: Sequence[str], default_gpu: Optional[str], loose: bool = True,
                 configmaps: Optional[ConfigMaps] = None, catalog: Optional[GpuCatalog] = None) -> None:
        self.kind = str(obj.get("kind") or "")
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        ns, name = meta.get("namespace"), meta.get("name") or meta.get("generateName")
        self.namespace = ns if isinstance(ns, str) else None
        self.name = name if isinstance(name, str) else None
        self.is_vllm_image = _matcher(vllm_images)
        self.default_gpu = default_gpu
        self.loose = loose
        self.catalog = catalog
        self.configmap: Optional[ConfigMapLookup] = None
        if configmaps is not None:
            namespace = self.namespace

            def lookup(cm_name: str) -> Optional[Mapping[str, str]]:
                return configmaps.get(namespace, cm_name)
            self.configmap = lookup

    def found(self, container: str, image: Optional[str], launch: VllmLaunch, gpus: GpuRequest,
              problems: tuple[str, ...], ignored: tuple[str, ...], runtime_template: bool = False,
              **extra: Any) -> FoundLaunch:
        return FoundLaunch(kind=self.kind, namespace=self.namespace, name=self.name, container=container,
                           image=image, launch=launch, gpus=gpus, problems=problems, ignored=ignored,
                           runtime_template=runtime_template, **extra)

    # What the resource readers (kserve.py, kaito.py) use, so that they need not import this module.
    def env(self, container: dict) -> ContainerEnv:
        return container_env(container, configmap=self.configmap)

    @staticmethod
    def strings(value: Any, where: str) -> list[str]:
        return _strings(value, where)

    @staticmethod
    def expand(tokens: list[str], variables: dict[str, Optional[str]]) -> list[str]:
        return _expand_argv(tokens, variables)

    @staticmethod
    def parse(entrypoint: Entrypoint, argv: list[str], image: Optional[str], variables: dict[str, Optional[str]]
              ) -> tuple[VllmLaunch, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        return _parse(entrypoint, argv, vllm_version_from_image(image), _vllm_env(variables))

    def template_launches(self, template: PodTemplate) -> list[FoundLaunch]:
        return _template_launches(self, template)


_IN_IMAGE_NOTE = ("the image starts vLLM by itself (no command or args): its engine settings are the image's "
                  "and unknown here")


def _template_launches(ctx: _Context, template: PodTemplate) -> list[FoundLaunch]:
    out: list[FoundLaunch] = []
    for container, _is_init in _containers(template.spec):
        cname = container.get("name") if isinstance(container.get("name"), str) else "?"
        label = f"{template.path}/{cname}" if template.path else cname
        image = container.get("image") if isinstance(container.get("image"), str) else None
        found = container_launch(container, f"{label}", injected=template.extra_env,
                                 is_vllm_image=ctx.is_vllm_image(image), loose=ctx.loose, labels=template.labels,
                                 configmap=ctx.configmap)
        if found is None:
            continue
        version = vllm_version_from_image(image)
        launch, problems, ignored, options = _parse(found.entrypoint, found.argv, version, _vllm_env(found.variables))
        notes: tuple[str, ...] = ()
        if found.in_image:
            launch = launch.model_copy(update={"unresolved": ("--model",)})
            notes = (_IN_IMAGE_NOTE,)
        count, resource = container_gpus(container, f"{label}.resources")
        per_pod, pods = count, 1
        group = template.group or {}
        if "lws_size" in group:
            size = pods = group["lws_size"]
            if group.get("has_leader") and group.get("role") == "leader":
                count = count + (size - 1) * _pod_gpus(group.get("worker_spec"))
            else:
                count = count * size
        kind_source = gpu_type(template.annotations, template.spec, resource, ctx.default_gpu)
        gpus = gpu_request(count, resource, kind_source).model_copy(update={"per_pod": per_pod, "pods": pods})
        out.append(ctx.found(label, image, launch, gpus, problems, ignored,
                             runtime_template=bool(group.get("runtime_template")), detected_by=found.rule,
                             launch_in_image=found.in_image, config_maps=found.env.config_maps, notes=notes,
                             headless=any(str(t) == "--headless" for t in found.argv), options=options,
                             headless_peers=_mentions_headless(container),
                             placement=placement_of(template.spec),
                             accelerator=(other_accelerator(container, image, found.argv, found.variables)
                                          if not count else None)))
    return out


def _mentions_headless(container: dict) -> bool:
    words = container.get("command"), container.get("args")
    return any(isinstance(w, list) and any(isinstance(x, str) and "--headless" in x for x in w) for w in words)


def _lws_replica(leaders: list[FoundLaunch], workers: list[FoundLaunch]) -> list[FoundLaunch]:
    """One launch per LeaderWorkerSet group: the leader's, with the workers' pods as its members.

    With no leaderTemplate the leader pod runs the workerTemplate too: the group is one template.
    A worker that runs `vllm serve --headless` is part of the leader's replica (its engine ranks),
    never a launch of its own.
    """
    if not leaders and not workers:
        return []
    main = (leaders or workers)[0]
    size = main.gpus.pods
    members: list[ReplicaMember] = []
    if leaders:
        members.append(_member(main, "leader", 1))
        if size > 1:
            if workers:
                members.append(_member(workers[0], "worker", size - 1, first_pod=1))
            else:  # the workers run something else (a Ray worker): their GPUs still serve the replica
                members.append(ReplicaMember(container="worker", role="worker", pods=size - 1,
                                             gpus_per_pod=(main.gpus.count - (main.gpus.per_pod or 0)) // (size - 1)))
    elif main.headless_peers and not main.headless and size > 1:
        # One template whose script runs the API server on pod 0 and `--headless` ranks on the rest.
        members.append(_member(main, "leader", 1))
        members.append(_member(main.model_copy(update={"headless": True}), "worker", size - 1, first_pod=1))
    else:
        members.append(_member(main, "worker", size))
    rest = (leaders or workers)[1:]
    return [main.model_copy(update={"members": tuple(members)}), *rest]


def _member(found: FoundLaunch, role: str, pods: int, first_pod: int = 0) -> ReplicaMember:
    """`first_pod`: this member's first pod's index in the group (the leader is pod 0)."""
    local = found.launch.data_parallel_size_local
    start = first_pod * local if local else None
    return ReplicaMember(container=found.container, role=role, pods=pods,  # type: ignore[arg-type]
                         gpus_per_pod=found.gpus.per_pod or 0, headless=found.headless,
                         data_parallel_ranks_per_pod=local, data_parallel_start_rank=start)


# ---------------------------------------------------------------- launches the reader cannot see

# Commands in a vLLM image that plainly are not the server: vLLM's other subcommands, and Ray
# (`ray start --address=...`: a worker node of a multi-node launch read from its leader).
_NOT_A_SERVER = frozenset({"vllm", "ray"})


def _unreadable_reason(container: dict, where: str, injected: Optional[dict[str, Optional[str]]]) -> Optional[str]:
    """Why a container of a vLLM image starts no launch the reader can read; None when it is read,
    or when it plainly runs something other than the server (`vllm bench`, `vllm chat`)."""
    if container_launch(container, where, injected=injected, is_vllm_image=True) is not None:
        return None
    words = _strings(container.get("command"), f"{where}.command") + _strings(container.get("args"), f"{where}.args")
    i = 0
    while i < len(words) and (_basename(words[i]) in _WRAPPER_OPTIONS or _ASSIGNMENT.match(words[i])):
        i += 1
    words = words[i:]
    if not words:
        return None
    head = _basename(words[0])
    if head in _NOT_A_SERVER:
        return None  # another vllm subcommand, or a Ray node joining a leader whose launch states the engine
    if _PYTHON.match(head):
        if "-c" in words[1:3]:
            return "runs `python -c` code"
        if "-m" in words[1:3]:
            module = words[words.index("-m") + 1] if words.index("-m") + 1 < len(words) else ""
            if module.split(".")[0] == "vllm" and module != _API_SERVER:
                return None  # python -m vllm... <not serve>: a vLLM tool, not the server
            return f"runs the module {_trim_word(module)}"
        script = next((w for w in words[1:] if not w.startswith("-")), "")
        return f"runs the Python script {_trim_word(script)}"
    if head in _SHELLS:
        index = _shell_script_index(words)
        if index is not None:
            try:
                heads = {_basename(c[0]) for c in split_script(str(words[index]), {}) if c}
            except (VllmFitError, RecursionError, ValueError):
                heads = set()
            if heads & _NOT_A_SERVER and "vllm" not in heads:
                return None
            return f"runs a `{head} -c` script that does not plainly start vLLM"
        script = next((w for w in words[1:] if not w.startswith("-")), "")
        return f"runs the shell script {_trim_word(script)}"
    return f"runs {_trim_word(words[0])}"


def _trim_word(word: str, limit: int = 60) -> str:
    word = "".join(ch if ch.isprintable() else "?" for ch in str(word))
    return repr(word if len(word) <= limit else word[: limit - 1] + "…")


def unreadable_vllm_containers(obj: Any, *, vllm_images: Sequence[str] = DEFAULT_VLLM_IMAGES
                               ) -> list[tuple[str, str]]:
    """(container, why) for each long-running container of a vLLM image whose launch cannot be read:
    a mounted script, `python -c`, an opaque `bash -c`. Init containers that run to completion are
    left out (they download weights, they do not serve)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("kind"), str):
        return []
    is_vllm_image = _matcher(tuple(vllm_images))
    out: list[tuple[str, str]] = []
    try:
        for template in pod_templates(obj):
            for container, is_init in _containers(template.spec):
                if is_init and container.get("restartPolicy") != "Always":
                    continue
                image = container.get("image") if isinstance(container.get("image"), str) else None
                if not is_vllm_image(image):
                    continue
                cname = container.get("name") if isinstance(container.get("name"), str) else "?"
                label = f"{template.path}/{cname}" if template.path else cname
                try:
                    why = _unreadable_reason(container, label, template.extra_env)
                except VllmFitError as exc:
                    why = str(exc)
                if why:
                    out.append((label, why))
    except RecursionError:
        raise VllmFitError("the object is nested too deeply to be a Kubernetes manifest") from None
    return out


# ---------------------------------------------------------------- entry point

class ConfigMaps:
    """ConfigMaps the reader may read values from, by (namespace, name).

    A ConfigMap given without a namespace matches any namespace (manifests applied with `-n`);
    one not given is unknown, never empty.
    """

    def __init__(self, items: Iterable[tuple[Optional[str], str, Mapping[str, Any]]] = ()) -> None:
        self._data: dict[tuple[Optional[str], str], dict[str, str]] = {}
        for namespace, name, data in items:
            self.add(namespace, name, data)

    def add(self, namespace: Optional[str], name: str, data: Mapping[str, Any]) -> None:
        self._data[(namespace, name)] = {str(k): v if isinstance(v, str) else str(v) for k, v in data.items()
                                         if v is not None}

    @classmethod
    def from_objects(cls, objects: Iterable[Any]) -> "ConfigMaps":
        """The ConfigMaps among Kubernetes objects (`kind: List` expanded one level)."""
        found = cls()
        for obj in objects:
            items = obj.get("items") if isinstance(obj, dict) and obj.get("kind") == "List" else [obj]
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, dict) or item.get("kind") != "ConfigMap":
                    continue
                meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
                name, namespace, data = meta.get("name"), meta.get("namespace"), item.get("data")
                if isinstance(name, str) and isinstance(data, dict):
                    found.add(namespace if isinstance(namespace, str) else None, name, data)
        return found

    def get(self, namespace: Optional[str], name: str) -> Optional[dict[str, str]]:
        found = self._data.get((namespace, name))
        if found is None and namespace is not None:
            found = self._data.get((None, name))
        if found is None and namespace is None:
            found = next((d for (_, n), d in self._data.items() if n == name), None)
        return found

    def __len__(self) -> int:
        return len(self._data)


def find_launches(
    obj: Any,
    *,
    vllm_images: Sequence[str] = DEFAULT_VLLM_IMAGES,
    default_gpu: Optional[str] = None,
    catalog: Optional[GpuCatalog] = None,
    loose: bool = True,
    configmaps: Optional[ConfigMaps] = None,
) -> list[FoundLaunch]:
    """Every vLLM launch in one Kubernetes object (a `List` is expanded).

    `loose=False` keeps only the certain rules (a vLLM command, a known vLLM image, a KServe or
    KAITO resource); `configmaps` are the ConfigMaps whose values the launch may read.
    """
    if not isinstance(obj, dict):
        raise VllmFitError(f"a Kubernetes object must be a mapping, not {type(obj).__name__}")
    try:
        return _find(obj, _Options_(tuple(vllm_images), default_gpu, catalog, loose, configmaps), 0)
    except RecursionError:
        raise VllmFitError("the object is nested too deeply to be a Kubernetes manifest") from None


class _Options_:
    __slots__ = ("vllm_images", "default_gpu", "catalog", "loose", "configmaps")

    def __init__(self, vllm_images: tuple[str, ...], default_gpu: Optional[str], catalog: Optional[GpuCatalog],
                 loose: bool, configmaps: Optional[ConfigMaps]) -> None:
        self.vllm_images, self.default_gpu, self.catalog = vllm_images, default_gpu, catalog
        self.loose, self.configmaps = loose, configmaps


def _find(obj: dict, opts: _Options_, depth: int) -> list[FoundLaunch]:
    kind = obj.get("kind")
    if kind == "List" or (isinstance(kind, str) and kind.endswith("List") and isinstance(obj.get("items"), list)):
        if depth > 8:
            raise VllmFitError("Lists nested more than 8 deep")
        out: list[FoundLaunch] = []
        for item in obj.get("items") or []:
            if isinstance(item, dict):
                out.extend(_find(item, opts, depth + 1))
        return out
    if kind == "Template" and isinstance(obj.get("objects"), list):
        # An OpenShift Template (Red Hat OpenShift AI ships its vLLM ServingRuntimes so): its objects.
        if depth > 8:
            raise VllmFitError("Templates nested more than 8 deep")
        return [f for item in obj["objects"][:_MAX_LIST_ITEMS] if isinstance(item, dict)
                for f in _find(item, opts, depth + 1)]
    if not isinstance(kind, str):
        return []
    # The cheap gate: no mention of vLLM (nor of a configured image, an engine flag, a vllm label)
    # and not a kind whose controller runs vLLM.
    extra = [p for p in opts.vllm_images if p not in DEFAULT_VLLM_IMAGES]
    kaito_workspace = kind == "Workspace" and str(obj.get("apiVersion") or "").startswith("kaito.sh/")
    if kind not in KSERVE_KINDS and not kaito_workspace and not mentions_vllm(
            [obj.get("spec", obj), _get_labels(obj)], extra, opts.loose):
        return []
    ctx = _Context(obj, opts.vllm_images, opts.default_gpu, opts.loose, opts.configmaps, opts.catalog)
    if kind == "InferenceService":
        return kserve.inference_service(ctx, obj)
    if kind == "LLMInferenceService":
        return kserve.llm_inference_service(ctx, obj)
    if kaito_workspace:
        return kaito.workspace(ctx, obj)
    launches: list[FoundLaunch] = []
    by_role: dict[str, list[FoundLaunch]] = {}
    for template in pod_templates(obj):
        found = _template_launches(ctx, template)
        role = (template.group or {}).get("role")
        if role:
            by_role.setdefault(role, []).extend(found)
        else:
            launches.extend(found)
    if by_role:
        launches.extend(_lws_replica(by_role.get("leader", []), by_role.get("worker", [])))
    return launches


def _get_labels(obj: dict) -> Any:
    meta = obj.get("metadata")
    return meta.get("labels") if isinstance(meta, dict) else None
