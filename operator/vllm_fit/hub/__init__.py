"""Model metadata resolvers: bundled profiles, local checkpoints (and, later, the Hugging Face Hub)."""

from .resolver import BundledResolver, ChainResolver, LocalDirResolver, ModelNotFound, ModelResolver, default_resolver

__all__ = ["BundledResolver", "ChainResolver", "LocalDirResolver", "ModelNotFound", "ModelResolver", "default_resolver"]
