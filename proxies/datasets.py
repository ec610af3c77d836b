"""Prepare a registered dataset once as FFCV .beton files in a shared on-disk cache."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import proxies.clutter  # noqa: F401  (registers "clutter")
import proxies.digits  # noqa: F401  (registers "digits")
import proxies.sources  # noqa: F401  (registers "cifar10", "cifar100", "imagefolder", "npz")
from proxies.beton import fingerprint, write_beton
from proxies.errors import DatasetError
from proxies.locking import atomic_write_text, exclusive_lock, fsync_file
from proxies.registry import (
    RawDataset,
    SourceData,
    dataset_kinds,
    get_builder,
    get_source,
    list_datasets,
)
from proxies.sources._common import content_hash
from proxies.sources.image_folder import JPEG_QUALITY, MAX_STORED_SIDE
from proxies.splits import stratified_split

__all__ = ["DatasetInfo", "dataset_kinds", "list_datasets", "prepare_dataset",
           "default_cache_dir"]

logger = logging.getLogger(__name__)

CACHE_ENV = "NAS_CACHE_DIR"  # environment variable overriding the default cache root
SPLITS = ("train", "val", "test")  # the splits every prepared dataset has
MIN_PIXEL_STD = 1.0  # 0..255 units: a channel below it is flat; the loader divides by no less
DEFAULT_DATASET = "clutter"  # the embedded default task
META_VERSION = 2  # bump when the on-disk layout or meta.json schema changes (fields added
#                   with a default when read back, like stored_side, need no bump)
MIN_RESOLUTION, MAX_RESOLUTION = 8, 512  # pixels; allowed image sides


@dataclass(frozen=True)
class DatasetInfo:
    """Where a prepared dataset lives and what it holds."""

    name: str  # registry name, e.g. "digits"
    train_path: str  # absolute path of the train .beton
    val_path: str  # absolute path of the validation .beton (architectures are selected on it)
    test_path: str  # absolute path of the test .beton (reported beside val, never selects)
    num_classes: int  # number of classes; labels lie in 0..num_classes-1
    resolution: int  # image side in pixels the loaders yield by default (square, RGB)
    num_train: int  # examples in the train split
    num_val: int  # examples in the validation split
    num_test: int  # examples in the test split
    mean: tuple[float, float, float]  # per-channel mean, 0..255 units, over the train split
    std: tuple[float, float, float]  # per-channel std, 0..255 units, over the train split
    fingerprint: str  # sha256 (hex, first 16 chars) over the three .beton files' bytes
    stored_side: int | None = None  # side of the raw images in the files; None: variable-size
    #                                 JPEGs (ImageFolder), centre-cropped when loaded
    data_hash: str | None = None  # sha256 (16 hex) of the input at data_path; None: embedded
    data_path: str | None = None  # absolute path of the user's input; None: embedded

    def split(self, split: str) -> tuple[str, int]:
        """(.beton path, number of examples) of `split`; DatasetError for an unknown split."""
        if split not in SPLITS:
            raise DatasetError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        return getattr(self, f"{split}_path"), getattr(self, f"num_{split}")


def default_cache_dir(fallback: str | os.PathLike | None = None) -> Path:
    """$NAS_CACHE_DIR if set, else ``fallback`` if given, else ~/.cache/metaformer-nas."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(fallback) if fallback is not None else Path.home() / ".cache" / "metaformer-nas"


_WRITABLE_CACHE = (f"use a writable place: --runs-dir (the CLI's cache is RUNS_DIR/cache), "
                   f"cache_dir (Python) or {CACHE_ENV}")


