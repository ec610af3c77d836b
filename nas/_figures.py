"""Plotly figures of a study, built once here for the dashboard and the report.

Figures are plain ``{"data": [...], "layout": {...}}`` dicts, which Dash and ``plotly.io``
take as they are: building a ``plotly.graph_objects.Figure`` validates every array, 0.7 s for
a 10,000-point scatter. Numbers are rounded to what a reader can see, to keep the page small.

Every text a figure shows (names, architectures, values of design choices, titles) goes through
:func:`esc`: Plotly renders a subset of HTML in titles, legends, ticks and hover labels, so a
study called ``<b>x</b>`` would otherwise lose its tags and one called
``<script>alert(1)</script>`` its text. Plotly turns the entities back into the characters.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from db import TrialRecord
from nas._snapshot import Snapshot

__all__ = ["esc", "pareto_figure", "hypervolume_figure", "edf_figure", "importance_figure",
           "curve_figure", "empty_figure", "plotly_js", "GL_THRESHOLD", "MAX_PATTERNS",
           "PLOTLY_JS"]

#: plotly.js's own ``gl2d`` partial bundle (scatter, scattergl, splom, parcoords), vendored
#: (``nas/_static/README.md``): every figure here is ``scatter`` or ``scattergl``, and the
#: bundle is 1.5 MB against the full one's 4.8 MB, which a first visit spends ~0.5 s compiling
PLOTLY_JS = Path(__file__).resolve().parent / "_static" / "plotly-gl2d-4.1.1.min.js"

#: above this many points the scatter is drawn with WebGL (scattergl) instead of SVG
GL_THRESHOLD = 2000
#: mixer patterns with a colour of their own (the most frequent); the rest share one grey
MAX_PATTERNS = 10
#: the qualitative palette (Plotly's default colour sequence)
PALETTE = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692",
           "#B6E880", "#FF97FF", "#FECB52")
_OTHER = "#9a9a9a"
_FRONT_LINE = "#222222"
_MARGIN = {"l": 60, "r": 20, "t": 50, "b": 50}


def esc(value: Any) -> str:
    """``value`` as text that Plotly shows literally (HTML-escaped; quotes as numeric
    entities, which Plotly decodes, unlike ``&quot;``)."""
    return html.escape(str(value), quote=False).replace('"', "&#34;").replace("'", "&#39;")


def _fmt(v: float | None, spec: str) -> str:
    return "–" if v is None or not math.isfinite(v) else format(v, spec)


def _r(v: float | None, digits: int = 5) -> float | None:
    return None if v is None else round(float(v), digits)


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """The plotly.js bundle every page of ours uses (:data:`PLOTLY_JS`), as text."""
    return PLOTLY_JS.read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _template() -> dict[str, Any]:
    import plotly.io as pio

    return pio.templates["plotly_white"].to_plotly_json()


def _layout(title: str, **kw: Any) -> dict[str, Any]:
    """A layout with an (already escaped) ``title``."""
    return {"title": {"text": title, "font": {"size": 15}}, "margin": _MARGIN,
            "template": _template(), **kw}


def empty_figure(title: str, message: str) -> dict[str, Any]:
    """A figure holding only ``message`` (both escaped here)."""
    return {"data": [], "layout": _layout(
        esc(title), xaxis={"visible": False}, yaxis={"visible": False},
        annotations=[{"text": esc(message), "showarrow": False, "x": 0.5, "y": 0.5,
                      "xref": "paper", "yref": "paper", "font": {"size": 14, "color": "#666"}}])}


# --------------------------------------------------------------------------- Pareto scatter


def _hover_data(snap: Snapshot, t: TrialRecord, other: bool) -> list[Any]:
    """``customdata`` of a point: [number, architecture, ±SE, test acc, M params, front]."""
    f = snap.features[t.number]
    arch = f"depths {f.get('depth_pattern', '?')} · widths {f.get('width_pattern', '?')}"
    if other:  # the grey trace mixes patterns: name each point's
        arch = f"{f.get('mixer_pattern', '?')} · {arch}"
    status = snap.front_status.get(t.number)
    return [t.number, esc(arch), _r(t.accuracy_se), _r(t.test_accuracy),
            None if t.params_count is None else round(t.params_count / 1e6, 2),
            f" · front: {status}" if status else ""]


def _hover_template(pattern: str | None) -> str:
    """The hover label; the values come from each point's :func:`_hover_data`."""
    head = "" if pattern is None else f"{esc(pattern)} · "
    return ("#%{customdata[0]}%{customdata[5]}<br>" + head + "%{customdata[1]}<br>"
            "acc %{y:.4f} ± %{customdata[2]:.4f} (test %{customdata[3]:.4f})<br>"
            "%{x:.4s} MACs · %{customdata[4]:.2f} M params<extra></extra>")


