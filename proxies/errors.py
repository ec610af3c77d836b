"""Errors raised by the proxies package."""

from __future__ import annotations


class DatasetError(Exception):
    """A dataset cannot be prepared or loaded; the message says what is wrong and what is OK."""


class ZeroCostError(ValueError):
    """A zero-cost proxy cannot score a model: unknown name, missing layers, non-finite score."""
