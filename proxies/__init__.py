"""Proxy datasets (FFCV .beton), loaders, a small proxy trainer and zero-cost proxies."""

from __future__ import annotations

from proxies.datasets import (
    DEFAULT_DATASET,
    SPLITS,
    DatasetInfo,
    dataset_kinds,
    default_cache_dir,
    list_datasets,
    prepare_dataset,
)
from proxies.errors import DatasetError, ZeroCostError
from proxies.loader import data_seed, make_loader
from proxies.loader_cache import clear_loader_cache, shared_loader
from proxies.registry import RawDataset, SourceData, register_dataset, register_source
from proxies.repeats import RepeatSummary, run_seed, summarize
from proxies.train import (
    EpochStats,
    TrainConfig,
    TrainResult,
    binomial_se,
    evaluate,
    lr_factor,
    train_proxy,
)
from proxies.zero_cost import (
    ZeroCostFn,
    list_zero_cost,
    register_zero_cost,
    zero_cost_score,
    zero_cost_scores,
)

__all__ = [
    "DEFAULT_DATASET",
    "SPLITS",
    "DatasetError",
    "DatasetInfo",
    "EpochStats",
    "RawDataset",
    "RepeatSummary",
    "SourceData",
    "TrainConfig",
    "TrainResult",
    "ZeroCostError",
    "ZeroCostFn",
    "binomial_se",
    "clear_loader_cache",
    "data_seed",
    "dataset_kinds",
    "default_cache_dir",
    "evaluate",
    "list_datasets",
    "list_zero_cost",
    "lr_factor",
    "make_loader",
    "prepare_dataset",
    "register_dataset",
    "register_source",
    "register_zero_cost",
    "run_seed",
    "shared_loader",
    "summarize",
    "train_proxy",
    "zero_cost_score",
    "zero_cost_scores",
]
