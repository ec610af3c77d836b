"""Registry of datasets: embedded builders (name -> images in memory) and path-based sources."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Protocol

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


@dataclass(frozen=True)
class SourceData:
    """A user's dataset as read from `--data-path`, before its split is completed."""

    images: np.ndarray | Sequence[np.ndarray]  # (N, S, S, 3) uint8 stored raw, or a lazy
    #                                            sequence of HWC uint8 images of any size,
    #                                            stored as JPEG
    labels: np.ndarray  # (N,) int64, class ids in 0..num_classes-1
    num_classes: int  # number of classes
    splits: np.ndarray | None  # (N,) int8 0 train / 1 val / 2 test as given by the input (no
    #                            1 at all: val is drawn from train), or None: draw val and test


class Source(Protocol):
    """Reads one kind of input (a folder or file given as `--data-path`)."""

    expects: str  # what the path must be, for error messages

    def files(self, path: Path) -> list[Path]:
        """The input files whose bytes define the dataset, in a fixed order; DatasetError if
        `path` is not what this source expects."""
        ...

    def read(self, path: Path) -> SourceData:
        """The dataset at `path`; DatasetError naming what is wrong when it cannot be read."""
        ...


Builder = Callable[[int], RawDataset]  # resolution (pixels) -> RawDataset

_BUILDERS: dict[str, Builder] = {}
_SOURCES: dict[str, Source] = {}


def register_dataset(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering `fn(resolution) -> RawDataset` under `name`."""

    def decorate(fn: Builder) -> Builder:
        _check_free(name)
        _BUILDERS[name] = fn
        return fn

    return decorate


def register_source(name: str, source: Source) -> Source:
    """Register a reader of user data (`prepare_dataset(name, data_path=...)`) under `name`."""
    _check_free(name)
    _SOURCES[name] = source
    return source


def _check_free(name: str) -> None:
    if name in _BUILDERS or name in _SOURCES:
        raise ValueError(f"dataset {name!r} is already registered")


def list_datasets() -> list[str]:
    """Names of all registered datasets, embedded and path-based, sorted."""
    return sorted([*_BUILDERS, *_SOURCES])


def dataset_kinds() -> dict[str, Literal["embedded", "path"]]:
    """{name: "embedded" (built in, no data path) or "path" (needs `data_path`)}, sorted."""
    return {name: "embedded" if name in _BUILDERS else "path" for name in list_datasets()}


def get_builder(name: str) -> Builder:
    """The builder registered under `name`; DatasetError listing the known names otherwise."""
    try:
        return _BUILDERS[name]
    except KeyError:
        if name in _SOURCES:
            raise DatasetError(f"dataset {name!r} is read from a path, not built in; pass "
                               f"data_path") from None
        raise _unknown(name) from None


def get_source(name: str) -> Source:
    """The path-based source registered under `name`; DatasetError otherwise."""
    try:
        return _SOURCES[name]
    except KeyError:
        raise _unknown(name) from None


def _unknown(name: str) -> DatasetError:
    known = ", ".join(list_datasets()) or "(none)"
    return DatasetError(f"unknown dataset {name!r}; known datasets: {known}")
