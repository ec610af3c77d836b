"""Writing, structurally checking and fingerprinting FFCV .beton files."""

from __future__ import annotations

import contextlib
import hashlib
import io
import multiprocessing
import os
from collections.abc import Sequence

import numpy as np

from proxies.errors import DatasetError
from proxies.ffcv_import import import_ffcv

PAGE_SIZE = 1 << 21  # bytes; FFCV's smallest page (2 MiB) keeps small datasets small on disk
IMAGE_FIELD = "image"  # name of the RGB uint8 image field
LABEL_FIELD = "label"  # name of the integer class-id field


class _ArrayDataset:
    """Indexable (image HWC uint8, label int) pairs, as DatasetWriter expects."""

    def __init__(self, images: Sequence[np.ndarray], labels: np.ndarray) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.images[i], int(self.labels[i])


def write_beton(path: str, images: np.ndarray | Sequence[np.ndarray], labels: np.ndarray, *,
                jpeg_max_side: int | None = None, jpeg_quality: int = 90) -> None:
    """Write images and labels (N,) to `path` with one writer process.

    `images` is an (N, R, R, 3) uint8 array stored raw, or with `jpeg_max_side` any sequence
    of HWC uint8 images (e.g. decoded lazily from files), stored as JPEG after shrinking their
    longer side to at most `jpeg_max_side`.
    """
    import_ffcv()
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    if jpeg_max_side is None and (not isinstance(images, np.ndarray) or images.dtype != np.uint8
                                  or images.ndim != 4 or images.shape[-1] != 3):
        raise ValueError(f"images must be (N, H, W, 3) uint8, got "
                         f"{getattr(images, 'shape', type(images))}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    image_field = (RGBImageField(write_mode="raw") if jpeg_max_side is None else
                   RGBImageField(write_mode="jpg", max_resolution=jpeg_max_side,
                                 jpeg_quality=jpeg_quality))
    fields = {IMAGE_FIELD: image_field, LABEL_FIELD: IntField()}
    writer = DatasetWriter(path, fields, page_size=PAGE_SIZE, num_workers=1)
    children = set(multiprocessing.active_children())
    with _fork_start_method(), contextlib.redirect_stderr(io.StringIO()):  # no tqdm bar
        try:
            writer.from_indexed_dataset(_ArrayDataset(images, labels))
        except BaseException:  # (a Ctrl-C): what the writer frees only when it finishes
            _abandon(writer, children)
            raise


def _abandon(writer, children: set) -> None:
    """End the worker processes a DatasetWriter started (not in ``children``) and unlink its
    shared memory: left to Python's resource_tracker, the memory was reported as "leaked
    shared_memory objects" after a Ctrl-C's one line."""
    from multiprocessing import shared_memory

    for child in set(multiprocessing.active_children()) - children:
        child.terminate()
        child.join(timeout=5)
    memory = getattr(writer, "metadata_sm", None)
    if isinstance(memory, shared_memory.SharedMemory):
        with contextlib.suppress(OSError):
            memory.close()
        with contextlib.suppress(OSError):
            memory.unlink()


@contextlib.contextmanager
def _fork_start_method():
    """Have DatasetWriter fork its worker even where the default start method is spawn.

    The writer starts its worker with the process-wide default method; under spawn that worker
    re-imports torch and ffcv and receives the whole dataset by pickle (~12 s instead of ~1 s).
    """
    current = multiprocessing.get_start_method()
    if current == "fork" or "fork" not in multiprocessing.get_all_start_methods():
        yield
        return
    multiprocessing.set_start_method("fork", force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(current, force=True)


def fingerprint(paths: Sequence[str | os.PathLike]) -> str:
    """sha256 over the bytes of `paths` in order, as the first 16 hex characters."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def check_beton(path: str | os.PathLike, num_samples: int) -> None:
    """Raise DatasetError unless `path` is a complete .beton holding `num_samples` samples.

    Checks the header and that every data region lies inside the file, so that FFCV's
    memory-mapped reader can never read past the end of a truncated file.
    """
    import_ffcv()
    from ffcv.types import ALLOC_TABLE_TYPE, CURRENT_VERSION, HeaderType

    path = os.fspath(path)
    hint = f"delete {os.path.dirname(path)} (or call prepare_dataset again) to rebuild it"
    try:
        size = os.path.getsize(path)
    except OSError:
        raise DatasetError(f"dataset file {path} is missing; {hint}") from None
    try:
        if size < HeaderType.itemsize:
            raise ValueError("shorter than the header")
        header = np.fromfile(path, dtype=HeaderType, count=1)[0]
        if int(header["version"]) != CURRENT_VERSION:
            raise ValueError(f"format version {int(header['version'])} != {CURRENT_VERSION}")
        if int(header["num_samples"]) != num_samples:
            raise ValueError(f"{int(header['num_samples'])} samples, expected {num_samples}")
        table_ptr = int(header["alloc_table_ptr"])
        table_bytes = size - table_ptr
        if table_ptr <= HeaderType.itemsize or table_bytes % ALLOC_TABLE_TYPE.itemsize:
            raise ValueError("allocation table out of place")
        table = np.fromfile(path, dtype=ALLOC_TABLE_TYPE, offset=table_ptr)
        if len(table) != num_samples:  # one image region per sample
            raise ValueError(f"{len(table)} data regions, expected {num_samples}")
        if int((table["ptr"] + table["size"]).max(initial=0)) > table_ptr:
            raise ValueError("data regions run past the allocation table")
    except (ValueError, IndexError, OSError) as e:
        raise DatasetError(f"dataset file {path} is corrupt ({e}); {hint}") from None
