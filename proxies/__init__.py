"""Proxy datasets (FFCV .beton), loaders and a small proxy trainer for ranking architectures."""

from __future__ import annotations

from proxies.datasets import DatasetInfo, default_cache_dir, list_datasets, prepare_dataset
from proxies.errors import DatasetError
from proxies.loader import make_loader
from proxies.loader_cache import clear_loader_cache, shared_loader
from proxies.registry import RawDataset, register_dataset
from proxies.train import TrainConfig, TrainResult, evaluate, lr_factor, train_proxy

__all__ = [
    "DatasetError",
    "DatasetInfo",
    "RawDataset",
    "TrainConfig",
    "TrainResult",
    "clear_loader_cache",
    "default_cache_dir",
    "evaluate",
    "list_datasets",
    "lr_factor",
    "make_loader",
    "prepare_dataset",
    "register_dataset",
    "shared_loader",
    "train_proxy",
]
