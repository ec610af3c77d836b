"""``python -m nas pareto``: a study's front as a table, CSV, JSON and PNG plots; several studies
compared on one plot with one hypervolume reference point.

Reads the database only. Every number comes from :mod:`nas.analysis`: the front, the
noise-aware split (certain / within noise), the knee, and hypervolume with the shared
reference point (the rule is in that module's docstring and the README).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas import analysis as A
from nas.results import ZC_PREFIX, Objective, numeric_fields, parse_objectives
from nas_errors import ConfigError, printable

__all__ = ["StudyFront", "load_fronts", "front_rows", "trial_rows", "write_outputs",
           "write_trials_csv", "print_fronts", "plot_axes"]


@dataclass(frozen=True)
class StudyFront:
    """One study read for the front: its records, evaluated set, noisy front and knee."""

    name: str
    study: Any  # db.StudyRecord
    trials: tuple  # every TrialRecord of the study
    ev: A.Evaluated
    noisy: A.NoisyFront
    knee: Any  # TrialRecord | None
    counts: dict[str, int]  # state -> trials
    twins: dict[int, tuple[int, ...]]  # number -> trials that trained the same proxy


def load_fronts(store, names: Sequence[str], objectives: Sequence[Objective] | None = None,
                z: float = A.DEFAULT_Z) -> list[StudyFront]:
    """Read each study and analyse it over ``objectives`` (default: the first study's)."""
    out = []
    for name in names:
        study = store.get_study(name)
        objs = tuple(objectives) if objectives else parse_objectives(study.objectives)
        objectives = objs
        trials = tuple(store.trials(name))
        if [str(o) for o in objs] != list(study.objectives):  # its own: recorded by each
            _check_recorded(name, trials, objs)
        ev = A.evaluated(trials, objs)
        counts: dict[str, int] = defaultdict(int)
        for t in trials:
            counts[t.state] += 1
        out.append(StudyFront(name, study, trials, ev, A.noisy_front(ev, z=z),
                              A.knee_point(ev), dict(counts), A.proxy_twins(trials)))
    return out


def _check_recorded(study: str, trials, objectives: Sequence[Objective]) -> None:
    """ConfigError when the study has completed trials but none of them recorded one of
    ``objectives`` (an empty front would look like a result)."""
    completed = [t for t in trials if t.state == "COMPLETE"]
    if not completed:
        return
    for o in objectives:
        if all(o.of(t) is None for t in completed):
            fields = [n for n in numeric_fields()
                      if any(Objective(n, "max").of(t) is not None for t in completed)]
            zc = sorted({k for t in completed for k in t.metrics
                         if k.startswith(ZC_PREFIX) and Objective(k, "max").of(t) is not None})
            raise ConfigError(f"--objectives: no completed trial of study '{study}' recorded "
                              f"{o.name}; recorded: {', '.join([*fields, *zc])}")


def _describe(t) -> str:
    if t.spec is None:
        return ""
    from nas.models import describe

    return describe(t.spec)


def front_rows(fronts: Sequence[StudyFront]) -> list[dict]:
    """One row per front member of every study (the CSV/JSON content), cheapest first."""
    rows = []
    for f in fronts:
        for m in f.noisy.members:
            t = m.trial
            row = {"study": f.name, "trial": t.number, "accuracy": t.accuracy,
                   "accuracy_se": t.accuracy_se, "test_accuracy": t.test_accuracy,
                   "macs": t.macs, "params": t.params_count}
            for o in f.ev.objectives:
                if o.name not in ("accuracy", "macs", "params"):
                    row[o.name] = o.of(t)
            row.update({"noise": "certain" if m.certain else "within_noise",
                        "tied_with": list(m.tied_with),
                        "knee": f.knee is not None and t.id == f.knee.id,
                        "same_proxy_as": list(f.twins.get(t.number, ())),
                        "reused_from": A.reused_from(t),
                        "arch_hash": t.arch_hash, "architecture": _describe(t)})
            rows.append(row)
    return rows


def hypervolumes(fronts: Sequence[StudyFront], box: A.Box | None = None,
                 ) -> tuple[A.Box | None, dict[str, float]]:
    """The box (``box``, else the data rule's, shared by the studies: None when none has a
    completed trial) and each study's hypervolume as a fraction of it."""
    if box is None:
        sets = [f.ev for f in fronts if len(f.ev)]
        box = A.data_box(*sets) if sets else None
    return box, {f.name: box.fraction(f.ev.losses) if box is not None and len(f.ev) else 0.0
                 for f in fronts}


# --------------------------------------------------------------------------- terminal


def print_fronts(fronts: Sequence[StudyFront], hv: dict[str, float], z: float,
                 print_fn: Callable[[Any], None] | None = None,
                 box: A.Box | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, int(os.environ.get("COLUMNS", 0) or 0)))
    show = print_fn or console.print
    for f in fronts:
        names = ", ".join(str(o) for o in f.ev.objectives)
        states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(f.counts.items()))
        table = Table(title=table_text(
            f"Pareto front of '{f.name}' (space {f.study.space}) over {names}: "
            f"{len(f.noisy.members)} of {len(f.ev)} completed trials; {len(f.noisy.certain)} "
            f"certain, {len(f.noisy.within_noise)} within noise (z={z:g}); "
            f"hypervolume {hv[f.name]:.4f} of the box"), caption=table_text(
            f"trials: {states or 'none'}. Within noise: another trial is not significantly "
            f"worse in any objective (its numbers in 'tied with'). Knee marked *. "
            f"{len(f.noisy.band)} dominated trials lie within noise of the front."))
        extra = [o for o in f.ev.objectives if o.name not in ("accuracy", "macs", "params")]
        for col in ("#", "val acc", "± SE", "GMACs", "params (M)", *(o.name for o in extra),
                    "noise", "tied with", "architecture"):
            table.add_column(table_text(col), justify="left" if col in ("architecture", "noise",
                                                                    "tied with") else "right")
        labels = {m.trial.id: _describe(m.trial) for m in f.noisy.members}
        shared = {v for v, n in Counter(labels.values()).items() if n > 1}
        for m in f.noisy.members:
            t = m.trial
            label = labels[t.id]
            if label in shared:  # the short name leaves out mixer settings, norm, activation
                label += f" (arch {t.arch_hash[:8]})"
            knee = "*" if f.knee is not None and t.id == f.knee.id else ""
            tied = ", ".join(map(str, m.tied_with[:6])) + (" …" if len(m.tied_with) > 6 else "")
            table.add_row(f"{t.number}{knee}", _fmt(t.accuracy, ".4f"), _fmt(t.accuracy_se, ".4f"),
                          _fmt(t.macs and t.macs / 1e9, ".3f"),
                          _fmt(t.params_count and t.params_count / 1e6, ".2f"),
                          *(_fmt(o.of(t), ".4g") for o in extra),
                          "certain" if m.certain else "within noise", tied, table_text(label))
        show(table)
        by_number = {t.number: t for t in f.trials}
        for line in A.twin_notes((m.trial for m in f.noisy.members), f.twins, by_number):
            show(table_text("note: " + line))
    sizes = {f.name: len(f.ev) for f in fronts}
    if len(set(sizes.values())) > 1:  # hypervolume grows with the trials a search completed
        show(table_text("note: the studies completed different numbers of trials ("
                    + ", ".join(f"{n}: {k}" for n, k in sizes.items()) + "); their hypervolumes "
                    "compare searches of different sizes, not only their samplers or spaces"))
    if box is not None and box.given:
        for line in box_notes(fronts, box):
            show(table_text(line))