def _patterns(snap: Snapshot, points: Sequence[TrialRecord]) -> tuple[list[str], str]:
    """The patterns with a colour of their own (most trials first), and the rest's label."""
    counts = Counter(str(snap.features[t.number].get("mixer_pattern", "?")) for t in points)
    ranked = sorted(counts, key=lambda p: (-counts[p], p))
    if len(ranked) <= MAX_PATTERNS:
        return ranked, ""
    own = ranked[:MAX_PATTERNS - 1]
    return own, f"other ({len(ranked) - len(own)} patterns)"


def _error_bars(trials: Sequence[TrialRecord], colour: str) -> dict[str, Any]:
    return {"type": "data", "array": [_r(t.accuracy_se or 0.0) for t in trials],
            "visible": True, "thickness": 1, "width": 0, "color": colour}


def pareto_figure(snap: Snapshot, *, gl_threshold: int = GL_THRESHOLD) -> dict[str, Any]:
    """Full-model MACs (log) against validation accuracy with its standard error, one point per
    COMPLETE trial, coloured by mixer pattern; the front's members are ringed (certain:
    circles; within noise of another trial: diamonds) and, for (accuracy max, MACs min), joined
    by the front's staircase.

    The points' traces have ``meta == "trials"``; each point's ``customdata`` starts with its
    trial number. The rings are traces of their own on top (no hover, so a click reaches the
    point below): per-point symbols and outlines cost WebGL 0.6 s at 10,000 points. The hover
    label names the architecture; its mixer pattern is the trace's, sent once per trace rather
    than per point (at 10,000 points per-point labels were 2 MB of the page).

    Above ``gl_threshold`` points the scatter is WebGL, its points smaller and more
    transparent, and error bars are drawn on the front's members only (thousands of bars
    are an unreadable smear and the slowest part to draw); every hover label has its ± SE.
    The grey "other patterns" trace is drawn first, under the coloured ones.
    """
    objectives = ", ".join(str(o) for o in snap.objectives)
    title = f"{esc(snap.study.name)} · Pareto front over {esc(objectives)}"
    points = snap.plotted
    if not points:
        return empty_figure(f"{snap.study.name} · Pareto front", "no completed trials yet")
    kind = "scattergl" if len(points) > gl_threshold else "scatter"
    own, other = _patterns(snap, points)
    groups: dict[str, list[TrialRecord]] = {p: [] for p in own}
    if other:
        groups[other] = []
    for t in points:
        p = str(snap.features[t.number].get("mixer_pattern", "?"))
        groups[p if p in own else other].append(t)
    data: list[dict[str, Any]] = []
    for i, (pattern, ts) in enumerate(groups.items()):
        colour = PALETTE[i % len(PALETTE)] if pattern in own else _OTHER
        data.append({
            "type": kind, "mode": "markers", "name": esc(pattern), "meta": "trials",
            "x": [t.macs for t in ts], "y": [_r(t.accuracy) for t in ts],
            "customdata": [_hover_data(snap, t, pattern not in own) for t in ts],
            "hovertemplate": _hover_template(pattern if pattern in own else None),
            "marker": {"color": colour, "opacity": 0.85 if kind == "scatter" else 0.6,
                       "size": 7 if kind == "scatter" else 5},
            **({} if pattern in own else {"legendrank": 2000}),  # listed last, drawn first
        })
        if kind == "scatter":  # with thousands of points the bars are a smear: front only
            data[-1]["error_y"] = _error_bars(ts, colour)
    data.sort(key=lambda tr: tr.get("legendrank", 1000), reverse=True)
    front = [m.trial for m in snap.noisy.members]
    if {str(o) for o in snap.objectives} == {"accuracy:max", "macs:min"} and len(front) > 1:
        line = sorted(front, key=lambda t: t.macs)
        data.append({"type": "scatter", "mode": "lines", "name": "Pareto front",
                     "x": [t.macs for t in line], "y": [_r(t.accuracy) for t in line],
                     "line": {"shape": "hv", "color": _FRONT_LINE, "width": 1, "dash": "dot"},
                     "hoverinfo": "skip"})
    for status, symbol in (("certain", "circle-open"), ("within noise", "diamond-open")):
        ring = [t for t in front if snap.front_status[t.number] == status]
        data.append({"type": "scatter", "mode": "markers", "name": f"front: {status}",
                     "x": [t.macs for t in ring] or [None],
                     "y": [_r(t.accuracy) for t in ring] or [None], "hoverinfo": "skip",
                     "marker": {"symbol": symbol, "size": 13, "color": _FRONT_LINE,
                                "line": {"width": 2}},
                     **({"error_y": _error_bars(ring, _FRONT_LINE)}
                        if kind != "scatter" and ring else {})})
    annotations = []
    knee = snap.knee
    if knee is not None and knee.macs and knee.accuracy is not None:
        annotations.append({"x": math.log10(knee.macs), "y": knee.accuracy,
                            "text": f"knee #{knee.number}", "showarrow": True, "arrowhead": 2,
                            "ax": 30, "ay": 30})
    return {"data": data, "layout": _layout(
        title, uirevision=f"pareto:{snap.study.name}", hovermode="closest",
        annotations=annotations,
        legend={"title": {"text": "mixer pattern"}, "itemsizing": "constant",
                "orientation": "h", "y": -0.15, "yanchor": "top"},
        xaxis={"type": "log", "title": {"text": "full-model MACs (log)"}},
        yaxis={"title": {"text": "validation accuracy (proxy), ± SE"}})}


