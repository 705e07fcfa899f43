"""Images whose tag gives no vLLM version are judged as the newest modelled release by default,
configurable, and every output says how the version was decided."""

import asyncio

import pytest

from vllm_fit.admission.config import WebhookConfig
from vllm_fit.admission.review import Reviewer
from vllm_fit.hub.resolver import BundledResolver
from vllm_fit.launch.images import vllm_version_from_image
from vllm_fit.memory.versions import NEWEST_MODELLED_VERSION
from vllm_fit.profiles import gpu_catalog, runtime_profiles


def pod(image):
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "qwen", "namespace": "ml"},
        "spec": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                 "containers": [{"name": "vllm", "image": image,
                                 "command": ["vllm", "serve", "Qwen/Qwen3-0.6B", "--max-model-len", "8192"],
                                 "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
    }


def review(image, **config):
    reviewer = Reviewer(WebhookConfig(**config), BundledResolver(), gpu_catalog(), runtime_profiles())
    return asyncio.run(reviewer.review(pod(image)))


@pytest.mark.parametrize("image", ["vllm/vllm-openai:latest", "vllm/vllm-openai@sha256:" + "a" * 64,
                                   "registry.redhat.io/rhaiis/vllm-cuda-rhel9:3.2.1"])
def test_unversioned_images_are_judged_as_the_newest_modelled_release(image):
    assert vllm_version_from_image(image) is None
    judgement = review(image)
    (launch,) = judgement.launches
    assert launch.plan.vllm_version == NEWEST_MODELLED_VERSION
    assert launch.plan.vllm_version_source == "default: the newest modelled release"
    assert judgement.annotations["vllm-fit.io/vllm-version"] == f"{NEWEST_MODELLED_VERSION} (default: the newest modelled release)"
    assert any("states no vLLM version" in w and NEWEST_MODELLED_VERSION in w for w in judgement.warnings)
    assert "vllm-version-assumed" in [r.code for r in launch.verdict.reasons]


def test_configured_default_version():
    judgement = review("vllm/vllm-openai:latest", default_vllm_version="0.19.0")
    (launch,) = judgement.launches
    assert launch.plan.vllm_version == "0.19.0"
    assert judgement.annotations["vllm-fit.io/vllm-version"] == "0.19.0 (default: configured)"


def test_a_versioned_tag_is_taken_as_is_without_a_warning():
    judgement = review("vllm/vllm-openai:v0.11.0")
    (launch,) = judgement.launches
    assert launch.plan.vllm_version == "0.11.0"
    assert judgement.annotations["vllm-fit.io/vllm-version"] == "0.11.0 (image tag)"
    assert "vllm-version-assumed" not in [r.code for r in launch.verdict.reasons]


def test_cli_plan_says_how_the_version_was_decided():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "vllm_fit", "plan", "Qwen/Qwen3-0.6B", "--max-model-len", "8192"],
                         capture_output=True, text=True, timeout=60).stdout
    assert f"vLLM {NEWEST_MODELLED_VERSION}" in out and "default: the newest modelled release" in out
    pinned = subprocess.run([sys.executable, "-m", "vllm_fit", "plan", "Qwen/Qwen3-0.6B", "--max-model-len", "8192",
                             "--vllm-version", "0.19.0", "-o", "json"], capture_output=True, text=True, timeout=60).stdout
    import json

    assert json.loads(pinned)["vllm_version_source"] == "--vllm-version"
