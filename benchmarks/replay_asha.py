"""Replay a finished ``--scheduler asha`` run's rung decisions under another keep rule, offline.

Every trial of an ASHA run reached the first rung, and its curve holds the validation loss it
had at each rung it reached, with times. This script replays the rung decisions in the order the
trials reached the rungs, with the engine's rule (``current``: it must reproduce the run, which
the ``agree`` column checks) and with a stricter one (``crowding``: keep exactly the top
``n // eta`` by non-dominated front, then NSGA-II crowding distance, boundary points first, so
the first front is no longer always kept), ranked as the run was (its ``--asha-metric`` and
MACs). It prints, per rule, the trials that would still
complete, the proxy epochs trained, and the hypervolume of their front (validation accuracy and
full-model MACs, as ``bench_asha.py`` computes it).

With ``--late`` both rules also judge at a rung one epoch before the last (``--asha-late-rung``,
the default since), on a run made without it whose completed trials validated after that epoch
(runs before validation was limited to the rungs did; its ``agree`` column then counts the
trials the added rung changes).

Limits: a stricter rule can only stop trials the run completed, so its hypervolume here can
only fall (a real run would also propose other trials, as the sampler sees other results); it
measures how many epochs a rule saves and how much front it loses on the same proposals. Only
the rungs' own costs objective (MACs) is ranked, as in the default study.

Usage::

    .venv/bin/python benchmarks/replay_asha.py RUN_DIR/nas.db [...] [--study hybrid_conv_attn]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_asha import hypervolume_2d, max_macs  # noqa: E402

from db import Store  # noqa: E402
from nas._scheduler import nondominated_ranks, rung_decision  # noqa: E402
from nas.models import from_dict  # noqa: E402
from nas.results import RUNG_METRICS  # noqa: E402


def crowding_keep(points, index: int, eta: int) -> bool:
    """Keep the top ``max(1, n // eta)`` by (front, crowding distance); all if ``n < eta``."""
    n = len(points)
    if n < eta:
        return True
    ranks = nondominated_ranks(points)
    order: list[int] = []
    for front in sorted(set(ranks)):
        members = [i for i in range(n) if ranks[i] == front]
        dist = dict.fromkeys(members, 0.0)
        for k in range(len(points[0])):
            ordered = sorted(members, key=lambda i: points[i][k])
            lo, hi = points[ordered[0]][k], points[ordered[-1]][k]
            dist[ordered[0]] = dist[ordered[-1]] = math.inf
            if hi > lo:
                for a, b, c in zip(ordered, ordered[1:], ordered[2:]):
                    dist[b] += (points[c][k] - points[a][k]) / (hi - lo)
        order += sorted(members, key=lambda i: -dist[i])
    return index in order[:max(1, n // eta)]


RULES = {"current": lambda points, i, eta: rung_decision(points, i, eta)[0],
         "crowding": crowding_keep}


def load(url: str, study: str) -> tuple[list[dict], dict]:
    store = Store(url, decode_arch=from_dict)
    config = store.get_study(study).config
    metric = config.get("asha_metric", "val_loss")
    sign = 1.0 if RUNG_METRICS[metric] == "max" else -1.0  # every coordinate maximised
    trials = []
    for t in store.trials(study, states=["COMPLETE", "PRUNED"]):
        macs = t.macs if t.macs is not None else t.metrics["pruned_costs"]["macs"]
        # when it reached each point: a point's seconds count from its epoch's start (a
        # mid-epoch check's too); validation time is left out, which keeps the order
        epoch_start, reached = t.started_at.timestamp(), {}
        for point in t.metrics["curve"][0]:  # repeat 0: the one the rungs judge
            epoch = float(point["epoch"])
            if point.get(metric) is not None:  # an epoch no rung read was not validated
                reached[round(epoch, 6)] = (epoch_start + point["seconds"],
                                            sign * point[metric])
            if epoch == int(epoch):
                epoch_start += point["seconds"]
        trials.append({"completed": t.state == "COMPLETE", "macs": macs / 1e9,
                       "accuracy": t.accuracy, "reached": reached})
    return trials, config


def replay(trials: list[dict], rule, rung_epochs: list[float], eta: int, epochs: int) -> dict:
    events = sorted((t["reached"][r][0], r, i) for i, t in enumerate(trials)
                    for r in rung_epochs if r in t["reached"])
    at_rung: dict[float, list] = {r: [] for r in rung_epochs}
    stopped: dict[int, float] = {}
    for _, r, i in events:
        if i in stopped:
            continue
        at_rung[r].append((trials[i]["reached"][r][1], -trials[i]["macs"]))
        if not rule(at_rung[r], len(at_rung[r]) - 1, eta):
            stopped[i] = r
    done = [t for i, t in enumerate(trials) if i not in stopped and t["completed"]]
    trained = sum(stopped.get(i, epochs) for i in range(len(trials)))
    agree = sum((i not in stopped) == t["completed"] for i, t in enumerate(trials))
    return {"done": done, "epochs": trained, "agree": agree}


def main() -> None:
    from nas._scheduler import rungs

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("databases", nargs="+", help="SQLite files of finished ASHA runs")
    p.add_argument("--study", default="hybrid_conv_attn")
    p.add_argument("--late", action="store_true",
                   help="add the rung one epoch before the last to a run made without it")
    p.add_argument("--probe", type=int, default=2000,
                   help="random draws for the reference point's MACs (as bench_asha.py)")
    args = p.parse_args()
    box = None
    print(f"{'run':<44} {'rule':<9} {'completed':>9} {'epochs':>7} {'HV / box':>9} "
          f"{'agree':>6}")
    for path in args.databases:
        trials, config = load(f"sqlite:///{Path(path).resolve()}", args.study)
        if config.get("scheduler") != "asha":
            raise SystemExit(f"{path}: study {args.study!r} was not run with --scheduler asha")
        if box is None:
            box = max_macs(config["space"], args.probe) / 1e9
        epochs, eta = config["epochs"], config["asha_eta"]
        points = [round(float(r), 6) for r in rungs(epochs, config["asha_min_epochs"], eta,
                                                     config.get("asha_late_rung", False)
                                                     or args.late)]
        missing = [t for t in trials if t["completed"] and not set(points) <= set(t["reached"])]
        if missing:
            raise SystemExit(f"{path}: {len(missing)} completed trial(s) have no validation at "
                             f"every rung {points} (--late needs a run whose trials validated "
                             f"after epoch {epochs - 1})")
        for name, rule in RULES.items():
            r = replay(trials, rule, points, eta, epochs)
            hv = hypervolume_2d([(t["accuracy"], t["macs"]) for t in r["done"]], (0.0, box))
            print(f"{path[-44:]:<44} {name:<9} {len(r['done']):>9} {r['epochs']:>7.1f} "
                  f"{hv / box:>9.4f} {r['agree']:>3}/{len(trials)}")


if __name__ == "__main__":
    main()
