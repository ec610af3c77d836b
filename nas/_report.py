"""The HTML report: ``python -m nas report`` writes one self-contained file of a study.

The same figures as the dashboard (:mod:`nas._figures`), plotly.js inlined once, no other
resource: it opens offline, from a mail attachment or a file share. Every text is escaped (the
figures escape theirs; the page's own with :func:`html.escape`). The database is opened
read-only.
"""

from __future__ import annotations

import html
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from db import RunRecord, Store, mask_url
from nas._figures import (
    edf_figure,
    hypervolume_figure,
    importance_figure,
    pareto_figure,
    plotly_js,
)
from nas._snapshot import Snapshot, arch_text, export_command, load_snapshot, run_rows
from nas.analysis import IDEAL_NEEDS_REFERENCE, given_box, twin_notes
from nas_errors import ConfigError

__all__ = ["write_report", "render_report"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 16px 24px; color: #222; max-width: 1300px; }
.muted { color: #666; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 16px 0; }
td, th { padding: 2px 10px; border-bottom: 1px solid #eee; text-align: left;
  vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 12px; background: #f6f6f6; padding: 1px 4px; word-break: break-all; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(600px, 1fr)); }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(v: float | None, spec: str, scale: float = 1.0) -> str:
    return "–" if v is None else format(v / scale, spec)


def _figure_html(fig: Any, div_id: str) -> str:
    import plotly.io as pio

    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True}, validate=False)


def _front_table(snap: Snapshot, masked_url: str) -> str:
    members = snap.noisy.members
    if not members:
        return "<p>No completed trials yet.</p>"
    head = ("<tr><th>#</th><th>front</th><th>val acc</th><th>± SE</th><th>test acc</th>"
            "<th>GMACs</th><th>params (M)</th><th>architecture</th><th>export</th></tr>")
    rows = []
    for m in members:
        t = m.trial
        status = "certain" if m.certain else \
            "within noise of " + ", ".join(f"#{n}" for n in m.tied_with[:8]) + \
            (" …" if len(m.tied_with) > 8 else "")
        twins = snap.twins.get(t.number, ())
        if twins:  # one proxy model for several full ones: the note under the table says more
            status += "; same proxy as " + ", ".join(f"#{n}" for n in twins[:8]) + \
                (" …" if len(twins) > 8 else "")
        rows.append(
            f"<tr><td class=num>{t.number}</td><td>{_e(status)}</td>"
            f"<td class=num>{_num(t.accuracy, '.4f')}</td>"
            f"<td class=num>{_num(t.accuracy_se, '.4f')}</td>"
            f"<td class=num>{_num(t.test_accuracy, '.4f')}</td>"
            f"<td class=num>{_num(t.macs, '.3f', 1e9)}</td>"
            f"<td class=num>{_num(t.params_count, '.2f', 1e6)}</td>"
            f"<td>{_e(arch_text(snap.features[t.number]))}</td>"
            f"<td><code>{_e(export_command(masked_url, snap.study.name, t.number))}</code></td>"
            "</tr>")
    notes = twin_notes((m.trial for m in members), snap.twins, snap.by_number)
    notes_html = "".join(f"<p class=muted>{_e(n)}</p>" for n in notes)
    return f"<table>{head}{''.join(rows)}</table>{notes_html}"


def _runs_table(snap: Snapshot, runs: Sequence[RunRecord]) -> str:
    from nas._run import lease_timing

    rows = run_rows(runs, snap.trials, stale_after_s=lease_timing()[1])
    if not rows:
        return "<p>No run is recorded for this study.</p>"
    head = ("<tr><th>run</th><th>outcome</th><th>started</th><th>wall</th><th>host:pid</th>"
            "<th>trials</th><th>command (as typed, password masked)</th><th>message</th></tr>")
    body = "".join(
        f"<tr><td class=num>#{r.id}</td><td>{_e(r.outcome)}</td><td>{_e(r.started)}</td>"
        f"<td class=num>{'running' if r.wall_s is None else f'{r.wall_s:.1f} s'}</td>"
        f"<td>{_e(r.where)}</td><td class=num>{r.trials}</td>"
        f"<td><code>{_e(r.command)}</code></td><td>{_e(r.message)}</td></tr>" for r in rows)
    return f"<table id=runs>{head}{body}</table>"


def render_report(snap: Snapshot, masked_url: str, runs: Sequence[RunRecord] = ()) -> str:
    """The report of ``snap`` as one HTML document (plotly.js inlined), with the study's
    ``runs`` (oldest first)."""
    study = snap.study
    counts = ", ".join(f"{n} {s}" for s, n in snap.counts.items()) or "no trials yet"
    knee = snap.knee
    hv = snap.hypervolume["final"]
    facts = [
        ("database", masked_url), ("space", study.space),
        ("objectives", ", ".join(str(o) for o in snap.objectives)),
        ("created", study.created_at.isoformat(timespec="seconds")),
        ("trials", f"{len(snap.trials)} ({counts})"),
        ("runs", f"{len(runs)} (listed at the end)" if runs else "none recorded"),
        ("front", f"{len(snap.noisy.members)} trials: {len(snap.noisy.certain)} certain, "
                  f"{len(snap.noisy.within_noise)} within noise (z = {snap.noisy.z:g})"),
        ("knee", "–" if knee is None else f"#{knee.number}"),
        ("hypervolume", "–" if hv is None else f"{hv:.4f} of the box from the ideal point "
                                               f"to the reference point" + (
                                                   f" (given: {snap.box.describe()})"
                                                   if snap.box is not None else "")),
        *(("", line) for line in (() if snap.box is None else snap.box.front_notes(
            study.name, snap.evaluated, (m.trial for m in snap.noisy.members)))),
        ("generated", datetime.now(timezone.utc).isoformat(timespec="seconds")),
    ]
    facts_html = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    edfs = "".join(_figure_html(edf_figure(snap, c), f"edf-{i}")
                   for i, c in enumerate(snap.choices))
    return "".join([
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>",
        f"<title>metaformer-nas report: {_e(study.name)}</title>",
        f"<style>{_CSS}</style><script>{plotly_js()}</script></head><body>",
        f"<h1 id=study-title>{_e(study.name)}</h1>",
        f"<table class=facts>{facts_html}</table>",
        _figure_html(pareto_figure(snap), "pareto"),
        "<h2>Pareto front</h2>", _front_table(snap, masked_url),
        "<h2>Hypervolume over trials</h2>", _figure_html(hypervolume_figure(snap), "hv"),
        "<h2>Parameter importance</h2>", _figure_html(importance_figure(snap), "importance"),
        "<h2>Design choices: error EDFs at matched MACs</h2>",
        f"<div class=grid>{edfs}</div>" if edfs else "<p>No design choice varies yet.</p>",
        "<h2>Runs</h2>", _runs_table(snap, runs),
        f"<p class=muted>{_SIGNATURE} "
        "Accuracies are the proxy's validation top-1; ± is its standard error.</p>",
        "</body></html>\n",
    ])


#: every report says so at its end; a file without it is never replaced unless forced
_SIGNATURE = "Written by <code>python -m nas report</code> (metaformer-nas)."
_REPORT_MAX_BYTES = 256 * 2**20  # larger than any report: not read to look for the signature


def _is_report(path: Path) -> bool:
    """Whether ``path`` is a regular file (not a link) that an earlier report wrote."""
    try:
        if path.is_symlink() or not path.is_file() or \
                path.stat().st_size > _REPORT_MAX_BYTES:
            return False
        return _SIGNATURE.encode() in path.read_bytes()
    except OSError:
        return False


def write_report(url: str, study: str, out: str | os.PathLike[str], *,
                 force: bool = False, reference: str | None = None,
                 ideal: str | None = None) -> tuple[Path, Snapshot]:
    """Write the report of ``study`` in the database ``url`` (opened read-only) to ``out``.

    ``reference`` (and ``ideal``) fix the hypervolume box (:func:`nas.analysis.given_box`);
    by default it comes from the study's trials.

    The file appears whole or not at all (written beside it, then renamed). A folder that does
    not exist, or cannot be written, is a one-line ConfigError; so is an ``out`` that exists
    and is not an earlier report (another file, or a link), unless ``force``.
    """
    target = Path(out).expanduser()
    if target.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"-o {out}: the report is one HTML file; give a name ending in .html "
                          "(or .htm)")
    if target.is_dir():
        raise ConfigError(f"-o {out} is a directory; give a file name ending in .html")
    if not target.parent.is_dir():
        raise ConfigError(f"-o {out}: the folder {str(target.parent)!r} does not exist")
    if (target.exists() or target.is_symlink()) and not force and not _is_report(target):
        what = "a link" if target.is_symlink() else "a file this command did not write"
        raise ConfigError(f"-o {out} exists and is {what}; choose another name, or pass "
                          "--force to replace it")
    if ideal is not None and reference is None:
        raise ConfigError(IDEAL_NEEDS_REFERENCE)
    with Store(url, read_only=True) as store:
        snap = load_snapshot(store, study)
        runs = store.runs(snap.study.id)
    if reference is not None:
        snap.box = given_box(snap.objectives, reference, ideal)  # (before anything reads it)
    text = render_report(snap, mask_url(url), runs)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary new file (mkstemp makes it private)
        os.replace(tmp, target)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"-o {out}: cannot write the report: {e.strerror or e}") from e
    return target, snap
