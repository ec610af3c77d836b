#!/usr/bin/env python
"""Proxy fidelity: does the short proxy rank architectures the way longer training does?

For N random configurations of a space, trains each proxy model
  - as a trial does (``--epochs`` E, seed 2),                      "proxy"
  - 5x longer (5E epochs) with two independent seeds 0 and 1,      "reference" (ref0, ref1)
and prints Kendall tau, Spearman rho and top-25% overlap between the reference (ref0) and
  (a) the default proxy (its validation accuracy, and its validation loss),
  (b) #params and MACs of the full model, and every registered zero-cost proxy (one batch, at
      initialisation, on the proxy model),
  (c) the reference itself under the other seed (how well a ranking can be reproduced at all),
plus the noise figures: between-architecture std of the reference accuracy, seed-to-seed std,
and the binomial standard error of one accuracy. All seeds are independent (weight init and
every epoch's data order). Runs are appended to a JSONL file and skipped when present, so an
interrupted benchmark resumes where it stopped.

Usage:
    .venv/bin/python benchmarks/bench_fidelity.py                       # clutter, 30 configs
    .venv/bin/python benchmarks/bench_fidelity.py --dataset digits
    .venv/bin/python benchmarks/bench_fidelity.py -n 8 --epochs 1 --workers 2 --out /tmp/fid
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REF_FACTOR = 5  # the reference trains this many times longer than the proxy
PROXY_SEED, REF_SEEDS = 2, (0, 1)  # independent seeds (proxies.data_seed hashes them)


# --------------------------------------------------------------------------- one training run


def _run(job: dict) -> dict:
    """Train one proxy model (in a worker process, one thread) and return its measurements."""
    import torch

    torch.set_num_threads(1)
    from nas.models.arch import from_dict
    from nas.models.model import build_model
    from proxies import TrainConfig, prepare_dataset, train_proxy

    info = prepare_dataset(job["dataset"], job["cache"], resolution=job["resolution"])
    torch.manual_seed(job["seed"])
    model = build_model(from_dict(job["proxy_arch"]))
    cfg = TrainConfig(epochs=job["epochs"], batch_size=job["batch_size"], lr=job["lr"],
                      seed=job["seed"], threads=1)
    res = train_proxy(model, info, cfg)
    return {"i": job["i"], "kind": job["kind"], "epochs": job["epochs"], "seed": job["seed"],
            "accuracy": res.accuracy, "val_loss": res.val_loss,
            "test_accuracy": res.test_accuracy, "train_loss_sum": res.train_loss_sum,
            "failure": res.failure, "num_val": res.num_val, "seconds": res.train_seconds}


# --------------------------------------------------------------------------- statistics


def _rank_stats(pred: np.ndarray, ref: np.ndarray, boot: int = 2000) -> dict:
    """Kendall tau (with a bootstrap 95% interval and p), Spearman rho, top-25% overlap."""
    from scipy.stats import kendalltau, spearmanr

    tau, p = kendalltau(pred, ref)
    rho = spearmanr(pred, ref)[0]
    k = max(1, round(len(ref) / 4))
    top = len(set(np.argsort(-pred)[:k]) & set(np.argsort(-ref)[:k])) / k
    rng = np.random.default_rng(0)
    taus = []
    for _ in range(boot):
        idx = rng.integers(0, len(ref), len(ref))
        t = kendalltau(pred[idx], ref[idx])[0]
        if math.isfinite(t):
            taus.append(t)
    lo, hi = np.percentile(taus, [2.5, 97.5]) if taus else (math.nan, math.nan)
    return {"tau": tau, "p": p, "tau_lo": lo, "tau_hi": hi, "rho": rho, "top25": top}


def zero_cost_table(space, info, n: int, path: Path) -> dict[str, dict[str, float]]:
    """Every registered zero-cost proxy on each configuration's proxy model (cached in `path`).

    One fixed training batch (64 images) and one weight init (seed 0) per model, in this
    process; takes well under a second per model and proxy on a CPU core.
    """
    import torch

    from nas.models.model import build_model
    from proxies.zero_cost import list_zero_cost, zero_cost_scores

    cached = json.loads(path.read_text()) if path.exists() else {}
    names = list_zero_cost()
    for i in range(n):
        if str(i) in cached and set(cached[str(i)]) == set(names):
            continue
        arch, _ = space.sample_random(i)
        spec = space.proxy(arch, info.num_classes)

        def factory(spec=spec):
            torch.manual_seed(0)
            return build_model(spec)

        cached[str(i)] = zero_cost_scores(factory, info, names, batch_size=64, seed=0)
    path.write_text(json.dumps(cached, indent=1))
    return {k: v for k, v in cached.items() if int(k) < n}


def analyse(rows: list[dict], meta: dict) -> dict:
    """The benchmark's figures from the finished runs (configurations missing a run left out)."""
    by = {}
    for r in rows:
        by.setdefault(r["i"], {})[r["kind"]] = r
    ids = sorted(i for i, d in by.items()
                 if all(k in d and d[k]["failure"] is None for k in ("proxy", "ref0", "ref1")))
    if len(ids) < 4:
        raise SystemExit(f"only {len(ids)} configurations have all runs; need at least 4")
    get = lambda kind, key: np.array([by[i][kind][key] for i in ids], dtype=float)  # noqa: E731
    ref0, ref1 = get("ref0", "accuracy"), get("ref1", "accuracy")
    cost = {i: meta["configs"][str(i)] for i in ids}
    params = np.array([cost[i]["params"] for i in ids], dtype=float)
    macs = np.array([cost[i]["macs"] for i in ids], dtype=float)
    predictors = {
        "proxy accuracy (default proxy, seed 2)": get("proxy", "accuracy"),
        "proxy validation loss (negated)": -get("proxy", "val_loss"),
        "full-model #params": params,
        "full-model MACs": macs,
    }
    for name in sorted(next(iter(meta.get("zero_cost", {}).values()), {})):
        label = "proxy-model #params (zero-cost)" if name == "params" else f"zero-cost {name}"
        predictors[label] = np.array([meta["zero_cost"][str(i)][name] for i in ids])
    predictors["reference, other seed (seed 1)"] = ref1
    n_val = by[ids[0]]["ref0"]["num_val"]
    seed_std = float(np.sqrt(np.mean((ref0 - ref1) ** 2) / 2))
    between = float(np.std((ref0 + ref1) / 2, ddof=1))
    mean_acc = float(np.mean(ref0))
    return {
        "n": len(ids),
        "rank": {name: _rank_stats(pred, ref0) for name, pred in predictors.items()},
        "noise": {
            "reference accuracy range": [float(ref0.min()), float(ref0.max())],
            "between-architecture std": between,
            "seed-to-seed std": seed_std,
            "between / seed": between / seed_std if seed_std > 0 else math.inf,
            "binomial SE of one accuracy": math.sqrt(mean_acc * (1 - mean_acc) / n_val),
            "validation images": n_val,
            "proxy accuracy range": [float(get("proxy", "accuracy").min()),
                                     float(get("proxy", "accuracy").max())],
        },
    }


