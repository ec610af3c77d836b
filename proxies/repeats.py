"""Repeated proxy runs of one architecture: independent seeds and what their spread says."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from proxies.train import TrainResult, binomial_se

__all__ = ["RepeatSummary", "run_seed", "summarize"]


def run_seed(seed: int, repeat: int) -> int:
    """The training seed of repeat `repeat` (0-based) of a run seeded `seed`.

    Repeat 0 is `seed` itself; later repeats get seeds hashed from (seed, repeat), so they
    collide neither with each other nor, in practice, with other runs' seeds.
    """
    if repeat == 0:
        return seed
    return int(np.random.SeedSequence([seed, repeat]).generate_state(1)[0])


@dataclass(frozen=True)
class RepeatSummary:
    """Accuracy of one architecture over K >= 1 independent proxy runs."""

    accuracy: float  # mean validation top-1 over the runs (the search objective)
    accuracy_se: float  # standard error of `accuracy`: sqrt(binomial SE^2 + seed std^2 / K)
    accuracy_std: float | None  # sample std of the validation accuracy over runs (K >= 2)
    binomial_se: float  # sqrt(p (1 - p) / num_val) at the mean accuracy: the val-set noise
    test_accuracy: float | None  # mean test top-1 (reported beside val; never selects)
    test_accuracy_se: float | None  # as accuracy_se, for the test split
    val_loss: float  # mean validation cross-entropy over the runs, nats
    repeats: int  # K
    accuracies: tuple[float, ...]  # per-run validation accuracy
    test_accuracies: tuple[float, ...]  # per-run test accuracy (empty if not measured)


def summarize(results: Sequence[TrainResult]) -> RepeatSummary:
    """Mean and uncertainty of K finished (not diverged) runs of the same architecture."""
    if not results:
        raise ValueError("summarize needs at least one TrainResult")
    k = len(results)
    accs = tuple(r.accuracy for r in results)
    tests = tuple(r.test_accuracy for r in results if r.test_accuracy is not None)
    acc, se, std, binom = _mean_se(accs, results[0].num_val)
    test_acc = test_se = None
    if len(tests) == k:
        test_acc, test_se, _, _ = _mean_se(tests, results[0].num_test)
    return RepeatSummary(
        accuracy=acc, accuracy_se=se, accuracy_std=std, binomial_se=binom,
        test_accuracy=test_acc, test_accuracy_se=test_se,
        val_loss=statistics.fmean(r.val_loss for r in results), repeats=k,
        accuracies=accs, test_accuracies=tests if len(tests) == k else (),
    )


def _mean_se(values: Sequence[float], n: int) -> tuple[float, float, float | None, float]:
    mean = statistics.fmean(values)
    binom = binomial_se(mean, n)
    std = statistics.stdev(values) if len(values) >= 2 else None
    seed_var = std * std / len(values) if std is not None else 0.0
    return mean, math.sqrt(binom * binom + seed_var), std, binom
