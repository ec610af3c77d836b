"""Registry of dataset builders: name -> function producing in-memory images and labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from proxies.errors import DatasetError


@dataclass(frozen=True)
class RawDataset:
    """A whole dataset in memory, before (or with) its train / val / test split."""

    images: np.ndarray  # (N, R, R, 3) uint8, HWC, values 0..255
    labels: np.ndarray  # (N,) int64, class ids in 0..num_classes-1
    num_classes: int  # number of distinct classes
    splits: np.ndarray | None = None  # (N,) int8 split ids 0 train / 1 val / 2 test, or None
    #                                   to have prepare_dataset draw a stratified split


Builder = Callable[[int], RawDataset]  # resolution (pixels) -> RawDataset

_BUILDERS: dict[str, Builder] = {}


def register_dataset(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering `fn(resolution) -> RawDataset` under `name`."""

    def decorate(fn: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"dataset {name!r} is already registered")
        _BUILDERS[name] = fn
        return fn

    return decorate


def list_datasets() -> list[str]:
    """Names of all registered datasets, sorted."""
    return sorted(_BUILDERS)


def get_builder(name: str) -> Builder:
    """The builder registered under `name`; DatasetError listing the known names otherwise."""
    try:
        return _BUILDERS[name]
    except KeyError:
        known = ", ".join(list_datasets()) or "(none)"
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {known}") from None
