"""How early can a rung judge? Rank signal of the validation loss and accuracy during a proxy run.

Multi-fidelity early stopping (``--scheduler asha``) ranks trials on what they reached at a rung.
This trains the default proxy (3 epochs, seed 2: as ``bench_fidelity.py``'s proxy run) of the
same N random configurations of a space, validating mid-epoch at ``--points`` (fractions of an
epoch, ``TrainConfig.eval_at``) and after every epoch, and reports for each point the Kendall τ
(bootstrap 95% interval) of the validation accuracy, of the negated validation loss and of the
negated training loss (mean over the epoch's steps so far: free, no validation pass) against

- the proxy's own final accuracy (what a rung tries to predict: the trial's recorded result),
- the reference accuracy of ``bench_fidelity.py`` (15 epochs, mean of seeds 0 and 1), read from
  its runs file when present (``--reference``).

The final accuracies must equal those of ``bench_fidelity.py``'s proxy runs (same seed, same
training: validating mid-epoch changes nothing); the script says so or warns.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_rungs.py -n 30                  # clutter, hybrid_conv_attn
    .venv/bin/python benchmarks/bench_rungs.py -n 6 --dataset digits   # quick look
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fidelity import PROXY_SEED, REF_SEEDS, _rank_stats  # noqa: E402

EPOCHS = 3  # the search's default proxy


def _run(job: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    from nas.models.arch import from_dict
    from nas.models.model import build_model
    from proxies import TrainConfig, prepare_dataset, train_proxy

    info = prepare_dataset(job["dataset"], job["cache"], resolution=job["resolution"])
    torch.manual_seed(job["seed"])
    model = build_model(from_dict(job["proxy_arch"]))
    t0 = time.perf_counter()
    res = train_proxy(model, info, TrainConfig(epochs=EPOCHS, seed=job["seed"], threads=1,
                                               eval_every_epoch=True, evaluate_test=False,
                                               eval_at=tuple(job["points"])))
    points = {f"{e.epoch:g}": [e.val_accuracy, e.val_loss, e.train_loss]
              for e in sorted((*res.checks, *res.curve), key=lambda e: e.epoch)}
    return {"i": job["i"], "accuracy": res.accuracy, "points": points,
            "seconds": time.perf_counter() - t0, "eval_seconds": res.eval_seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="hybrid_conv_attn")
    p.add_argument("--dataset", default="clutter")
    p.add_argument("-n", type=int, default=30, help="random configurations (as bench_fidelity)")
    p.add_argument("--points", nargs="+", default=["1/6", "1/3", "2/3"],
                   help="mid-epoch points, in epochs (default 1/6 1/3 2/3; whole epochs are "
                        "always validated)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--reference", default=None,
                   help="bench_fidelity runs file (default: benchmarks/results/"
                        "fidelity_<dataset>_runs.jsonl)")
    p.add_argument("--out", default="benchmarks/results",
                   help="folder for rungs_<dataset>.json (default %(default)s)")
    args = p.parse_args(argv)

    from nas.models.arch import to_dict
    from proxies import default_cache_dir, prepare_dataset
    from search_spaces import load_space

    points = [float(Fraction(x)) for x in args.points]
    space = load_space(args.space)
    cache = str(Path(os.environ.get("NAS_CACHE_DIR") or default_cache_dir()))
    info = prepare_dataset(args.dataset, cache, resolution=space.proxy_spec.resolution)
    jobs = []
    for i in range(args.n):
        arch, _ = space.sample_random(i)  # the configurations bench_fidelity draws
        jobs.append({"i": i, "dataset": args.dataset, "cache": cache,
                     "resolution": info.resolution, "seed": PROXY_SEED, "points": points,
                     "proxy_arch": to_dict(space.proxy(arch, info.num_classes))})
    print(f"{args.n} proxy runs ({EPOCHS} epochs, seed {PROXY_SEED}) validating at epochs "
          f"{', '.join(args.points)} and 1..{EPOCHS}, on {args.workers} worker(s)", flush=True)
    t0, rows = time.perf_counter(), []
    ctx = multiprocessing.get_context("spawn")  # no forked torch or FFCV state
    with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
        for k, fut in enumerate(as_completed([pool.submit(_run, j) for j in jobs]), 1):
            r = fut.result()
            rows.append(r)
            print(f"[{k:>3}/{len(jobs)}] config {r['i']:>2}  acc {r['accuracy']:.4f}  "
                  f"{r['seconds']:5.1f} s ({r['eval_seconds']:4.1f} s validating)", flush=True)
    rows.sort(key=lambda r: r["i"])
    final = np.array([r["accuracy"] for r in rows])

    ref_path = Path(args.reference or f"benchmarks/results/fidelity_{args.dataset}_runs.jsonl")
    ref, proxy = {}, {}
    if ref_path.exists():
        for line in ref_path.read_text().splitlines():
            run = json.loads(line)
            if run["kind"] in {f"ref{s}" for s in REF_SEEDS}:
                ref.setdefault(run["i"], []).append(run["accuracy"])
            elif run["kind"] == "proxy":
                proxy[run["i"]] = run["accuracy"]
    have_ref = all(len(ref.get(r["i"], [])) == len(REF_SEEDS) for r in rows)
    reference = np.array([np.mean(ref[r["i"]]) for r in rows]) if have_ref else None
    if all(r["i"] in proxy for r in rows):
        diff = max(abs(proxy[r["i"]] - r["accuracy"]) for r in rows)
        print(f"final accuracies {'equal' if diff == 0 else f'differ by up to {diff:.4f} from'}"
              f" bench_fidelity's proxy runs ({ref_path})")

    table = []
    print(f"\n{'epoch':>6} {'val acc range':>15}  Kendall τ (95% CI) against the proxy's final "
          f"accuracy{' | against the reference' if have_ref else ''}")
    for key in rows[0]["points"]:
        acc = np.array([r["points"][key][0] for r in rows])
        loss = -np.array([r["points"][key][1] for r in rows])
        train = -np.array([r["points"][key][2] for r in rows])
        entry = {"epoch": float(key), "acc_range": [float(acc.min()), float(acc.max())]}
        cells = []
        for name, pred in (("acc", acc), ("loss", loss), ("train", train)):
            entry[f"{name}_vs_final"] = _rank_stats(pred, final)
            s = entry[f"{name}_vs_final"]
            cell = f"{name} {s['tau']:5.2f} ({s['tau_lo']:5.2f} … {s['tau_hi']:5.2f})"
            if have_ref:
                entry[f"{name}_vs_reference"] = _rank_stats(pred, reference)
                s = entry[f"{name}_vs_reference"]
                cell += f" | {s['tau']:5.2f} ({s['tau_lo']:5.2f} … {s['tau_hi']:5.2f})"
            cells.append(cell)
        table.append(entry)
        print(f"{key:>6} {acc.min():7.3f}–{acc.max():.3f}  " + "   ".join(cells))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"rungs_{args.dataset}.json"
    path.write_text(json.dumps({"space": args.space, "dataset": args.dataset, "n": args.n,
                                "epochs": EPOCHS, "seed": PROXY_SEED, "table": table,
                                "runs": rows}, indent=1))
    print(f"\n(command: benchmarks/bench_rungs.py {' '.join(argv or sys.argv[1:])}; wall "
          f"{time.perf_counter() - t0:.0f} s; written {path})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