def plot(rows: list[dict], meta: dict, result: dict, path: Path) -> None:
    """Three panels: proxy vs reference, reference seed 0 vs seed 1, MACs vs reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (formatters below)

    by = {}
    for r in rows:
        by.setdefault(r["i"], {})[r["kind"]] = r["accuracy"]
    ids = sorted(i for i, d in by.items() if len(d) == 3)
    ref0 = np.array([by[i]["ref0"] for i in ids]) * 100
    macs = np.array([meta["configs"][str(i)]["macs"] for i in ids]) / 1e9
    panels = [
        (np.array([by[i]["proxy"] for i in ids]) * 100,
         f"proxy accuracy, {meta['epochs']} epochs, seed 2 (%)",
         result["rank"]["proxy accuracy (default proxy, seed 2)"]["tau"]),
        (np.array([by[i]["ref1"] for i in ids]) * 100,
         "reference accuracy, seed 1 (%)",
         result["rank"]["reference, other seed (seed 1)"]["tau"]),
        (macs, "full-model GMACs", result["rank"]["full-model MACs"]["tau"]),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), constrained_layout=True)
    for ax, (x, label, tau) in zip(axes, panels):
        sc = ax.scatter(x, ref0, c=np.log10(macs), cmap="viridis", s=28, edgecolors="k",
                        linewidths=0.4)
        ax.set_xlabel(label)
        ax.set_ylabel(f"reference accuracy, {REF_FACTOR * meta['epochs']} epochs, seed 0 (%)")
        ax.set_title(f"Kendall τ = {tau:.2f}")
        ax.grid(alpha=0.3)
    axes[2].set_xscale("log")
    axes[2].xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axes[2].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    fig.colorbar(sc, ax=axes, label="log10 full-model GMACs", shrink=0.8)
    fig.suptitle(f"Proxy fidelity on {meta['dataset']}: {len(ids)} random "
                 f"{meta['space']} configurations")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_tables(result: dict, meta: dict) -> None:
    e = meta["epochs"]
    print(f"\n### {meta['dataset']}: {result['n']} random `{meta['space']}` configurations; "
          f"proxy {e} epoch(s), reference {REF_FACTOR * e} epochs (seed 0)\n")
    print("| predictor of the reference accuracy | Kendall τ (95% CI) | Spearman ρ | top-25% |")
    print("|---|---|---|---|")
    for name, s in result["rank"].items():
        print(f"| {name} | {s['tau']:.2f} ({s['tau_lo']:.2f} … {s['tau_hi']:.2f}) | "
              f"{s['rho']:.2f} | {s['top25']:.2f} |")
    nz = result["noise"]
    lo, hi = nz["reference accuracy range"]
    plo, phi = nz["proxy accuracy range"]
    print(f"\nreference accuracy {lo:.1%} … {hi:.1%}; proxy accuracy {plo:.1%} … {phi:.1%}; "
          f"between-architecture std {nz['between-architecture std'] * 100:.2f} points; "
          f"seed-to-seed std {nz['seed-to-seed std'] * 100:.2f} points "
          f"(ratio {nz['between / seed']:.1f}); binomial SE of one accuracy "
          f"{nz['binomial SE of one accuracy'] * 100:.2f} points on {nz['validation images']} "
          f"validation images")


# --------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="hybrid_conv_attn")
    p.add_argument("--dataset", default="clutter")
    p.add_argument("-n", type=int, default=30, help="random configurations")
    p.add_argument("--epochs", type=int, default=None,
                   help="proxy epochs (default: the search default)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", default="runs/fidelity", help="folder for results (JSONL + JSON)")
    p.add_argument("--analyse-only", action="store_true",
                   help="train nothing: tables and plot from the runs already recorded")
    args = p.parse_args(argv)

    from nas.models.arch import to_dict
    from nas.models.cost import analytic_cost
    from nas.search import SearchConfig
    from proxies import default_cache_dir, prepare_dataset
    from search_spaces import load_space

    epochs = args.epochs or SearchConfig.epochs
    space = load_space(args.space)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"{args.dataset}_{args.space}_e{epochs}_b{args.batch_size}_lr{args.lr:g}"
    runs_path = out / f"{tag}.jsonl"
    cache = str(Path(os.environ.get("NAS_CACHE_DIR") or default_cache_dir()))
    info = prepare_dataset(args.dataset, cache, resolution=space.proxy_spec.resolution)

    meta = {"space": args.space, "dataset": args.dataset, "epochs": epochs, "configs": {}}
    jobs = []
    for i in range(args.n):
        arch, _ = space.sample_random(i)
        c = analytic_cost(arch)
        meta["configs"][str(i)] = {"params": c.params, "macs": c.macs}
        base = {"i": i, "dataset": args.dataset, "cache": cache, "resolution": info.resolution,
                "proxy_arch": to_dict(space.proxy(arch, info.num_classes)),
                "batch_size": args.batch_size, "lr": args.lr}
        jobs.append({**base, "kind": "proxy", "epochs": epochs, "seed": PROXY_SEED})
        for s in REF_SEEDS:
            jobs.append({**base, "kind": f"ref{s}", "epochs": REF_FACTOR * epochs, "seed": s})
    done = []
    if runs_path.exists():
        done = [json.loads(line) for line in runs_path.read_text().splitlines() if line.strip()]
    have = {(r["i"], r["kind"]) for r in done}
    todo = [j for j in jobs if (j["i"], j["kind"]) not in have and not args.analyse_only]
    # config by config (so a partial run has complete triples), the long runs first in each
    todo.sort(key=lambda j: (j["i"], -j["epochs"]))
    print(f"{len(jobs)} runs ({len(have)} already in {runs_path}); "
          f"{len(todo)} to train on {args.workers} worker(s)", flush=True)
    t0 = time.perf_counter()
    if todo:
        ctx = multiprocessing.get_context("spawn")  # no forked torch or FFCV state
        with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool, \
                runs_path.open("a") as f:
            futures = [pool.submit(_run, j) for j in todo]
            for k, fut in enumerate(as_completed(futures), 1):
                r = fut.result()
                f.write(json.dumps(r) + "\n")
                f.flush()
                done.append(r)
                el = time.perf_counter() - t0
                print(f"[{k:>3}/{len(todo)}] config {r['i']:>2} {r['kind']:<5} "
                      f"{r['epochs']:>2} ep  acc {r['accuracy']:.4f}  {r['seconds']:6.1f} s  "
                      f"elapsed {el:7.1f} s  eta {el / k * (len(todo) - k):7.1f} s", flush=True)
    print("zero-cost proxies on each proxy model ...", flush=True)
    meta["zero_cost"] = zero_cost_table(space, info, args.n, out / f"{tag}_zero_cost.json")
    result = analyse([r for r in done if r["i"] < args.n], meta)
    (out / f"{tag}.json").write_text(json.dumps({"meta": meta, "result": result}, indent=1))
    print_tables(result, meta)
    plot([r for r in done if r["i"] < args.n], meta, result, out / f"{tag}.png")
    print(f"\n(command: {' '.join(['benchmarks/bench_fidelity.py', *(argv or sys.argv[1:])])}; "
          f"wall {time.perf_counter() - t0:.0f} s; runs in {runs_path}; plot {tag}.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
