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