def box_notes(fronts: Sequence[StudyFront], box: A.Box) -> list[str]:
    """What a given box means for these fronts: its corners, and the front members outside it
    (beyond the reference they add nothing; beyond the ideal they count as at it)."""
    notes = [f"hypervolume box (given): {box.describe()}"]
    for f in fronts:
        notes += box.front_notes(f.name, f.ev, (m.trial for m in f.noisy.members))
    return notes


def table_text(s: str) -> str:
    """A rich table's text: unprintable characters escaped (names from a database may hold any,
    an escape sequence among them), then rich's markup."""
    from rich.markup import escape

    return escape(printable(s))


def _fmt(v: float | None, spec: str) -> str:
    return "" if v is None else format(v, spec)


# --------------------------------------------------------------------------- files


OUTPUTS = ("front.csv", "front.json", "trials.csv", "pareto.png", "hypervolume.png")
#: written beside them: a folder holding it is an earlier --out, whose files are replaced
MARKER = ".nas-pareto"
_MARKER_TEXT = ("Written by `python -m nas pareto --out` (metaformer-nas): the next pareto --out "
                "into this folder replaces " + ", ".join(OUTPUTS) + ".\n")


def _earlier_output(out: Path) -> bool:
    """Whether ``out`` was written by pareto --out: its marker, or (before the marker) a
    front.json with pareto's own reference rule."""
    def plain(path: Path) -> bool:  # a regular file, not a link (nor a FIFO, a device, ...)
        return path.is_file() and not path.is_symlink()

    if plain(out / MARKER):
        return True
    try:
        if not plain(out / "front.json"):
            return False
        with open(out / "front.json", "rb") as fh:
            return b'"reference_rule"' in fh.read(4096)
    except OSError:
        return False


