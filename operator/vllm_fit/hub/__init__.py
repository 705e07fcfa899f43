"""Model metadata resolvers: local checkpoints, bundled profiles, the on-disk cache and the Hugging Face Hub.

Only `hub_client` imports huggingface_hub, and only when the Hub is really asked.
"""

from .cache import DiskCache, HubRecord
from .errors import HubAccessDenied, HubBadResponse, HubError, HubModelNotFound, HubOffline, HubTimeout, HubUnavailable
from .hub_resolver import HubResolver
from .resolver import BundledResolver, ChainResolver, LocalDirResolver, ModelNotFound, ModelResolver, default_resolver
from .settings import HubSettings

__all__ = [
    "BundledResolver", "ChainResolver", "DiskCache", "HubAccessDenied", "HubBadResponse", "HubError", "HubModelNotFound",
    "HubOffline", "HubRecord", "HubResolver", "HubSettings", "HubTimeout", "HubUnavailable", "LocalDirResolver",
    "ModelNotFound", "ModelResolver", "default_resolver",
]
