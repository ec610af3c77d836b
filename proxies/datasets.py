"""Prepare a registered dataset once as FFCV .beton files in a shared on-disk cache."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import proxies.clutter  # noqa: F401  (registers "clutter")
import proxies.digits  # noqa: F401  (registers "digits")
from proxies.beton import fingerprint, write_beton
from proxies.errors import DatasetError
from proxies.locking import atomic_write_text, exclusive_lock, fsync_file
from proxies.registry import RawDataset, get_builder, list_datasets
from proxies.splits import stratified_split

__all__ = ["DatasetInfo", "list_datasets", "prepare_dataset", "default_cache_dir"]

logger = logging.getLogger(__name__)

CACHE_ENV = "NAS_CACHE_DIR"  # environment variable overriding the default cache root
SPLITS = ("train", "val", "test")  # the splits every prepared dataset has
DEFAULT_DATASET = "clutter"  # the embedded default task
META_VERSION = 2  # bump when the on-disk layout or meta.json schema changes
MIN_RESOLUTION, MAX_RESOLUTION = 8, 512  # pixels; allowed stored image sides


@dataclass(frozen=True)
class DatasetInfo:
    """Where a prepared dataset lives and what it holds."""

    name: str  # registry name, e.g. "digits"
    train_path: str  # absolute path of the train .beton
    val_path: str  # absolute path of the validation .beton (architectures are selected on it)
    test_path: str  # absolute path of the test .beton (reported beside val, never selects)
    num_classes: int  # number of classes; labels lie in 0..num_classes-1
    resolution: int  # stored image side in pixels (square, RGB uint8)
    num_train: int  # examples in the train split
    num_val: int  # examples in the validation split
    num_test: int  # examples in the test split
    mean: tuple[float, float, float]  # per-channel mean, 0..255 units, over the train split
    std: tuple[float, float, float]  # per-channel std, 0..255 units, over the train split
    fingerprint: str  # sha256 (hex, first 16 chars) over the three .beton files' bytes

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


def prepare_dataset(name: str = DEFAULT_DATASET, cache_dir: str | os.PathLike | None = None, *,
                    resolution: int = 32, val_fraction: float = 0.2, test_fraction: float = 0.2,
                    seed: int = 0) -> DatasetInfo:
    """Build `name` as train/val/test .beton files once, then reuse them.

    A builder that fixes its own split (``RawDataset.splits``, e.g. `clutter`, whose splits come
    from disjoint source digits) ignores the fractions and seed; otherwise each class is split
    `val_fraction` / `test_fraction` / rest with `seed`. Files live in
    `<cache_dir>/<name>_r{resolution}_s{seed}_v{percent}_t{percent}/`. Safe to call from many
    processes at once: an flock on `.lock` there lets one process write, files are written
    under temporary names and renamed into place. On reuse the files' sizes and sha256 are
    checked against `meta.json`; a missing, truncated or altered file is rebuilt automatically
    (with a logged warning) rather than raising.
    """
    _check_args(name, resolution, val_fraction, test_fraction, seed)
    builder = get_builder(name)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    directory = Path(os.path.abspath(
        root / _dir_name(name, resolution, val_fraction, test_fraction, seed)))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"cannot create cache directory {directory} ({e.strerror}); "
                           f"pass a writable cache_dir or set {CACHE_ENV}") from None
    expected = {"format": META_VERSION, "name": name, "resolution": resolution,
                "val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed}
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(directory / ".lock"))
        except OSError as e:
            raise DatasetError(f"cannot lock {directory / '.lock'} ({e.strerror}); pass a "
                               f"writable cache_dir or set {CACHE_ENV}") from None
        info, problem = _load_cached(directory, expected)
        if info is not None:
            return info
        if problem != "not built yet":
            logger.warning("rebuilding dataset cache %s: %s", directory, problem)
        logger.info("building dataset %r in %s", name, directory)
        raw = builder(resolution)
        try:
            return _build(directory, expected, raw)
        except OSError as e:
            raise DatasetError(f"cannot write dataset files in {directory} ({e}); free space "
                               f"or pass another cache_dir") from None


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


def _dir_name(name: str, resolution: int, val_fraction: float, test_fraction: float,
              seed: int) -> str:
    return (f"{name}_r{resolution}_s{seed}_v{round(val_fraction * 100)}"
            f"_t{round(test_fraction * 100)}")


# ----------------------------------------------------------------------------- reuse

def _load_cached(directory: Path, expected: dict) -> tuple[DatasetInfo | None, str]:
    """(info, "") when the cache is complete and intact, else (None, what is wrong)."""
    meta_path = directory / "meta.json"
    if not meta_path.exists():
        return None, "not built yet"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if {k: meta.get(k) for k in expected} != expected:
            return None, "meta.json was written for other settings"
        fields = {k: meta[k] for k in DatasetInfo.__dataclass_fields__}
        fields.update(mean=tuple(fields["mean"]), std=tuple(fields["std"]),
                      **{f"{s}_path": str(directory / f"{s}.beton") for s in SPLITS})
        info = DatasetInfo(**fields)
        sizes = [int(meta[f"{s}_bytes"]) for s in SPLITS]
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

def _build(directory: Path, expected: dict, raw: RawDataset) -> DatasetInfo:
    """Split `raw`, write both .beton files and meta.json atomically; caller holds the lock."""
    for stale in directory.glob("*.tmp-*"):  # left by a process killed mid-write
        stale.unlink(missing_ok=True)
    _check_raw(raw, expected["name"], expected["resolution"])
    if raw.splits is not None:
        indices = tuple(np.flatnonzero(raw.splits == i) for i in range(len(SPLITS)))
    else:
        indices = stratified_split(raw.labels, (expected["val_fraction"],
                                                expected["test_fraction"]), expected["seed"])
    idx = dict(zip(SPLITS, indices))
    final = {split: directory / f"{split}.beton" for split in SPLITS}
    tmp = {split: Path(f"{path}.tmp-{os.getpid()}") for split, path in final.items()}
    try:
        for split in SPLITS:
            write_beton(str(tmp[split]), raw.images[idx[split]], raw.labels[idx[split]])
            fsync_file(tmp[split])
        fp = fingerprint([tmp[split] for split in SPLITS])
        sizes = {split: tmp[split].stat().st_size for split in tmp}
        for split in final:
            os.replace(tmp[split], final[split])
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
    pixels = raw.images[idx["train"]].reshape(-1, 3).astype(np.float64)
    info = DatasetInfo(
        name=expected["name"], **{f"{s}_path": str(final[s]) for s in SPLITS},
        num_classes=raw.num_classes, resolution=expected["resolution"],
        **{f"num_{s}": len(idx[s]) for s in SPLITS},
        mean=tuple(float(m) for m in pixels.mean(axis=0)),
        std=tuple(float(s) for s in pixels.std(axis=0)),
        fingerprint=fp,
    )
    meta = {**expected, **asdict(info), **{f"{s}_bytes": sizes[s] for s in SPLITS}}
    atomic_write_text(directory / "meta.json", json.dumps(meta, indent=2) + "\n")
    return info


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
