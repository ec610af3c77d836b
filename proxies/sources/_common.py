"""Checks and hashing shared by the dataset sources."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from proxies.errors import DatasetError

HASH_CHARS = 16  # hex characters of sha256 kept as the content hash


def content_hash(kind: str, files: Sequence[Path]) -> str:
    """sha256 over `kind`, then each file's path (relative to the files' common folder, so
    moving or naming the input another way keeps the hash) and bytes; 16 hex characters."""
    digest = hashlib.sha256(kind.encode())
    base = os.path.commonpath([os.fspath(f.parent) for f in files]) if files else ""
    for path in files:
        rel = os.path.relpath(path, base)
        digest.update(b"\0" + os.fsencode(rel) + b"\0")  # (a name need not be UTF-8)
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        except OSError as e:
            raise DatasetError(f"cannot read {path} ({e.strerror})") from None
    return digest.hexdigest()[:HASH_CHARS]


def check_labels(labels: object, num_classes: int | None, where: str) -> np.ndarray:
    """`labels` as (N,) int64 in 0..num_classes-1 (None: any class id >= 0); DatasetError
    naming `where` otherwise."""
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise DatasetError(f"{where}: labels must be a 1-d array of integers, got shape "
                           f"{arr.shape} dtype {arr.dtype}")
    if arr.size and np.issubdtype(arr.dtype, np.unsignedinteger) \
            and arr.max() > np.uint64(np.iinfo(np.int64).max):  # no float compare (numpy 1)
        raise DatasetError(f"{where}: labels must be class ids 0..C-1, got {arr.max()}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise DatasetError(f"{where}: labels must be class ids 0..C-1, got {arr.min()}")
    if arr.size and num_classes is not None and arr.max() >= num_classes:
        raise DatasetError(f"{where}: labels must lie in 0..{num_classes - 1}, got "
                           f"{arr.min()}..{arr.max()}")
    return arr


def check_images(images: object, where: str) -> np.ndarray:
    """(N, S, S, 3) uint8 from (N, S, S, 3) or grey (N, S, S) uint8; DatasetError otherwise."""
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise DatasetError(f"{where}: images must be uint8, got {arr.dtype}")
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[1] != arr.shape[2]:
        raise DatasetError(f"{where}: images must have shape (N, S, S, 3) or (N, S, S) with "
                           f"square sides, got {arr.shape}")
    if not 8 <= arr.shape[1] <= 512:
        raise DatasetError(f"{where}: image side must be 8..512 pixels, got {arr.shape[1]}")
    return np.ascontiguousarray(arr)


def check_classes_present(train_labels: np.ndarray, num_classes: int, where: str) -> None:
    """DatasetError unless every class id 0..num_classes-1 occurs in the train split: the
    class count is the largest id + 1, so a stray id (10**9) or a gap would become classes
    with no training image (and a head that size)."""
    present = np.unique(train_labels)  # sorted, within 0..num_classes-1 (check_labels)
    n_missing = num_classes - len(present)
    if n_missing:
        have, shown = set(present.tolist()), []
        for c in range(num_classes):  # the first few, without an array of num_classes ids
            if c not in have:
                shown.append(str(c))
                if len(shown) == 5:
                    break
        more = ", ..." if n_missing > len(shown) else ""
        raise DatasetError(f"{where}: labels must be class ids 0..C-1 with every class in the "
                           f"train split; labels run to {num_classes - 1} but {n_missing:,} "
                           f"of these {num_classes:,} classes have no train image "
                           f"({', '.join(shown)}{more})")


def check_num_classes(num_classes: int, what: str) -> None:
    if num_classes < 2:
        raise DatasetError(f"{what} has {num_classes} class(es); a classification dataset "
                           f"needs at least 2")