# --------------------------------------------------------------------------- panels


def hypervolume_figure(snap: Snapshot) -> dict[str, Any]:
    """Hypervolume after each evaluated trial (fraction of the ideal-to-reference box)."""
    hv = snap.hypervolume
    title = f"{snap.study.name} · hypervolume over trials" + (
        "" if snap.box is None else f" · given box: {snap.box.describe()}")
    if not len(hv["x"]):
        return empty_figure(title, "no completed trials yet")
    # only the steps: the curve is flat between improvements
    x, y = [int(v) for v in hv["x"]], [_r(v) for v in hv["y"]]
    keep = [i for i in range(len(x)) if i in (0, len(x) - 1) or y[i] != y[i - 1]]
    return {"data": [{"type": "scatter", "mode": "lines", "name": "hypervolume",
                      "x": [x[i] for i in keep], "y": [y[i] for i in keep],
                      "line": {"shape": "hv"},
                      "hovertemplate": "after %{x} trials: %{y:.4f}<extra></extra>"}],
            "layout": _layout(
                esc(title), uirevision=f"hv:{snap.study.name}", showlegend=False,
                xaxis={"title": {"text": "evaluated trials (completed, pruned or failed)"}},
                yaxis={"title": {"text": "hypervolume / box (ideal → reference)"},
                       "rangemode": "tozero"})}


def edf_figure(snap: Snapshot, choice: str) -> dict[str, Any]:
    """Error EDFs of the design choice ``choice`` at matched MACs (one line per value).

    Every curve is drawn over the same span, from 0 just left of the smallest error any value
    reached to 1 just right of the largest, so a value with one trial is a visible step and
    each curve's first step rises from 0, not from a floating start. The span does not leave
    [0, 1] unless an error is exactly 0 or 1 (its step would sit on the axis' edge).
    """
    e = snap.edf(choice)
    title = f"{snap.study.name} · error EDF by {choice}, at matched MACs"
    shown = [v for v in e.values if e.counts[v]]
    if not shown:
        return empty_figure(title, f"no completed trials share MACs bins across {choice}")
    lo = min(float(e.errors[v][0]) for v in shown)
    hi = max(float(e.errors[v][-1]) for v in shown)
    pad = max(0.02 * (hi - lo), 0.005)
    # errors lie in [0, 1]: the span stays inside it unless a step sits on 0 or 1 itself
    left = lo - pad if lo <= 0 else max(lo - pad, 0.0)
    right = hi + pad if hi >= 1 else min(hi + pad, 1.0)
    data = [{"type": "scatter", "mode": "lines", "line": {"shape": "hv"},
             "name": esc(f"{v} (n={e.counts[v]})"),
             "x": [_r(left), *(_r(x) for x in e.errors[v]), _r(right)],
             "y": [0.0, *(_r(y) for y in e.cdf[v]), 1.0]} for v in shown]
    dropped = (f"<br><sub>{e.dropped} trials outside the MACs bins every value shares are "
               "left out</sub>" if e.dropped else "")
    layout = _layout(esc(title) + dropped, uirevision=f"edf:{snap.study.name}:{choice}",
                     xaxis={"title": {"text": "error (1 − validation accuracy)"},
                            "range": [_r(left), _r(right)]},
                     yaxis={"title": {"text": "cumulative fraction of trials"},
                            "range": [0, 1.02]},
                     legend={"title": {"text": esc(choice)}})
    if dropped:
        layout["margin"] = {**_MARGIN, "t": 70}  # room for the second title line
    return {"data": data, "layout": layout}