def check_out(out: Path, *, force: bool = False) -> None:
    """Refuse (ConfigError, one line) an ``out`` where writing would replace a file that pareto
    did not write, unless ``force``; a directory where a file goes is refused even so."""
    clash = [n for n in (*OUTPUTS, MARKER) if (out / n).is_dir()]
    if clash:
        raise ConfigError(f"--out {out}: {clash[0]} there is a directory; choose another --out")
    theirs = [n for n in OUTPUTS if (out / n).exists() or (out / n).is_symlink()]
    if theirs and not force and not _earlier_output(out):
        raise ConfigError(f"--out {out} already holds {', '.join(theirs)}, which pareto did not "
                          "write; choose another --out, or pass --force to replace them")


def write_outputs(fronts: Sequence[StudyFront], out: Path, *, z: float, box: A.Box | None = None,
                  group_by: str | None = None) -> list[Path]:
    """front.csv, front.json, trials.csv, pareto.png and hypervolume.png in ``out`` (created),
    all or none:
    written into a temporary folder inside ``out``, then renamed over the old ones (see
    :func:`check_out` for which old ones may be replaced); then the folder's marker."""
    check_out(out, force=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".pareto-partial-", dir=out))
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot write there: {e.strerror or e}") from None
    try:
        written = _write_files(fronts, tmp, z=z, group_by=group_by, box=box)
        (tmp / MARKER).write_text(_MARKER_TEXT)
        for path in [*written, tmp / MARKER]:  # (a link there is replaced, not written through)
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [out / path.name for path in written]


def _write_files(fronts: Sequence[StudyFront], out: Path, *, z: float,
                 group_by: str | None, box: A.Box | None = None) -> list[Path]:
    box, hv = hypervolumes(fronts, box)
    rows = front_rows(fronts)
    written = []
    cols: list[str] = list(dict.fromkeys(k for r in rows for k in r)) or [
        "study", "trial", "accuracy", "accuracy_se", "macs", "params", "noise"]
    path = out / "front.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: (" ".join(map(str, v)) if isinstance(v, list) else v)
                        for k, v in r.items()})
    written.append(path)
    doc = {"z": z, "reference_point": None if box is None else box.reference.tolist(),
           "reference_rule": A.DATA_RULE if box is None else box.rule,
           "ideal_point": None if box is None else box.ideal.tolist(),
           "box": None if box is None else box.in_units(),
           "studies": [{"name": f.name, "space": f.study.space,
                        "objectives": [str(o) for o in f.ev.objectives],
                        "states": f.counts, "completed": len(f.ev),
                        "hypervolume_fraction": hv[f.name],
                        "knee": None if f.knee is None else f.knee.number,
                        "certain": [t.number for t in f.noisy.certain],
                        "within_noise": [t.number for t in f.noisy.within_noise],
                        "noise_band": [t.number for t in f.noisy.band],
                        "front": [r for r in rows if r["study"] == f.name]}
                       for f in fronts]}
    path = out / "front.json"
    path.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    written.append(path)
    written.append(write_trials_csv(fronts, out / "trials.csv"))
    written.append(plot_fronts(fronts, out / "pareto.png"))
    written.append(plot_hypervolume(fronts, box, out / "hypervolume.png", group_by=group_by))
    return written


