"""Container images: repository and tag, the vLLM release a tag states, which images run vLLM.

Pure string work on image references (`registry/name:tag@digest`) for the manifest reader (find.py)
and the webhook's image patterns.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Callable, Iterable, Optional, Sequence

# Images whose entrypoint runs the vLLM OpenAI server, so `args` alone are vLLM flags.
# Shell-style patterns on the image name without tag or digest.
DEFAULT_VLLM_IMAGES: tuple[str, ...] = (
    "vllm/vllm-openai", "vllm/vllm-openai-*", "*/vllm/vllm-openai", "*/vllm/vllm-openai-*",
    "*/vllm-openai", "*/vllm-openai-*",
)

def image_repository(image: str) -> str:
    ref = image.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


def image_tag(image: str) -> Optional[str]:
    ref = image.split("@", 1)[0]
    slash, colon = ref.rfind("/"), ref.rfind(":")
    return ref[colon + 1:] if colon > slash else None


_TAG_VERSION = re.compile(r"^v?(\d+\.\d+\.\d+)(?:$|[-+_.])")
_EMBEDDED_VERSION = re.compile(r"vllm[_-]v?(\d+\.\d+\.\d+)(?:$|[^\d.])")


def vllm_version_from_image(image: Optional[str]) -> Optional[str]:
    """`vllm/vllm-openai:v0.11.0` -> "0.11.0"; `rocm/vllm:..._vllm_0.6.4` -> "0.6.4"; else None.

    Only tags that state the vLLM version count: `latest`, digests without a tag, and other
    products' versions (NGC, Red Hat, llm-d images) give None.
    """
    if not image or not isinstance(image, str):
        return None
    tag = image_tag(image)
    if not tag:
        return None
    repo = image_repository(image)
    parts = repo.split("/")
    if parts and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost") and len(parts) > 1:
        parts = parts[1:]  # drop the registry host
    if parts[:1] == ["vllm"]:
        m = _TAG_VERSION.match(tag)
        if m:
            return m.group(1)
    m = _EMBEDDED_VERSION.search(tag)
    return m.group(1) if m else None


class _ImageMatcher:
    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self.regex = re.compile("|".join(fnmatch.translate(p) for p in self.patterns)) if self.patterns else None

    def __call__(self, image: Optional[str]) -> bool:
        if not image or self.regex is None:
            return False
        repo = image_repository(image)
        return bool(self.regex.match(repo) or self.regex.match(repo.removeprefix("docker.io/")))


_MATCHERS: dict[tuple[str, ...], _ImageMatcher] = {}


def _matcher(patterns: Sequence[str]) -> _ImageMatcher:
    key = tuple(patterns)
    found = _MATCHERS.get(key)
    if found is None:
        found = _MATCHERS[key] = _ImageMatcher(key)
        if len(_MATCHERS) > 64:
            _MATCHERS.clear()
    return found


def image_matcher(patterns: Sequence[str]) -> Callable[[Optional[str]], bool]:
    """Whether an image (with tag or digest) is one of `patterns` (shell-style, on the name)."""
    return _matcher(tuple(patterns))
