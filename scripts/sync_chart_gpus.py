#!/usr/bin/env python3
"""Write the GPU catalog's names into the chart's values.schema.json (config.default_gpu enum).

The schema rejects a default_gpu that is neither a catalog name nor a size at `helm install`;
run this after adding a GPU, alias, GFD product or GKE accelerator to profiles/gpus.yaml
(tests/test_chart.py checks that the two agree).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from vllm_fit.profiles import gpu_catalog  # noqa: E402

SCHEMA = ROOT / "charts" / "vllm-fit" / "values.schema.json"


def catalog_names() -> list[str]:
    names: list[str] = []
    for gpu in gpu_catalog().gpus:
        for key in (gpu.name, *gpu.aliases, *gpu.gfd_products, *gpu.gke_accelerators):
            if key and key not in names:
                names.append(key)
    return names


def main() -> int:
    schema = json.loads(SCHEMA.read_text())
    choices = schema["properties"]["config"]["properties"]["default_gpu"]["anyOf"]
    (entry,) = [c for c in choices if "enum" in c]
    entry["enum"] = catalog_names()
    SCHEMA.write_text(json.dumps(schema, indent=2) + "\n")
    print(f"{SCHEMA.relative_to(ROOT)}: {len(entry['enum'])} GPU names", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