TRIAL_COLUMNS = ("study", "trial", "state", "on_front", "accuracy", "accuracy_se",
                 "test_accuracy", "macs", "params", "duration_s", "arch_hash", "architecture",
                 "same_proxy_as", "reused_from")


def trial_rows(fronts: Sequence[StudyFront]) -> list[dict]:
    """Every trial of every study (one row each, in trial order) with its state, numbers, the
    objectives' values, its design features (sampled parameters and the mixer, depth and width
    patterns) and whether it is on the front: the table to analyse elsewhere (pandas, R)."""
    rows = []
    for f in fronts:
        members = {m.trial.id for m in f.noisy.members}
        for t in sorted(f.trials, key=lambda t: t.number):
            row = {"study": f.name, "trial": t.number, "state": t.state,
                   "on_front": t.id in members, "accuracy": t.accuracy,
                   "accuracy_se": t.accuracy_se, "test_accuracy": t.test_accuracy,
                   "macs": A.known_cost(t, "macs"), "params": A.known_cost(t, "params"),
                   "duration_s": t.duration_s,
                   "arch_hash": t.arch_hash, "architecture": _describe(t),
                   "same_proxy_as": " ".join(map(str, f.twins.get(t.number, ()))),
                   "reused_from": A.reused_from(t)}
            for o in f.ev.objectives:
                row.setdefault(o.name, o.of(t))
            for k, v in A.design_features(t).items():
                row.setdefault(k, v)  # (our columns first, should a parameter share a name)
            rows.append(row)
    return rows


def write_trials_csv(fronts: Sequence[StudyFront], path: Path) -> Path:
    """:func:`trial_rows` as CSV at ``path`` (:data:`TRIAL_COLUMNS` first, then the objectives
    and design features in order of appearance; a missing value is empty)."""
    rows = trial_rows(fronts)
    cols = list(dict.fromkeys([*TRIAL_COLUMNS, *(k for r in rows for k in r)]))
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return path


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v) if math.isfinite(v) else None
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_axes(objectives: Sequence[Objective]) -> tuple[Objective | None, Objective]:
    """(x, y) objectives a front is drawn on: y the first to maximise (else the first), x the
    first other one to minimise (else the next); x None (trial number) for a single objective.
    With three or more objectives the plot is those two's projection."""
    if not objectives:
        raise ConfigError("pareto plot: the studies have no objectives")
    yo = next((o for o in objectives if o.direction == "max"), objectives[0])
    rest = [o for o in objectives if o is not yo]
    xo = next((o for o in rest if o.direction == "min"), rest[0] if rest else None)
    return xo, yo


