"""The ways a Hub lookup fails, each its own type.

All are ModelNotFound (so a resolver chain moves on, and callers that only know
VllmFitError still report them as bad input). `transient` says whether trying again soon
may help: the resolver caches transient failures for seconds, definitive ones for a minute.
"""

from __future__ import annotations

from ..errors import VllmFitError

# Advice for plan, check and the webhook when the Hub cannot be asked; `models fetch` leaves it out
# (it is the command that just failed).
BUNDLE_HINT = "bundle the model with `vllm-fit models fetch` where the Hub is reachable"


class ModelNotFound(VllmFitError):
    """No resolver knows the model."""


class HubError(ModelNotFound):
    """The Hugging Face Hub could not give the model's metadata."""

    transient = False


class HubAccessDenied(HubError):
    """401/403: a gated or private model and no (or an insufficient) token."""


class HubModelNotFound(HubError):
    """404: no such model or revision, or a repository without a config.json."""


class HubUnavailable(HubError):
    """The Hub could not be reached, timed out a request, or answered 5xx/429."""

    transient = True


class HubBadResponse(HubError):
    """The Hub answered, but with something that is not what the API promises (garbage JSON, ...)."""

    transient = True


class HubTimeout(HubError):
    """The caller's deadline passed first; the lookup goes on in the background and fills the cache."""

    transient = True


class HubOffline(HubError):
    """Offline mode (HF_HUB_OFFLINE or the Hub disabled) and the model is neither bundled nor cached."""