def prepare_dataset(name: str = DEFAULT_DATASET, cache_dir: str | os.PathLike | None = None, *,
                    resolution: int = 32, val_fraction: float = 0.2, test_fraction: float = 0.2,
                    seed: int = 0, data_path: str | os.PathLike | None = None) -> DatasetInfo:
    """Build `name` as train/val/test .beton files once, then reuse them.

    Embedded datasets (`dataset_kinds()[name] == "embedded"`, e.g. `clutter`) are rendered at
    `resolution` into `<cache_dir>/<name>_r{resolution}_s{seed}_v{percent}_t{percent}/` and
    take no `data_path`. Path datasets (`cifar10`, `cifar100`, `npz`, `imagefolder`) read the
    user's input at `data_path` (required) and are stored once, whatever `resolution` asks:
    raw arrays at their native side, ImageFolder images as JPEG (longer side at most
    MAX_STORED_SIDE); `resolution` only sets `DatasetInfo.resolution`, the side the loaders
    resize to. Their directory, `<name>_<content hash>_s{seed}_v{percent}_t{percent}`, is
    keyed by a sha256 of the input files, so changed input gets a new cache.

    A builder or input that fixes its own split (``RawDataset.splits``, CIFAR's official test
    set, ImageFolder's train/ and test/) ignores the fractions it does not need; val is drawn
    (stratified, `seed`) from train when the input has none. Safe to call from many processes
    at once: an flock on `.lock` lets one process write, files are written under temporary
    names and renamed into place. On reuse the files' sizes and sha256 are checked against
    `meta.json`; a missing, truncated or altered file is rebuilt (with a logged warning).
    """
    _check_args(name, resolution, val_fraction, test_fraction, seed)
    kind = dataset_kinds().get(name)
    percent = f"s{seed}_v{round(val_fraction * 100)}_t{round(test_fraction * 100)}"
    expected: dict = {"format": META_VERSION, "name": name, "val_fraction": val_fraction,
                      "test_fraction": test_fraction, "seed": seed}
    if kind == "path":
        source = get_source(name)
        if data_path is None:
            raise DatasetError(f"dataset {name!r} is read from your files: pass --data-path "
                               f"(data_path): {source.expects}")
        path = Path(os.path.abspath(Path(data_path).expanduser()))
        digest = content_hash(name, source.files(path))
        expected["data_hash"] = digest
        dir_name = f"{name}_{digest}_{percent}"
    else:
        builder = get_builder(name)  # unknown name: DatasetError listing the known ones
        if data_path is not None:
            raise DatasetError(f"dataset {name!r} is built in and takes no --data-path "
                               f"(data_path); got {os.fspath(data_path)!r}")
        expected["resolution"] = resolution
        dir_name = f"{name}_r{resolution}_{percent}"
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    directory = Path(os.path.abspath(root / dir_name))
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"cannot create cache directory {directory} ({e.strerror}); "
                           f"{_WRITABLE_CACHE}") from None
    view = {"resolution": resolution, "data_path": str(path) if kind == "path" else None}
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(directory / ".lock"))
        except OSError as e:
            raise DatasetError(f"cannot lock {directory / '.lock'} ({e.strerror}); "
                               f"{_WRITABLE_CACHE}") from None
        info, problem = _load_cached(directory, expected, view)
        if info is not None:
            return info
        if problem != "not built yet":
            logger.warning("rebuilding dataset cache %s: %s", directory, problem)
        logger.info("building dataset %r in %s", name, directory)
        try:
            if kind == "path":
                data = source.read(path)
            else:
                raw = builder(resolution)
                _check_raw(raw, name, resolution)
                data = SourceData(raw.images, raw.labels, raw.num_classes, raw.splits)
        except DatasetError:
            if created:  # bad input: leave no empty cache entry behind (a process waiting on
                #          the lock reads the same input and fails the same way)
                _remove_if_only_lock(directory)
            raise
        try:
            return _build(directory, expected, view, data)
        except DatasetError:  # refused before writing (an empty split, flat images)
            if created:
                _remove_if_only_lock(directory)
            raise
        except OSError as e:
            raise DatasetError(f"cannot write dataset files in {directory} ({e}); free space "
                               f"or pass another cache_dir") from None


def _remove_if_only_lock(directory: Path) -> None:
    """Remove a cache directory this call created and wrote nothing to but its `.lock`. A
    process waiting on that lock goes on with the unlinked file and meets the same input."""
    with contextlib.suppress(OSError):
        if [p.name for p in directory.iterdir()] == [".lock"]:
            (directory / ".lock").unlink()
            directory.rmdir()  # fails, harmlessly, if another process wrote into it meanwhile


# ----------------------------------------------------------------------------- arguments