def plot_fronts(fronts: Sequence[StudyFront], path: Path) -> Path:
    """Every evaluated trial and each front with error bars, members within noise hollow, the
    knee starred: accuracy against MACs (log axis) for the default objectives, otherwise the
    pair :func:`plot_axes` picks (the front as points joined in x order, not as steps)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    objs = list(fronts[0].ev.objectives) if fronts else []
    xo, yo = plot_axes(objs)
    steps = len(objs) == 2 and xo.direction == "min" and yo.direction == "max"  # a 2-D front

    def xs(trials) -> list:
        return [t.number if xo is None else xo.of(t) for t in trials]

    for i, f in enumerate(fronts):
        color = f"C{i}"
        ax.scatter(xs(f.ev.trials), [yo.of(t) for t in f.ev.trials], s=10, color=color,
                   alpha=0.25, linewidths=0)
        mem = sorted(f.noisy.members, key=lambda m: xs([m.trial])[0])
        fx, fy = xs([m.trial for m in mem]), [yo.of(m.trial) for m in mem]
        label = f"{f.name} ({len(mem)} on the front, {len(f.noisy.certain)} certain)"
        if steps:
            ax.step(fx, fy, where="post", color=color, lw=1.2, label=label)
        else:
            ax.plot(fx, fy, color=color, lw=1.0, alpha=0.6, label=label)
        se = [A.standard_error(m.trial, yo) for m in mem]
        ax.errorbar(fx, fy, yerr=se, fmt="none", ecolor=color, elinewidth=0.8, capsize=2)
        for m, xv, yv in zip(mem, fx, fy):
            ax.scatter([xv], [yv], s=28, edgecolors=color, linewidths=1.2,
                       facecolors=color if m.certain else "white", zorder=3)
        if f.knee is not None:
            ax.scatter(xs([f.knee]), [yo.of(f.knee)], marker="*", s=160, color=color,
                       edgecolors="black", linewidths=0.6, zorder=4)
    if xo is not None and xo.name in ("macs", "params", "latency_ms") and all(
            v is not None and v > 0 for f in fronts for v in xs(f.ev.trials)) \
            and any(len(f.ev) for f in fronts):
        ax.set_xscale("log")
    xname = "trial number" if xo is None else f"{xo.name} ({xo.direction})"
    ax.set_xlabel(f"{xname}, log" if ax.get_xscale() == "log" else xname)
    ax.set_ylabel(f"{yo.name} ({yo.direction})")
    title = ("Pareto fronts: filled = certainly non-dominated, hollow = within noise, "
             "* = knee")
    if len(objs) > 2:
        title += f"\nprojected on {xo.name} and {yo.name} of {len(objs)} objectives"
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    if fronts:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def group_curves(fronts: Sequence[StudyFront], curves: dict[str, tuple], group_by: str
                 ) -> list[tuple[str, dict[str, Any] | None]]:
    """(legend label, :func:`nas.analysis.summarize_curves` or None) per value of the study
    config's ``group_by``, sorted. A study without an evaluated trial has an empty curve; cut to
    the shortest length, it would blank its group's, so it is left out and the label says so
    (None: no study of the group has one)."""
    groups: dict[str, list] = defaultdict(list)
    for f in fronts:
        groups[str(f.study.config.get(group_by))].append(curves[f.name])
    out: list[tuple[str, dict[str, Any] | None]] = []
    for g, cs in sorted(groups.items()):
        used = [c for c in cs if len(c[1])]
        left = (f" ({len(cs) - len(used)} without evaluated trials left out)"
                if len(used) < len(cs) else "")
        if not used:
            out.append((f"{group_by}={g}: no evaluated trials", None))
        else:
            out.append((f"{group_by}={g}: mean of {len(used)}{left}",
                        A.summarize_curves(used)))
    return out


def plot_hypervolume(fronts: Sequence[StudyFront], box: A.Box | None, path: Path, *,
                     group_by: str | None = None) -> Path:
    """Hypervolume (fraction of the shared box) after each evaluated trial, per study; with
    ``group_by`` (a study-config key such as ``sampler``), the mean and min-max band over the
    studies of each group (seeds)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    if box is not None:
        curves = {f.name: A.hypervolume_curve(f.trials, f.ev.objectives, box=box)
                  for f in fronts}
        if group_by:
            for i, (label, s) in enumerate(group_curves(fronts, curves, group_by)):
                if s is None:
                    ax.plot([], [], color=f"C{i}", label=label)
                    continue
                ax.plot(s["x"], s["mean"], color=f"C{i}", label=label)
                ax.fill_between(s["x"], s["min"], s["max"], color=f"C{i}", alpha=0.2)
        else:
            for i, f in enumerate(fronts):
                x, y = curves[f.name]
                ax.step(x, y, where="post", color=f"C{i}", label=f.name)
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel("evaluated trials (completed, pruned or failed)")
    ax.set_ylabel("hypervolume (fraction of the box)")
    ax.set_title("Hypervolume over trials (" + ("given box" if box is not None and box.given
                                                 else "shared reference point") + ")", fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
