"""GPUs as vLLM sees them: total memory as torch reports it, and the names Kubernetes uses."""

from __future__ import annotations

import re
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from .errors import VllmFitError
from .units import GIB, MIB


class GpuSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    device_name: str = ""
    vendor: str = "nvidia"
    total_bytes: int
    nominal: bool = True
    source: str = ""
    compute_capability: Optional[str] = None
    # CPU and GPU share one memory (GB10): free memory at startup is what the host leaves.
    unified_memory: bool = False
    # What the host keeps of a unified memory at engine start (measured, see the catalog source).
    host_reserve_bytes: int = 0
    aliases: tuple[str, ...] = ()
    gfd_products: tuple[str, ...] = ()
    gke_accelerators: tuple[str, ...] = ()
    instance_types: dict[str, int] = Field(default_factory=dict)

    @property
    def total_gib(self) -> float:
        return self.total_bytes / GIB

    @property
    def is_a100(self) -> bool:
        return "a100" in (self.device_name or self.name).lower()

    @property
    def is_blackwell(self) -> bool:
        return (self.compute_capability or "").startswith("10.")


class MigProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    resource: str
    parent: str
    total_bytes: int
    nominal: bool = True
    source: str = ""


def _norm(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().lower())


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(gib|gb|mib|mb)\s*$", re.IGNORECASE)


def gpu_from_size(text: str) -> GpuSpec:
    """A GPU given only by its total memory, e.g. `79.18GiB` (GiB = 2^30, GB = 10^9)."""
    match = _SIZE.match(text)
    if not match:
        raise VllmFitError(f"{text!r} is neither a known GPU nor a size like 79.18GiB")
    number, unit = float(match.group(1)), match.group(2).lower()
    if number <= 0:
        raise VllmFitError(f"{text!r}: a GPU needs a positive amount of memory")
    factor = {"gib": GIB, "gb": 10**9, "mib": MIB, "mb": 10**6}[unit]
    return GpuSpec(name=f"{number:g}{match.group(2)}", total_bytes=int(number * factor), nominal=True,
                   source=f"given as a size ({text})")


class GpuCatalog(BaseModel):
    model_config = ConfigDict(frozen=True)
    gpus: tuple[GpuSpec, ...]
    mig_profiles: tuple[MigProfile, ...] = ()

    def _index(self) -> dict[str, GpuSpec]:
        index: dict[str, GpuSpec] = {}
        for gpu in self.gpus:
            for key in (gpu.name, gpu.device_name, *gpu.aliases, *gpu.gfd_products, *gpu.gke_accelerators):
                if key:
                    index.setdefault(_norm(key), gpu)
        return index

    def find(self, name: str) -> Optional[GpuSpec]:
        """A catalog GPU by canonical name, alias, GFD product label or GKE accelerator name."""
        if not name:
            return None
        index = self.__dict__.setdefault("_cache", None) or self._index()
        self.__dict__["_cache"] = index
        found = index.get(_norm(name))
        if found is None:
            # GFD with the MIG "single" strategy: NVIDIA-A100-80GB-PCIe-MIG-1g.10gb
            head, sep, profile_name = _norm(name).rpartition("-mig-")
            if sep and head:
                parent_gpu = index.get(head)
                if parent_gpu is not None:
                    return self.find_mig(f"mig-{profile_name}", parent=parent_gpu.name)
            mig = self.find_mig(name)
            if mig is not None:
                return mig
        return found

    def find_mig(self, resource: str, parent: Optional[str] = None) -> Optional[GpuSpec]:
        """A MIG slice by resource name. The same name exists on several parents with different
        sizes: when the parent GPU is known (a node label), its own profile is used, and a
        profile of another parent never is."""
        key = resource.strip().lower()
        short = key.split("/")[-1]
        parent_spec = self.find(parent) if parent else None
        candidates = [p for p in self.mig_profiles
                      if p.resource.lower() == key or p.resource.lower().split("/")[-1] == short]
        if parent:
            wanted = parent_spec.name if parent_spec is not None else parent
            candidates = [p for p in candidates if p.parent == wanted]
        if candidates:
            profile = candidates[0]
            owner = self.find(profile.parent) if profile.parent else None
            return GpuSpec(
                name=f"{profile.parent}-MIG-{short.removeprefix('mig-')}",
                device_name=(owner.device_name + " MIG") if owner else "",
                total_bytes=profile.total_bytes,
                nominal=profile.nominal,
                source=profile.source,
                compute_capability=owner.compute_capability if owner else None,
            )
        match = re.match(r"^(?:nvidia\.com/)?mig-(\d+)g\.(\d+)gb$", key)
        if match:
            return GpuSpec(name=f"MIG-{match.group(1)}g.{match.group(2)}gb", total_bytes=int(match.group(2)) * 10**9,
                           nominal=True, source=f"memory from the MIG profile name {resource} (nominal GB)")
        return None

    def by_instance_type(self, instance_type: str) -> Optional[GpuSpec]:
        for gpu in self.gpus:
            if instance_type in gpu.instance_types:
                return gpu
        return None

    def resolve(self, text: str) -> GpuSpec:
        """A catalog name/alias, or a size like 79.18GiB for a GPU the catalog lacks."""
        found = self.find(text)
        if found is not None:
            return found
        if _SIZE.match(text):
            return gpu_from_size(text)
        close = self.close_names(text)
        maybe = f"did you mean {' or '.join(close)}? " if close else ""
        raise VllmFitError(f"unknown GPU {text!r}; {maybe}`vllm-fit gpus` lists every name and alias, "
                           f"or give the total memory such as 79.18GiB")

    def close_names(self, text: str, limit: int = 3) -> list[str]:
        """Catalog names whose spelling is near `text` (typos, missing vendor prefixes)."""
        import difflib

        index = self.__dict__.get("_cache") or self._index()
        keys = difflib.get_close_matches(_norm(text), list(index), n=limit * 3, cutoff=0.6)
        return list(dict.fromkeys(index[key].name for key in keys))[:limit]
