"""Errors raised by the ``db`` package."""

from __future__ import annotations

from nas_errors import NasError

__all__ = ["StorageError"]


class StorageError(NasError):
    """The results database could not be opened, or an operation on it failed.

    The message is always one line: what went wrong, on which database (password masked), and
    what to do about it where that is known.  Driver exceptions are chained as ``__cause__``.
    """
