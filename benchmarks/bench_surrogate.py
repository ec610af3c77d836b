"""How well the learned pre-screen's model ranks architectures it has not seen.

Reads the completed trials of one or more finished studies (their databases), keeps one row per
architecture (the mean accuracy over its trials), and for each training-set size N fits the
pre-screen's own ridge model (``nas._surrogate``: the same features and leave-one-out strength)
on N random architectures, then ranks the rest. Prints Kendall tau of the predicted against the
measured accuracy over all held-out architectures and within MACs bins (where MACs alone cannot
rank well), beside tau of MACs alone (over all, and within the same bins), as mean ± SE over
``--splits`` random splits (the within-bin SE pools bins and splits, which are correlated: read
it as a lower bound).

    .venv/bin/python benchmarks/bench_surrogate.py RUN1/nas.db RUN2/nas.db --n 20 40 80
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from scipy.stats import kendalltau

from db import Store
from nas._scheduler import known_costs
from nas._surrogate import _Ridge, features
from nas.models import from_dict, to_dict

BINS = (0.0, 0.5e9, 1.0e9, 1.5e9, 2.0e9, 3.0e9, 8.0e9)  # MACs bins for the within-bin tau
MIN_PER_BIN = 10  # held-out architectures a bin needs to count


def load(paths: list[str], study: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, mean accuracy, MACs) of each architecture completed in any of ``paths``."""
    rows: dict[str, tuple[dict, list[float]]] = {}
    for p in paths:
        url = p if "://" in p else f"sqlite:///{p}"
        for t in Store(url, decode_arch=from_dict).trials(study, states=["COMPLETE"]):
            if t.accuracy is not None:
                d = t.arch if isinstance(t.arch, dict) else to_dict(t.arch)
                rows.setdefault(t.arch_hash, (d, []))[1].append(t.accuracy)
    feats = [features(d, known_costs(d)) for d, _ in rows.values()]
    names = sorted({k for f in feats for k in f})
    X = np.array([[f.get(k, 0.0) for k in names] for f in feats])
    y = np.array([statistics.mean(a) for _, a in rows.values()])
    macs = np.array([known_costs(d)["macs"] for d, _ in rows.values()])
    return X, y, macs


def within_bins(pred: np.ndarray, y: np.ndarray, macs: np.ndarray) -> list[float]:
    out = []
    for lo, hi in zip(BINS, BINS[1:]):
        s = (macs >= lo) & (macs < hi)
        if s.sum() >= MIN_PER_BIN:
            out.append(kendalltau(pred[s], y[s])[0])
    return out


def mean_se(xs: list[float]) -> str:
    if not xs:
        return "-"
    se = statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else float("nan")
    return f"{statistics.mean(xs):.2f} ± {se:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dbs", nargs="+", help="SQLite files (or SQLAlchemy URLs) of finished runs")
    ap.add_argument("--study", default="hybrid_conv_attn")
    ap.add_argument("--n", type=int, nargs="+", default=[20, 40, 80, 160])
    ap.add_argument("--splits", type=int, default=20)
    args = ap.parse_args()
    X, y, macs = load(args.dbs, args.study)
    print(f"{len(y)} architectures from {len(args.dbs)} database(s); accuracy "
          f"{y.min():.3f}–{y.max():.3f}; {args.splits} random splits per N")
    print(f"{'N':>5} {'tau, model':>12} {'tau, MACs':>11} {'within MACs bins: model':>24} "
          f"{'MACs':>11}")
    for n in args.n:
        if n >= len(y) - MIN_PER_BIN:
            print(f"{n:>5} (skipped: too few architectures left to test on)")
            continue
        model, by_macs, inside, inside_macs = [], [], [], []
        for split in range(args.splits):
            idx = np.random.default_rng(split).permutation(len(y))
            tr, te = idx[:n], idx[n:]
            pred, _ = _Ridge(X[tr], y[tr]).predict(X[te])
            model.append(kendalltau(pred, y[te])[0])
            by_macs.append(kendalltau(macs[te], y[te])[0])
            inside.extend(within_bins(pred, y[te], macs[te]))
            inside_macs.extend(within_bins(macs[te], y[te], macs[te]))
        print(f"{n:>5} {mean_se(model):>12} {mean_se(by_macs):>11} {mean_se(inside):>24} "
              f"{mean_se(inside_macs):>11}")


if __name__ == "__main__":
    main()
