"""The one exception type the core raises for bad input."""


class VllmFitError(ValueError):
    """Bad or unusable input (a manifest, an argument, model metadata).

    The message is meant for a person: it says what was wrong and, where it can, what to do.
    Nothing else escapes the core for bad input.
    """
