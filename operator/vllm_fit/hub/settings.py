"""How the Hub resolver is configured: everything comes from the environment, with defaults.

| variable | meaning | default |
|---|---|---|
| HF_ENDPOINT | Hub or mirror base URL | https://huggingface.co |
| HF_TOKEN | access token (gated/private models) | none |
| VLLM_FIT_HF_TOKEN_FILE, HF_TOKEN_PATH | file holding the token (a mounted Secret) | none |
| HF_HUB_OFFLINE (or VLLM_FIT_OFFLINE) | never contact the Hub; bundled + cached only | off |
| VLLM_FIT_HUB | `0`/`off` disables the Hub (same as offline) | on |
| VLLM_FIT_CACHE_DIR | on-disk cache | $XDG_CACHE_HOME/vllm-fit or ~/.cache/vllm-fit |
| VLLM_FIT_CACHE_TTL | seconds a cached branch/tag lookup is fresh (commit shas: forever) | 604800 (7 days) |
| VLLM_FIT_NEGATIVE_TTL | seconds a 401/403/404 is remembered | 60 |
| VLLM_FIT_TRANSIENT_TTL | seconds an unreachable/5xx/garbage answer is remembered | 10 |
| VLLM_FIT_HUB_TIMEOUT | default deadline of one lookup (the webhook passes its own) | 30 |
| VLLM_FIT_HUB_REQUEST_TIMEOUT | timeout of each HTTP request to the Hub | 10 |
| VLLM_FIT_MODEL_BUNDLE_DIRS | extra bundle directories, comma-separated (the webhook's model_bundle_dirs) | none |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from ..errors import VllmFitError

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _flag(value: Optional[str]) -> bool:
    return (value or "").strip().lower() in _TRUE


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise VllmFitError(f"{name}={raw!r} is not a number of seconds") from None
    if value < 0:
        raise VllmFitError(f"{name}={raw!r} must not be negative")
    return value


def _read_token_file(path: str, name: str) -> Optional[str]:
    try:
        token = Path(path).expanduser().read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise VllmFitError(f"{name}={path}: cannot read the token file ({exc.strerror})") from None
    return token or None


def default_cache_dir(env: Mapping[str, str]) -> Path:
    if env.get("VLLM_FIT_CACHE_DIR"):
        return Path(env["VLLM_FIT_CACHE_DIR"]).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "vllm-fit"


@dataclass(frozen=True)
class HubSettings:
    endpoint: str = DEFAULT_ENDPOINT
    token: Optional[str] = field(default=None, repr=False)
    token_source: str = "none"
    offline: bool = False
    cache_dir: Path = field(default_factory=lambda: default_cache_dir(os.environ))
    ttl: float = 7 * 24 * 3600.0
    negative_ttl: float = 60.0
    transient_ttl: float = 10.0
    timeout: float = 30.0
    request_timeout: float = 10.0
    memory_entries: int = 256
    max_inflight: int = 32

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None, **overrides) -> "HubSettings":
        env = os.environ if env is None else env
        token, source = None, "none"
        if env.get("VLLM_FIT_HF_TOKEN_FILE"):
            token = _read_token_file(env["VLLM_FIT_HF_TOKEN_FILE"], "VLLM_FIT_HF_TOKEN_FILE")
            source = "VLLM_FIT_HF_TOKEN_FILE" if token else "none"
        if token is None and env.get("HF_TOKEN", "").strip():
            token, source = env["HF_TOKEN"].strip(), "HF_TOKEN"
        if token is None and env.get("HF_TOKEN_PATH"):
            token = _read_token_file(env["HF_TOKEN_PATH"], "HF_TOKEN_PATH")
            source = "HF_TOKEN_PATH" if token else "none"
        hub_switch = (env.get("VLLM_FIT_HUB") or "").strip().lower()
        values = dict(
            endpoint=(env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"),
            token=token,
            token_source=source,
            offline=_flag(env.get("HF_HUB_OFFLINE")) or _flag(env.get("VLLM_FIT_OFFLINE")) or hub_switch in _FALSE,
            cache_dir=default_cache_dir(env),
            ttl=_seconds(env, "VLLM_FIT_CACHE_TTL", cls.ttl),
            negative_ttl=_seconds(env, "VLLM_FIT_NEGATIVE_TTL", cls.negative_ttl),
            transient_ttl=_seconds(env, "VLLM_FIT_TRANSIENT_TTL", cls.transient_ttl),
            timeout=_seconds(env, "VLLM_FIT_HUB_TIMEOUT", cls.timeout),
            request_timeout=_seconds(env, "VLLM_FIT_HUB_REQUEST_TIMEOUT", cls.request_timeout),
        )
        values.update(overrides)
        return cls(**values)


def bundle_dirs_from_env(env: Optional[Mapping[str, str]] = None) -> list[Path]:
    env = os.environ if env is None else env
    raw = env.get("VLLM_FIT_MODEL_BUNDLE_DIRS") or ""
    return [Path(p.strip()).expanduser() for p in raw.replace(os.pathsep, ",").split(",") if p.strip()]
