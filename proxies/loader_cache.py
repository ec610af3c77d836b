"""Per-process reuse of FFCV loaders, so repeated proxy runs skip FFCV's numba compilation."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

import torch

from proxies.beton import check_beton
from proxies.datasets import DatasetInfo
from proxies.loader import make_loader, split_file

if TYPE_CHECKING:
    from ffcv.loader import Loader

MAX_CACHED_LOADERS = 8  # loaders kept per process, least recently used evicted first

_cache: OrderedDict[tuple, tuple[tuple, Loader]] = OrderedDict()
_lock = threading.Lock()


def shared_loader(info: DatasetInfo, split: str, *, batch_size: int, shuffle: bool,
                  seed: int = 0, device: str | torch.device = "cpu", drop_last: bool = False,
                  num_workers: int = 1, channels_last: bool = False,
                  resolution: int | None = None) -> Loader:
    """make_loader, reusing a loader built earlier in this process with the same arguments.

    A reused loader is rewound to epoch 0, so it yields exactly what a fresh one would. Each
    new FFCV Loader JIT-compiles its pipeline (~0.5 s); a reused one does not. The file is
    re-checked on every call; a replaced or changed file gets a fresh loader. Iterate one
    returned loader at a time: the same object is handed out again.
    """
    args = dict(batch_size=batch_size, shuffle=shuffle, seed=seed, device=torch.device(device),
                drop_last=drop_last, num_workers=num_workers, channels_last=channels_last,
                resolution=resolution)
    key = (info, split, *sorted(args.items()))
    path, num_samples = split_file(info, split)
    with _lock:
        check_beton(path, num_samples)
        identity = _file_identity(path)
        hit = _cache.pop(key, None)
        if hit is not None and hit[0] == identity:
            loader = hit[1]
        else:
            loader = make_loader(info, split, **args)
        _cache[key] = (identity, loader)
        while len(_cache) > MAX_CACHED_LOADERS:
            _cache.popitem(last=False)
        loader.next_epoch = 0  # the epoch FFCV adds to the order seed; 0 as in a new loader
        return loader


def clear_loader_cache() -> None:
    """Drop every cached loader."""
    with _lock:
        _cache.clear()


def _file_identity(path: str) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns
