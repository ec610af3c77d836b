"""Time the closed-form cost model against meta-device tracing, and check they agree exactly.

For N random configurations drawn from the shipped search spaces (``space.sample_random(seed)``)
and for every preset, this computes :func:`nas.models.cost.analytic_cost` and
:func:`nas.models.cost.traced_cost`, checks that params, MACs and acts are identical, and reports
the time of each: analytic in microseconds (mean of ``--repeat`` back-to-back calls per config,
the spec validation included), traced in milliseconds (one call per config, after one warm-up
trace). The speed-up is median traced time / median analytic time; the cost model is required
to be at least 1000x faster than tracing (``--min-speedup``).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_cost.py                        # 200 samples + all presets
    .venv/bin/python benchmarks/bench_cost.py -n 50 --space tiny --no-presets
    .venv/bin/python benchmarks/bench_cost.py -n 0 --per-config      # presets only, one row each
    .venv/bin/python benchmarks/bench_cost.py --repeat 500 --min-speedup 1000

Exit status: 0 when every configuration agrees and the overall speed-up reaches
``--min-speedup``; 1 otherwise.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from nas.models.arch import ArchSpec, ConvMixerSpec, arch_hash
from nas.models.cost import Cost, analytic_cost, traced_cost
from nas.models.presets import get_preset, list_presets
from search_spaces import list_spaces, load_space


@dataclass(frozen=True)
class Row:
    group: str  # search-space name or "presets"
    label: str  # seed or preset name
    key: str  # arch_hash: samples may repeat in small spaces
    analytic_us: float
    traced_ms: float
    analytic: Cost
    traced: Cost

    @property
    def agree(self) -> bool:
        return self.analytic == self.traced

    @property
    def speedup(self) -> float:
        return self.traced_ms * 1e3 / self.analytic_us


def time_analytic(spec: ArchSpec, repeat: int) -> tuple[float, Cost]:
    """Mean microseconds per call over ``repeat`` calls (after one untimed call)."""
    cost = analytic_cost(spec)
    t0 = time.perf_counter_ns()
    for _ in range(repeat):
        analytic_cost(spec)
    return (time.perf_counter_ns() - t0) / repeat / 1e3, cost


def time_traced(spec: ArchSpec) -> tuple[float, Cost]:
    t0 = time.perf_counter_ns()
    cost = traced_cost(spec)
    return (time.perf_counter_ns() - t0) / 1e6, cost


def configurations(n: int, spaces: list[str], seed: int,
                   presets: bool) -> Iterator[tuple[str, str, ArchSpec]]:
    """(group, label, spec): ``n`` samples round-robin over ``spaces``, then every preset."""
    loaded = [load_space(s) for s in spaces]
    for i in range(n if loaded else 0):
        space = loaded[i % len(loaded)]
        arch, _ = space.sample_random(seed + i)
        yield spaces[i % len(loaded)], f"seed {seed + i}", arch
    if presets:
        for name in list_presets():
            yield "presets", name, get_preset(name)


def describe(spec: ArchSpec) -> str:
    if isinstance(spec, ConvMixerSpec):
        return f"convmixer h{spec.width} d{spec.depth} k{spec.kernel_size} p{spec.patch_size}"
    mixers = "/".join(m[:4] for m in spec.mixers)
    return f"{mixers} d{list(spec.depths)} w{list(spec.widths)} @{spec.img_size}"


def summarize(rows: list[Row]) -> dict[str, float]:
    a = [r.analytic_us for r in rows]
    t = [r.traced_ms for r in rows]
    return {
        "n": len(rows), "unique": len({r.key for r in rows}),
        "a_med": statistics.median(a), "a_mean": statistics.fmean(a),
        "t_med": statistics.median(t), "t_mean": statistics.fmean(t),
        "speedup": statistics.median(t) * 1e3 / statistics.median(a),
        "min_speedup": min(r.speedup for r in rows),
        "mismatches": sum(not r.agree for r in rows),
    }


HEADER = (f"{'group':<22} {'n':>4} {'uniq':>4} {'analytic us':>18} {'traced ms':>18} "
          f"{'speed-up':>9} {'min':>8} {'mismatch':>8}")
SUB = f"{'':<22} {'':>4} {'':>4} {'median':>9}{'mean':>9} {'median':>9}{'mean':>9}"


def format_summary(group: str, s: dict[str, float]) -> str:
    return (f"{group:<22} {s['n']:>4} {s['unique']:>4} {s['a_med']:>9.1f}{s['a_mean']:>9.1f} "
            f"{s['t_med']:>9.1f}{s['t_mean']:>9.1f} {s['speedup']:>8.0f}x "
            f"{s['min_speedup']:>7.0f}x {s['mismatches']:>8}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--samples", type=int, default=200,
                    help="random configurations from the spaces, round-robin (default 200)")
    ap.add_argument("--space", action="append", choices=list_spaces(), default=None,
                    help="shipped space to sample (repeatable; default: all of them)")
    ap.add_argument("--seed", type=int, default=0, help="first sampling seed (default 0)")
    ap.add_argument("--repeat", type=int, default=200,
                    help="analytic calls timed per configuration (default 200)")
    ap.add_argument("--no-presets", dest="presets", action="store_false",
                    help="skip the presets")
    ap.add_argument("--per-config", action="store_true", help="print one row per configuration")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for tracing")
    ap.add_argument("--min-speedup", type=float, default=1000.0,
                    help="required median traced / median analytic ratio (default 1000)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    spaces = args.space or list_spaces()

    print(f"torch {torch.__version__}, python {platform.python_version()}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(f"spaces: {', '.join(spaces)}; samples: {args.samples}; presets: {args.presets}; "
          f"analytic repeat: {args.repeat}")
    traced_cost(get_preset("test_metaformer_tiny"))  # warm-up: first-call import/dispatch costs
    traced_cost(get_preset("test_convmixer_tiny"))

    rows: list[Row] = []
    if args.per_config:
        print(f"{'group':<22} {'config':<28} {'analytic us':>11} {'traced ms':>10} "
              f"{'speed-up':>9}  agree  description")
    for group, label, spec in configurations(args.samples, spaces, args.seed, args.presets):
        a_us, a_cost = time_analytic(spec, args.repeat)
        t_ms, t_cost = time_traced(spec)
        row = Row(group, label, arch_hash(spec), a_us, t_ms, a_cost, t_cost)
        rows.append(row)
        if args.per_config:
            print(f"{group:<22} {label:<28} {a_us:>11.1f} {t_ms:>10.1f} {row.speedup:>8.0f}x  "
                  f"{'yes' if row.agree else 'NO '}    {describe(spec)}")
        if not row.agree:
            print(f"MISMATCH {group} {label}: analytic {a_cost} != traced {t_cost}\n  {spec}",
                  file=sys.stderr)
    if not rows:
        print("nothing to benchmark")
        return 1

    print()
    print(HEADER)
    print(SUB)
    groups = list(dict.fromkeys(r.group for r in rows))
    for g in groups:
        print(format_summary(g, summarize([r for r in rows if r.group == g])))
    total = summarize(rows)
    if len(groups) > 1:
        print(format_summary("all", total))

    ok_agree = total["mismatches"] == 0
    ok_speed = total["speedup"] >= args.min_speedup
    print()
    print(f"agreement: {total['n'] - total['mismatches']}/{total['n']} configurations identical "
          f"(params, macs, acts) -> {'OK' if ok_agree else 'FAIL'}")
    print(f"speed-up: median traced {total['t_med']:.1f} ms / median analytic "
          f"{total['a_med']:.1f} us = {total['speedup']:.0f}x (per-config minimum "
          f"{total['min_speedup']:.0f}x); required >= {args.min_speedup:.0f}x -> "
          f"{'OK' if ok_speed else 'FAIL'}")
    return 0 if ok_agree and ok_speed else 1


if __name__ == "__main__":
    sys.exit(main())
