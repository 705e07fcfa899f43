"""A webhook review naming an unbundled model, with the fixture Hub hanging: answered within its deadline."""

from __future__ import annotations

import asyncio
import time

from hub_fake import QWEN, fixture_models, hub, make_resolver  # noqa: F401

from vllm_fit.admission.config import WebhookConfig
from vllm_fit.admission.review import Reviewer
from vllm_fit.hub import default_resolver
from vllm_fit.profiles import gpu_catalog, runtime_profiles


def deployment(model: str) -> dict:
    container = {"name": "vllm", "image": "vllm/vllm-openai:v0.11.0", "args": ["--model", model],
                 "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "qwen", "namespace": "ml"},
            "spec": {"template": {"spec": {"containers": [container]}}}}


def test_review_with_a_hanging_hub_meets_its_deadline_and_the_next_one_has_the_model(hub, make_resolver):
    hub.faults[QWEN] = "hang"
    config = WebhookConfig(default_gpu="H100-80GB", deadline_seconds=0.5)
    reviewer = Reviewer(config, default_resolver(hub=make_resolver()), gpu_catalog(), runtime_profiles())
    began = time.monotonic()
    first = asyncio.run(reviewer.review(deployment(QWEN)))
    assert time.monotonic() - began < 2.0
    assert first.verdict != "fits"
    assert any("not ready within 0.5s" in w for w in first.warnings), first
    hub.release()
    assert reviewer.resolver.hub.wait_idle(10)
    began = time.monotonic()
    second = asyncio.run(reviewer.review(deployment(QWEN)))
    assert time.monotonic() - began < 1.0
    assert second.verdict in ("fits", "warn"), second
    assert hub.count(r"^/api/models/") == 1
