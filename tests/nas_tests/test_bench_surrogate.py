"""benchmarks/bench_surrogate.py: one row per architecture (repeats averaged), real trials of a
real database, and tau counted only in MACs bins with enough architectures."""

from __future__ import annotations

import random

import numpy as np
import pytest

from nas.models import arch_hash, to_dict

from ._results import result, study_setup
from ._scripts import benchmark_module


@pytest.fixture(scope="module")
def bench():
    yield from benchmark_module("bench_surrogate")


def test_load_keeps_one_row_per_architecture_with_its_mean_accuracy(bench, tmp_path):
    space, store, study, _ = study_setup(tmp_path)
    rng = random.Random(0)
    archs = []
    while len(archs) < 3:
        a = space.sample_random(rng)[0]
        if arch_hash(a) not in {arch_hash(b) for b in archs}:
            archs.append(a)
    for i, (a, acc) in enumerate([(archs[0], 0.5), (archs[0], 0.7), (archs[1], 0.6),
                                  (archs[2], 0.4)]):
        rec = store.start_trial(study.id, key=f"k{i}", arch_hash=arch_hash(a), arch=to_dict(a),
                                params={})
        r = result(accuracy=acc)
        store.finish_trial(rec.id, state="COMPLETE", metrics=r.metrics(), **r.columns())
    X, y, macs = bench.load([str(tmp_path / "nas.db")], "s")
    assert X.shape[0] == 3 and sorted(np.round(y, 6)) == [0.4, 0.6, 0.6]  # 0.5 and 0.7: 0.6
    assert (macs > 0).all() and X.shape[1] > 5


def test_within_bins_skips_bins_with_too_few_architectures(bench):
    macs = np.array([0.2e9] * 12 + [0.7e9] * 3)  # 12 in the first bin, 3 in the second
    y = np.arange(15, dtype=float)
    assert bench.within_bins(y, y, macs) == [pytest.approx(1.0)]
    assert bench.within_bins(-y, y, macs) == [pytest.approx(-1.0)]
