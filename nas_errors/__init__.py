"""The project's exception hierarchy, at the bottom of the layers so every package can use it.

``db`` and ``proxies`` are leaves that may not import ``nas``; they subclass :class:`NasError`
from here, so the CLI catches one base class. Every message is one line naming the rule broken.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["NasError", "ConfigError", "SpaceError", "did_you_mean"]


class NasError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(NasError, ValueError):
    """An architecture or run configuration breaks a rule (field, allowed values, got)."""


class SpaceError(NasError, ValueError):
    """A search-space document is malformed (file, key path, what is allowed)."""


def did_you_mean(word: object, choices: Iterable[object]) -> str:
    """Return " (did you mean 'x'?)" for the closest choice, or "" when nothing is close."""
    names = [str(c) for c in choices]
    close = difflib.get_close_matches(str(word), names, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
