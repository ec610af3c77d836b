"""Proxy datasets (FFCV .beton), loaders, a small proxy trainer and zero-cost proxies."""

from __future__ import annotations

from typing import TYPE_CHECKING

# Names resolve on first use (PEP 562), so that ``import proxies.errors`` (and the engine's
# one-line errors for bad input) does not pay for torch, FFCV and numba.
_LAZY = {
    "DEFAULT_DATASET": "proxies.datasets",
    "SPLITS": "proxies.datasets",
    "DatasetInfo": "proxies.datasets",
    "dataset_kinds": "proxies.datasets",
    "default_cache_dir": "proxies.datasets",
    "list_datasets": "proxies.datasets",
    "prepare_dataset": "proxies.datasets",
    "DatasetError": "proxies.errors",
    "ZeroCostError": "proxies.errors",
    "data_seed": "proxies.loader",
    "make_loader": "proxies.loader",
    "clear_loader_cache": "proxies.loader_cache",
    "shared_loader": "proxies.loader_cache",
    "RawDataset": "proxies.registry",
    "SourceData": "proxies.registry",
    "register_dataset": "proxies.registry",
    "register_source": "proxies.registry",
    "RepeatSummary": "proxies.repeats",
    "run_seed": "proxies.repeats",
    "summarize": "proxies.repeats",
    "EpochStats": "proxies.train",
    "TrainConfig": "proxies.train",
    "TrainResult": "proxies.train",
    "binomial_se": "proxies.train",
    "evaluate": "proxies.train",
    "lr_factor": "proxies.train",
    "train_proxy": "proxies.train",
    "ZeroCostFn": "proxies.zero_cost",
    "list_zero_cost": "proxies.zero_cost",
    "register_zero_cost": "proxies.zero_cost",
    "zero_cost_score": "proxies.zero_cost",
    "zero_cost_scores": "proxies.zero_cost",
}

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
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


def __getattr__(name: str):
    import importlib

    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'proxies' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
