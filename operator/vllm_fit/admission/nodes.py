"""The cluster's GPU Nodes for the webhook: a store fed by kopf's watch of Nodes.

kopf lists the Nodes at start and then follows the watch stream (its own reconnects and
re-lists); each event reaches `NodeStore.apply`. Reviews only read `inventory()`, a frozen
snapshot rebuilt once per change, so a review never waits on the API server. RBAC: list and
watch on nodes (the chart's ClusterRole); without it kopf logs the refusal and reviews go on
without cluster GPUs.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

from ..inventory import Inventory, NodeGpus, read_node
from ..gpu_catalog import GpuCatalog

# A cluster has thousands of Nodes at most; this bounds memory against a runaway stream.
MAX_NODES = 20_000


class NodeStore:
    """Node name -> what it offers a GPU pod. Thread-safe; snapshots are immutable."""

    def __init__(self, catalog: GpuCatalog) -> None:
        self.catalog = catalog
        self._nodes: dict[str, NodeGpus] = {}
        self._lock = threading.Lock()
        self._snapshot: Optional[Inventory] = Inventory()
        self.generation = 0  # bumped on every change that matters to a judgement
        self.synced = False  # the first listing has been seen (or an event arrived)

    def apply(self, event_type: Optional[str], body: Any) -> None:
        """One watch event: None (listing), ADDED, MODIFIED or DELETED with the Node's body."""
        meta = body.get("metadata") if isinstance(body, dict) else None
        name = str((meta or {}).get("name") or "")
        if not name:
            return
        gpus = None if event_type == "DELETED" else read_node(body, self.catalog)
        with self._lock:
            self.synced = True
            if gpus is None:
                if self._nodes.pop(name, None) is not None:
                    self._changed()
                return
            if self._nodes.get(name) == gpus:
                return  # heartbeats and condition updates change nothing we read
            if name not in self._nodes and len(self._nodes) >= MAX_NODES:
                return
            self._nodes[name] = gpus
            self._changed()

    def _changed(self) -> None:
        self.generation += 1
        self._snapshot = None

    def inventory(self) -> Inventory:
        snapshot = self._snapshot
        if snapshot is not None:
            return snapshot
        with self._lock:
            if self._snapshot is None:
                self._snapshot = Inventory.of(self._nodes.values())
            return self._snapshot

    def __len__(self) -> int:
        return len(self._nodes)
