"""The cluster's GPUs, from its Node objects: which GPU types a pod could be scheduled on.

Pure functions over Node dicts as the API server returns them (no client, no I/O). The webhook
feeds them from a watch of Nodes (admission/nodes.py); `vllm-fit check --cluster` from one
list through the kubeconfig (cli/kube.py).

A Node's GPU type comes from the labels GPU operators and clouds put on it, in this order:
GPU Feature Discovery `nvidia.com/gpu.product`, GKE `cloud.google.com/gke-accelerator`, AMD's
node labeller `amd.com/gpu.product-name` (or its `beta.` form), a well-known
`node.kubernetes.io/instance-type`, then a size: GFD `nvidia.com/gpu.memory` (MiB) or AMD
`amd.com/gpu.vram`. Its GPU count is `status.allocatable` of `nvidia.com/gpu` / `amd.com/gpu`.

Which Nodes a pod can land on: its nodeSelector, its required node affinity (In, NotIn, Exists,
DoesNotExist, Gt, Lt, matchFields on metadata.name), and NoSchedule/NoExecute taints against its
tolerations. A taint keyed by the GPU resource itself (`nvidia.com/gpu`, the GPU operator's and
the clouds' convention) counts as tolerated: the ExtendedResourceToleration admission plugin
adds that toleration to every pod that requests the resource.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Iterable, Optional

from pydantic import BaseModel, ConfigDict, Field

from .errors import VllmFitError
from .launch.gpus import INSTANCE_TYPE_LABELS
from .launch.model import Placement
from .gpu_catalog import GpuCatalog, GpuSpec, gpu_from_size

GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu")
_PRODUCT_LABELS: tuple[tuple[str, str], ...] = (
    ("nvidia.com/gpu.product", "nvidia.com/gpu"),
    ("cloud.google.com/gke-accelerator", "nvidia.com/gpu"),
    ("amd.com/gpu.product-name", "amd.com/gpu"),
    ("beta.amd.com/gpu.product-name", "amd.com/gpu"),
)
_SIZE_LABELS: tuple[tuple[str, str], ...] = (
    ("nvidia.com/gpu.memory", "nvidia.com/gpu"),
    ("amd.com/gpu.vram", "amd.com/gpu"),
    ("beta.amd.com/gpu.vram", "amd.com/gpu"),
)


# Labels that name one Node; Nodes equal but for these are scheduled alike by any pod that does
# not select on them (the usual pool of identical GPU Nodes).
_NODE_NAME_LABELS = frozenset({"kubernetes.io/hostname"})


class NodeGpus(BaseModel):
    """What one Node offers a GPU pod (only Nodes that show a GPU are kept)."""

    model_config = ConfigDict(frozen=True)

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    taints: tuple[dict, ...] = ()
    resource: Optional[str] = None  # nvidia.com/gpu or amd.com/gpu
    count: Optional[int] = None  # allocatable GPUs; None when the device plugin has not reported yet
    gpu: Optional[str] = None  # catalog name, or a size ("81559MiB") when only that is known
    label: str = ""  # the label that told the type: "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3"
    unschedulable: bool = False
    # Equal for Nodes that differ only in their name labels (computed when the Node is read, so
    # that grouping thousands of Nodes into pools is cheap).
    pool: str = ""


def _int(value: Any) -> Optional[int]:
    text = str(value).strip()
    return int(text) if re.fullmatch(r"\d{1,6}", text) else None


def _vram_size(label: str, value: str) -> Optional[str]:
    """GFD gpu.memory is MiB ("81559"); AMD vram is e.g. "192G" (GiB) or "196592M"."""
    text = value.strip()
    if label.endswith("gpu.memory") and re.fullmatch(r"\d+", text):
        return f"{text}MiB"
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([GM])i?B?", text, re.IGNORECASE)
    if match:
        return f"{match.group(1)}{'GiB' if match.group(2).upper() == 'G' else 'MiB'}"
    return None


def read_node(node: Any, catalog: GpuCatalog) -> Optional[NodeGpus]:
    """The GPUs a Node offers, or None when it shows none (no GPU label, no GPU resource)."""
    if not isinstance(node, dict):
        return None
    meta = node.get("metadata") if isinstance(node.get("metadata"), dict) else {}
    spec = node.get("spec") if isinstance(node.get("spec"), dict) else {}
    status = node.get("status") if isinstance(node.get("status"), dict) else {}
    name = str(meta.get("name") or "")
    raw_labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
    labels = {str(k): str(v) for k, v in raw_labels.items()}
    allocatable = status.get("allocatable") if isinstance(status.get("allocatable"), dict) else {}
    resource, count = None, None
    for candidate in GPU_RESOURCES:
        if candidate in allocatable:
            resource, count = candidate, _int(allocatable[candidate])
            break
    gpu, label = None, ""
    for key, vendor_resource in _PRODUCT_LABELS:
        if labels.get(key):
            label = f"{key}={labels[key]}"
            resource = resource or vendor_resource
            found = catalog.find(labels[key])
            gpu = found.name if found is not None else None
            break
    if gpu is None:
        for key in INSTANCE_TYPE_LABELS:
            found = catalog.by_instance_type(labels.get(key, "")) if labels.get(key) else None
            if found is not None:
                gpu, label = found.name, label or f"{key}={labels[key]}"
                resource = resource or ("amd.com/gpu" if found.vendor == "amd" else "nvidia.com/gpu")
                break
    if gpu is None:
        for key, vendor_resource in _SIZE_LABELS:
            size = _vram_size(key, labels[key]) if labels.get(key) else None
            if size is not None:
                gpu, label = size, label or f"{key}={labels[key]}"
                resource = resource or vendor_resource
                break
    if resource is None or (count == 0 and not label):
        return None
    taints = tuple(t for t in (spec.get("taints") if isinstance(spec.get("taints"), list) else [])
                   if isinstance(t, dict))
    unschedulable = bool(spec.get("unschedulable"))
    pool = json.dumps([resource, count, gpu, label, unschedulable,
                       sorted((k, v) for k, v in labels.items() if k not in _NODE_NAME_LABELS),
                       sorted(json.dumps(t, sort_keys=True, default=str) for t in taints)])
    return NodeGpus(name=name, labels=labels, taints=taints, resource=resource, count=count, gpu=gpu, label=label,
                    unschedulable=unschedulable, pool=hashlib.sha256(pool.encode()).hexdigest()[:32])


class Inventory(BaseModel):
    """The GPU Nodes of one cluster at one moment (immutable: a new one per change)."""

    model_config = ConfigDict(frozen=True)
    nodes: tuple[NodeGpus, ...] = ()

    @classmethod
    def from_nodes(cls, nodes: Iterable[Any], catalog: GpuCatalog) -> "Inventory":
        read = (read_node(n, catalog) for n in nodes)
        return cls.of(n for n in read if n is not None)

    @classmethod
    def of(cls, nodes: Iterable[NodeGpus]) -> "Inventory":
        """From NodeGpus already validated (no re-validation: thousands of Nodes)."""
        return cls.model_construct(nodes=tuple(sorted(nodes, key=lambda n: n.name)))

    def pools(self) -> list[tuple[NodeGpus, tuple[str, ...]]]:
        """(a representative Node, the names of all Nodes like it): Nodes that differ only in their
        name labels, computed once per snapshot."""
        cached = self.__dict__.get("_pools")
        if cached is None:
            groups: dict[str, tuple[NodeGpus, list[str]]] = {}
            for node in self.nodes:
                groups.setdefault(node.pool or node.name, (node, []))[1].append(node.name)
            cached = [(first, tuple(names)) for first, names in groups.values()]
            self.__dict__["_pools"] = cached
        return cached


# ---------------------------------------------------------------- scheduling predicates

def _expression_matches(expr: Any, labels: dict[str, str]) -> bool:
    if not isinstance(expr, dict):
        return False
    key, op = str(expr.get("key", "")), str(expr.get("operator", ""))
    values = [str(v) for v in expr.get("values") or []] if isinstance(expr.get("values") or [], list) else []
    present = key in labels
    if op == "In":
        return present and labels[key] in values
    if op == "NotIn":
        return not present or labels[key] not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and len(values) == 1:
        try:
            have, want = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > want if op == "Gt" else have < want
    return False


def _term_matches(term: Any, node: NodeGpus) -> bool:
    """One nodeSelectorTerm: all its expressions and fields (an empty term matches no Node)."""
    if not isinstance(term, dict):
        return False
    exprs = term.get("matchExpressions") if isinstance(term.get("matchExpressions"), list) else []
    fields = term.get("matchFields") if isinstance(term.get("matchFields"), list) else []
    if not exprs and not fields:
        return False
    field_values = {"metadata.name": node.name}
    return (all(_expression_matches(e, node.labels) for e in exprs)
            and all(isinstance(f, dict) and _expression_matches(f, field_values) for f in fields))


def _tolerated(taint: dict, tolerations: tuple[dict, ...], resource: Optional[str]) -> bool:
    effect = taint.get("effect")
    if effect not in ("NoSchedule", "NoExecute"):
        return True  # PreferNoSchedule only steers
    key, value = taint.get("key"), taint.get("value")
    if resource and key == resource:
        return True  # ExtendedResourceToleration
    for tol in tolerations:
        if tol.get("effect") not in (None, "", effect):
            continue
        op = tol.get("operator") or "Equal"
        if not tol.get("key") and op == "Exists":
            return True
        if tol.get("key") != key:
            continue
        if op == "Exists" or (op == "Equal" and (tol.get("value") or "") == (value or "")):
            return True
    return False


def schedulable(node: NodeGpus, placement: Placement, resource: Optional[str]) -> bool:
    """Whether the scheduler could place the pod on this Node (GPU count aside)."""
    if placement.node_name and node.name != placement.node_name:
        return False
    if any(node.labels.get(k) != v for k, v in placement.node_selector.items()):
        return False
    terms = placement.node_affinity_terms
    if terms is not None and not any(_term_matches(t, node) for t in terms):
        return False
    return all(_tolerated(t, placement.tolerations, resource) for t in node.taints)


# ---------------------------------------------------------------- what a launch could get

class GpuOption(BaseModel):
    """One GPU type a pod could be scheduled onto, and the Nodes that offer it."""

    model_config = ConfigDict(frozen=True)
    name: str  # catalog name, a size, or the unknown label value
    spec: Optional[GpuSpec] = None  # None: the label names a GPU the catalog does not know
    nodes: tuple[str, ...]
    label: str  # a nodeSelector that pins it: "nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3"


class Reachable(BaseModel):
    """The GPU types of the Nodes a pod can be scheduled on, largest memory first."""

    model_config = ConfigDict(frozen=True)
    options: tuple[GpuOption, ...] = ()
    too_few_gpus: tuple[str, ...] = ()  # Nodes that match but have fewer allocatable GPUs than the pod asks


def _names_nodes(placement: Placement) -> bool:
    """Whether the placement selects on what tells Nodes of one pool apart (their names)."""
    if placement.node_name or any(k in _NODE_NAME_LABELS for k in placement.node_selector):
        return True
    for term in placement.node_affinity_terms or ():
        if not isinstance(term, dict) or term.get("matchFields"):
            return True
        for expr in term.get("matchExpressions") or []:
            if not isinstance(expr, dict) or expr.get("key") in _NODE_NAME_LABELS:
                return True
    return False


def reachable_gpus(inventory: Inventory, placement: Placement, resource: Optional[str], count: Optional[int],
                   catalog: GpuCatalog) -> Reachable:
    """Every GPU type among the Nodes the pod (asking `count` of `resource`) can be scheduled on.

    Judged per pool of like Nodes (once per snapshot), and remembered per placement on the
    snapshot, so a review costs a lookup however many Nodes the cluster has."""
    memo: dict[str, Reachable] = inventory.__dict__.setdefault("_reachable", {})
    key = f"{placement.model_dump_json()}|{resource}|{count}"
    found = memo.get(key)
    if found is not None:
        return found
    if _names_nodes(placement):
        pools = [(node, (node.name,)) for node in inventory.nodes]
    else:
        pools = inventory.pools()
    groups: dict[str, list[tuple[NodeGpus, tuple[str, ...]]]] = {}
    too_few: list[str] = []
    for node, names in pools:
        if resource and node.resource and node.resource != resource:
            continue
        if not schedulable(node, placement, resource):
            continue
        if count and node.count is not None and node.count < count:
            too_few.extend(names)
            continue
        groups.setdefault(node.gpu or node.label or "unlabelled", []).append((node, names))
    options: list[GpuOption] = []
    for key_name, members in groups.items():
        first = members[0][0]
        spec: Optional[GpuSpec] = None
        if first.gpu is not None:
            spec = catalog.find(first.gpu)
            if spec is None:
                try:
                    spec = gpu_from_size(first.gpu)
                except VllmFitError:
                    spec = None
        name = spec.name if spec is not None else (first.label.split("=", 1)[-1] if first.label else key_name)
        nodes = tuple(sorted(n for _, names in members for n in names))
        options.append(GpuOption(name=name, spec=spec, nodes=nodes, label=first.label))
    options.sort(key=lambda o: (-(o.spec.total_bytes if o.spec else 0), o.name))
    result = Reachable(options=tuple(options), too_few_gpus=tuple(sorted(too_few)))
    if len(memo) >= 1024:
        memo.clear()
    memo[key] = result
    return result