def _check_args(name: object, resolution: object, val_fraction: object, test_fraction: object,
                seed: object) -> None:
    if not isinstance(name, str):
        raise DatasetError(f"dataset name must be a string, one of: {', '.join(list_datasets())}")
    if isinstance(resolution, bool) or not isinstance(resolution, int) \
            or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise DatasetError(f"resolution must be an int in {MIN_RESOLUTION}..{MAX_RESOLUTION}, "
                           f"got {resolution!r}")
    for what, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.01 <= f <= 0.98:
            raise DatasetError(f"{what} must be a number in 0.01..0.98, got {f!r}")
    if val_fraction + test_fraction > 0.99:
        raise DatasetError(f"val_fraction + test_fraction must leave a train split; got "
                           f"{val_fraction} + {test_fraction}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DatasetError(f"seed must be a non-negative int, got {seed!r}")


# ----------------------------------------------------------------------------- reuse

_INFO_KEYS = [k for k in DatasetInfo.__dataclass_fields__
              if k not in ("stored_side", "data_hash", "data_path")]  # always in meta.json


_META_SUM = "meta_sha256"  # meta.json's checksum of its other fields (a hand edit is rebuilt)


def _meta_sum(meta: dict) -> str:
    """sha256 of ``meta``'s fields but its checksum, in a canonical JSON form."""
    body = {k: v for k, v in meta.items() if k != _META_SUM}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _load_cached(directory: Path, expected: dict, view: dict) -> tuple[DatasetInfo | None, str]:
    """(info, "") when the cache is complete and intact, else (None, what is wrong).

    `view` holds the fields that come from the call, not the files (resolution, data_path).
    """
    meta_path = directory / "meta.json"
    if not meta_path.exists():
        return None, "not built yet"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):  # ([] or null: valid JSON, no meta)
            raise ValueError("meta.json is not a JSON object")
        if {k: meta.get(k) for k in expected} != expected:
            return None, "meta.json was written for other settings"
        # the .beton files' fingerprint covers the images, not what meta.json says of them
        # (num_classes, the split sizes, the normalisation): a changed field is rebuilt, not
        # trusted. A meta.json from before the checksum (2026-11-26) is read as it was.
        if _META_SUM in meta and meta[_META_SUM] != _meta_sum(meta):
            return None, "meta.json was changed after it was written (its checksum differs)"
        fields = {k: meta[k] for k in _INFO_KEYS}
        fields.update(mean=tuple(fields["mean"]), std=tuple(fields["std"]),
                      stored_side=meta.get("stored_side", meta["resolution"]),
                      data_hash=meta.get("data_hash"), **view,
                      **{f"{s}_path": str(directory / f"{s}.beton") for s in SPLITS})
        info = DatasetInfo(**fields)
        sizes = [int(meta[f"{s}_bytes"]) for s in SPLITS]
        stats = [float(v) for v in (*info.mean, *info.std)]
        if len(stats) != 6 or not all(math.isfinite(v) and v >= 0 for v in stats):
            raise ValueError(f"mean {list(info.mean)} and std {list(info.std)} must be 3 "
                             "finite numbers >= 0 each")
        counts = {k: getattr(info, k) for k in ("num_classes", "num_train", "num_val", "num_test")}
        if not all(type(v) is int and v >= 1 for v in counts.values()):
            raise ValueError(f"{counts} must be whole numbers >= 1")
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"meta.json is unreadable ({e})"
    paths = [info.split(s)[0] for s in SPLITS]
    for path, size in zip(paths, sizes):
        try:
            actual = os.path.getsize(path)
        except OSError:
            return None, f"{path} is missing"
        if actual != size:
            return None, f"{path} has {actual} bytes, expected {size}"
    actual_fp = fingerprint(paths)
    if actual_fp != info.fingerprint:
        return None, f"fingerprint {actual_fp} != {info.fingerprint} recorded in meta.json"
    return info, ""


# ----------------------------------------------------------------------------- build

