"""Every error the engine raises on purpose, under one base class (:class:`NasError`).

The base lives in the bottom-layer ``nas_errors`` package so that the leaves (``db``,
``proxies``, ``nas.models``) can subclass it; this module gathers the whole hierarchy for callers.
"""

from __future__ import annotations

from db.errors import StorageError
from nas_errors import ConfigError, NasError, SearchInterrupted, SpaceError, did_you_mean
from proxies.errors import DatasetError

__all__ = ["NasError", "ConfigError", "SpaceError", "StorageError", "DatasetError",
           "SearchInterrupted", "did_you_mean"]

