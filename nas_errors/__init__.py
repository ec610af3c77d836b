"""The project's exception hierarchy, at the bottom of the layers so every package can use it.

``db`` and ``proxies`` are leaves that may not import ``nas``; they subclass :class:`NasError`
from here, so the CLI catches one base class. Every message is one line naming the rule broken.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["NasError", "ConfigError", "SpaceError", "SearchInterrupted", "did_you_mean",
           "printable"]


class NasError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(NasError, ValueError):
    """An architecture or run configuration breaks a rule (field, allowed values, got)."""


class SpaceError(NasError, ValueError):
    """A search-space document is malformed (file, key path, what is allowed)."""


class SearchInterrupted(KeyboardInterrupt):
    """A search stopped by Ctrl-C or SIGTERM after recording its trials; re-running resumes it.

    A ``KeyboardInterrupt`` (not a :class:`NasError`): a library caller stops as it would on
    Ctrl-C. ``summary`` is the run's ``SearchSummary``; ``exit_code`` is 128 + the signal number.
    """

    def __init__(self, message: str, summary, exit_code: int) -> None:
        super().__init__(message)
        self.summary, self.exit_code = summary, exit_code


def printable(text: str) -> str:
    """``text`` with line breaks, escape sequences and other unprintable characters written as
    Python escapes (``\\n``, ``\\x1b``): names and errors read from a database or a file may
    hold anything, and raw they would break a one-line message or drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def did_you_mean(word: object, choices: Iterable[object]) -> str:
    """Return " (did you mean 'x'?)" for the closest choice, or "" when nothing is close (or
    ``word`` is no name: a list, a mapping, a long text; such a value from a YAML alias bomb
    would take minutes and gigabytes to turn into a string)."""
    if isinstance(word, int) and not isinstance(word, bool) and word.bit_length() > 600:
        return ""
    if not isinstance(word, (str, int, float)) or len(str(word)) > 200:
        return ""
    names = [str(c) for c in choices]
    close = difflib.get_close_matches(str(word), names, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
