"""Errors raised by the proxies package."""

from __future__ import annotations

from nas_errors import NasError

__all__ = ["DatasetError"]


class DatasetError(NasError):
    """A dataset cannot be prepared or loaded; the message says what is wrong and what is OK."""


class ZeroCostError(ValueError):
    """A zero-cost proxy cannot score a model: unknown name, missing layers, non-finite score."""
