"""Errors raised by the ``db`` package."""

from __future__ import annotations

from typing import Any

from nas_errors import NasError

__all__ = ["DatabaseGoneError", "SchemaError", "StorageError", "StudyBusyError"]


class StorageError(NasError):
    """The results database could not be opened, or an operation on it failed.

    The message is always one line: what went wrong, on which database (password masked), and
    what to do about it where that is known.  Driver exceptions are chained as ``__cause__``.
    """


class SchemaError(StorageError):
    """The database's schema revision is not the one this version of the package needs.

    Behind: the message names the upgrade command (``python -m nas db upgrade --db URL``);
    ahead or unknown: it was written by a newer metaformer-nas, upgrade the package.
    """


class StudyBusyError(StorageError):
    """Another live run holds the study's lease; ``holder`` is its :class:`db.RunRecord`."""

    def __init__(self, message: str, holder: Any = None) -> None:
        super().__init__(message)
        self.holder = holder


class DatabaseGoneError(StorageError):
    """The SQLite file a Store opened was deleted, or replaced under a writing Store, by
    another program: nothing written now would be read by anyone. Never retried."""