def _build(directory: Path, expected: dict, view: dict, data: SourceData) -> DatasetInfo:
    """Split `data`, write the .beton files and meta.json atomically; caller holds the lock."""
    for stale in directory.glob("*.tmp-*"):  # left by a process killed mid-write
        stale.unlink(missing_ok=True)
    idx = dict(zip(SPLITS, _split_indices(data, expected)))
    for split, members in idx.items():
        if len(members) == 0:
            raise DatasetError(f"the {split} split of {expected['name']!r} would be empty "
                               f"({len(data.labels)} examples, val_fraction "
                               f"{expected['val_fraction']}, test_fraction "
                               f"{expected['test_fraction']}); give more examples or larger "
                               f"fractions")
    mean, std = _pixel_stats(data.images, idx["train"])  # checked before anything is written
    if max(std) < MIN_PIXEL_STD:  # all black, say: a corrupt export, nothing to learn from
        raise DatasetError(f"every training image of {expected['name']!r} is the same flat "
                           f"colour (pixel std {max(std):.3g} of 255 in every channel, mean "
                           f"{', '.join(f'{m:.1f}' for m in mean)}): nothing to learn; check the "
                           "input's images")
    raw = isinstance(data.images, np.ndarray)
    jpeg = {} if raw else {"jpeg_max_side": MAX_STORED_SIDE, "jpeg_quality": JPEG_QUALITY}
    final = {split: directory / f"{split}.beton" for split in SPLITS}
    tmp = {split: Path(f"{path}.tmp-{os.getpid()}") for split, path in final.items()}
    try:
        for split in SPLITS:
            write_beton(str(tmp[split]), _take(data.images, idx[split]),
                        data.labels[idx[split]], **jpeg)
            fsync_file(tmp[split])
        fp = fingerprint([tmp[split] for split in SPLITS])
        sizes = {split: tmp[split].stat().st_size for split in tmp}
        for split in final:
            os.replace(tmp[split], final[split])
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
    info = DatasetInfo(
        name=expected["name"], **{f"{s}_path": str(final[s]) for s in SPLITS},
        num_classes=data.num_classes, **{f"num_{s}": len(idx[s]) for s in SPLITS},
        mean=mean, std=std, fingerprint=fp,
        stored_side=int(data.images.shape[1]) if raw else None,
        data_hash=expected.get("data_hash"), **view,
    )
    meta = {**expected, **asdict(info), **{f"{s}_bytes": sizes[s] for s in SPLITS}}
    meta[_META_SUM] = _meta_sum(meta)
    atomic_write_text(directory / "meta.json", json.dumps(meta, indent=2) + "\n")
    return info


def _split_indices(data: SourceData, expected: dict) -> tuple[np.ndarray, ...]:
    """Sorted (train, val, test) indices: the given split, completed by a stratified draw."""
    fractions, seed = (expected["val_fraction"], expected["test_fraction"]), expected["seed"]
    if data.splits is None:
        return stratified_split(data.labels, fractions, seed)
    given = tuple(np.flatnonzero(data.splits == i) for i in range(len(SPLITS)))
    if len(given[1]) or not len(given[0]):
        return given
    pool = given[0]  # no val given: draw it from train
    train, val = stratified_split(data.labels[pool], fractions[0], seed)
    return pool[train], pool[val], given[2]


class _Take(Sequence):
    """images[idx] for a lazy image sequence, without decoding anything."""

    def __init__(self, images: Sequence[np.ndarray], idx: np.ndarray) -> None:
        self.images, self.idx = images, idx

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        return self.images[int(self.idx[i])]


def _take(images: np.ndarray | Sequence[np.ndarray], idx: np.ndarray) -> np.ndarray | _Take:
    return images[idx] if isinstance(images, np.ndarray) else _Take(images, idx)


def _pixel_stats(images: np.ndarray | Sequence[np.ndarray], idx: np.ndarray
                 ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) of images[idx], 0..255 units, each image weighing the same
    (the loader serves each at one side; a single 10,000-pixel scan among small images must
    not set the statistics every trial is normalised with)."""
    if isinstance(images, np.ndarray):
        pixels = images[idx].reshape(-1, 3).astype(np.float64)
        return (tuple(float(m) for m in pixels.mean(axis=0)),
                tuple(float(s) for s in pixels.std(axis=0)))
    total, sq, count = np.zeros(3), np.zeros(3), 0
    for i in idx:  # decodes each train image once more; fine next to writing them
        px = images[int(i)].reshape(-1, 3).astype(np.float64)
        total += px.mean(axis=0)
        sq += (px * px).mean(axis=0)
        count += 1
    mean = total / count
    std = np.sqrt(np.maximum(sq / count - mean * mean, 0.0))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _check_raw(raw: RawDataset, name: str, resolution: int) -> None:
    shape = (len(raw.labels), resolution, resolution, 3)
    if raw.images.shape != shape or raw.images.dtype != np.uint8:
        raise DatasetError(f"builder for {name!r} returned images {raw.images.shape} "
                           f"{raw.images.dtype}; expected {shape} uint8")
    if raw.splits is not None and (raw.splits.shape != raw.labels.shape or any(
            not np.any(raw.splits == i) for i in range(len(SPLITS)))):
        raise DatasetError(f"builder for {name!r} returned splits that do not give every "
                           f"example one of {len(SPLITS)} non-empty splits")
    if len(raw.labels) and not 0 <= raw.labels.min() <= raw.labels.max() < raw.num_classes:
        raise DatasetError(f"builder for {name!r} returned labels outside "
                           f"0..{raw.num_classes - 1}")