def importance_figure(snap: Snapshot) -> dict[str, Any]:
    """Importance of each sampled parameter for the study's first objective."""
    imp = snap.importance
    title = (f"{snap.study.name} · parameter importance for {snap.importance_objective} "
             f"({snap.importance_evaluator})")
    if not imp:
        why = (f"needs 2 or more completed trials, a parameter that varies and "
               f"{snap.importance_objective.name} values that differ")
        return empty_figure(title, why)
    names = list(imp)[::-1]  # largest on top
    # a dot plot (a stem from 0 to each dot): the bundle we serve has no bar traces
    stems_x: list[float | None] = []
    stems_y: list[str | None] = []
    for n in names:
        stems_x += [0.0, _r(imp[n]), None]
        stems_y += [esc(n), esc(n), None]
    return {"data": [{"type": "scatter", "mode": "lines", "x": stems_x, "y": stems_y,
                      "line": {"color": PALETTE[0], "width": 3}, "hoverinfo": "skip"},
                     {"type": "scatter", "mode": "markers", "x": [_r(imp[n]) for n in names],
                      "y": [esc(n) for n in names], "marker": {"color": PALETTE[0], "size": 10},
                      "hovertemplate": "%{y}: %{x:.3f}<extra></extra>"}],
            "layout": _layout(esc(title), height=max(300, 60 + 28 * len(names)),
                              showlegend=False,
                              xaxis={"title": {"text": "importance (sums to 1)"},
                                     "rangemode": "tozero"},
                              yaxis={"automargin": True, "type": "category"})}


def curve_figure(t: TrialRecord) -> dict[str, Any]:
    """A trial's training curve: loss and accuracies per epoch, one line each per repeat."""
    curve = t.metrics.get("curve") or []
    title = f"trial #{t.number} · training curve"
    if not any(isinstance(r, list) and r for r in curve):
        return empty_figure(title, "no per-epoch results recorded")
    data = []
    series = (("train_loss", "train loss", "y", "solid"),
              ("train_accuracy", "train acc", "y2", "dot"),
              ("val_accuracy", "val acc", "y2", "solid"))
    for r, epochs in enumerate(curve):
        rows = [e for e in (epochs if isinstance(epochs, list) else []) if isinstance(e, dict)]
        for key, label, axis, dash in series:
            pts = [(e.get("epoch"), e.get(key)) for e in rows
                   if isinstance(e.get(key), (int, float)) and math.isfinite(e[key])]
            if pts:
                data.append({"type": "scatter", "mode": "lines+markers", "yaxis": axis,
                             "name": label if len(curve) == 1 else f"{label}, repeat {r}",
                             "x": [p[0] for p in pts], "y": [_r(p[1]) for p in pts],
                             "line": {"dash": dash}})
    return {"data": data, "layout": _layout(
        esc(title), height=320, xaxis={"title": {"text": "epoch"}, "dtick": 1},
        yaxis={"title": {"text": "loss (nats)"}},
        yaxis2={"title": {"text": "accuracy"}, "overlaying": "y", "side": "right",
                "range": [0, 1], "tickmode": "auto", "showgrid": False},
        legend={"orientation": "h", "y": -0.25})}
