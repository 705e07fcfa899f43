import pytest

from vllm_fit.hub.resolver import BundledResolver
from vllm_fit.profiles import gpu_catalog, runtime_profiles


@pytest.fixture(scope="session")
def catalog():
    return gpu_catalog()


@pytest.fixture(scope="session")
def profiles():
    return runtime_profiles()


@pytest.fixture(scope="session")
def bundled():
    return BundledResolver()


@pytest.fixture(scope="session")
def h100(catalog):
    return catalog.resolve("H100-80GB")


@pytest.fixture(scope="session", autouse=True)
def _hermetic_hub(tmp_path_factory):
    """No test reaches the real Hugging Face Hub or writes ~/.cache: the Hub is off and the cache is
    temporary unless a test (tests/hub_fake.py `hub_env`) points them at the fixture Hub."""
    import os

    # VLLM_FIT_HUB=0 rather than HF_HUB_OFFLINE: huggingface_hub reads the latter once, at import,
    # and would then refuse the fixture Hub too.
    saved = {name: os.environ.get(name) for name in ("VLLM_FIT_HUB", "VLLM_FIT_CACHE_DIR", "HF_HUB_DISABLE_TELEMETRY")}
    os.environ["VLLM_FIT_HUB"] = "0"
    os.environ["VLLM_FIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("vllm-fit-cache"))
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
