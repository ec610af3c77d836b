"""The dashboard's and the report's parts without a browser: snapshots and their cache, the
figures (points, front, escaping), the report's HTML, the export command."""

from __future__ import annotations

import dataclasses
import html
import re
import shlex
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from db import RunRecord, Store, StudyRecord, TrialRecord
from nas import analysis as A
from nas._dashboard import _covers, _Snapshots, _stamp
from nas._figures import (
    MAX_PATTERNS,
    PLOTLY_JS,
    curve_figure,
    edf_figure,
    empty_figure,
    hypervolume_figure,
    importance_figure,
    pareto_figure,
    plotly_js,
)
from nas._report import render_report
from nas._snapshot import Snapshot, export_command, load_snapshot
from nas_errors import ConfigError

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
HOSTILE = "<script>alert(1)</script>"
MIXERS = ["pooling", "sepconv", "attention", "ufo"]


def arch(mixers: list[str], depths=(2, 2, 4, 2)) -> dict:
    return {"family": "metaformer", "stages": [
        {"mixer": m, "depth": d, "width": 32 * 2 ** i, "act": "gelu", "norm": "ln_nobias"}
        for i, (m, d) in enumerate(zip(mixers, depths))]}


def rec(number: int, accuracy: float | None, gmacs: float | None, state: str = "COMPLETE", *,
        mixers: list[str] | None = None, params: dict | None = None, se: float = 0.01,
        error: str | None = None) -> TrialRecord:
    curve = [[{"epoch": e, "train_loss": 2.0 / e, "train_accuracy": 0.5,
               "val_accuracy": accuracy} for e in (1, 2)]] if accuracy is not None else []
    return TrialRecord(
        id=number + 1, study_id=1, number=number, key=f"k{number}", arch_hash=f"h{number}",
        arch=arch(mixers or MIXERS), params=params or {}, state=state, accuracy=accuracy,
        accuracy_se=se if accuracy is not None else None,
        test_accuracy=None if accuracy is None else accuracy - 0.01,
        macs=None if gmacs is None else int(gmacs * 1e9), params_count=10**6,
        metrics={"curve": curve}, error=error, started_at=T0,
        finished_at=None if state == "RUNNING" else T0 + timedelta(seconds=number),
        duration_s=1.0)


def study(name: str = "s", objectives=("accuracy:max", "macs:min")) -> StudyRecord:
    return StudyRecord(id=1, name=name, space="tiny", space_hash="h", objectives=objectives,
                       config={}, created_at=T0)


def random_trials(n: int, seed: int = 0, patterns: int = 4) -> list[TrialRecord]:
    rng = np.random.default_rng(seed)
    pats = [[MIXERS[(i + j) % 4] for j in range(4)] for i in range(4)]
    pats += [[MIXERS[i % 4], MIXERS[(i // 4) % 4], "attention", "attention"]
             for i in range(4, patterns)]
    out = []
    for i in range(n):
        state = rng.choice(["COMPLETE"] * 8 + ["FAIL", "PRUNED"])
        acc = float(rng.uniform(0.5, 0.8)) if state == "COMPLETE" else None
        out.append(rec(i, acc, float(rng.uniform(0.2, 5.0)), state, mixers=pats[i % patterns],
                       params={"width/base": int(rng.choice([32, 64])),
                               "stage3/mixer": pats[i % patterns][2]},
                       se=float(rng.choice([0.002, 0.02]))))
    return out


def trial_traces(fig: dict) -> list[dict]:
    return [t for t in fig["data"] if t.get("meta") == "trials"]


# --------------------------------------------------------------------------- the scatter


@pytest.mark.parametrize("n, kind", [(60, "scatter"), (300, "scattergl")])
def test_one_point_per_complete_trial_and_the_noisy_front_ringed(n: int, kind: str) -> None:
    trials = random_trials(n)
    snap = Snapshot(study(), trials)
    fig = pareto_figure(snap, gl_threshold=100)
    complete = sorted(t.number for t in trials if t.state == "COMPLETE")
    shown = sorted(c[0] for t in trial_traces(fig) for c in t["customdata"])
    assert shown == complete, f"expected the {len(complete)} COMPLETE trials, got {len(shown)}"
    assert {t["type"] for t in trial_traces(fig)} == {kind}
    for tr in trial_traces(fig):  # each point where its trial is
        for x, y, c in zip(tr["x"], tr["y"], tr["customdata"]):
            t = trials[c[0]]
            assert (x, y) == (t.macs, round(t.accuracy, 5)), (c[0], x, y)
    nf = A.noisy_front(trials, snap.objectives)
    rings = {t["name"]: t for t in fig["data"] if t["name"].startswith("front: ")}
    by_macs = {t.macs: t.number for t in trials if t.state == "COMPLETE"}
    for name, expected in (("front: certain", nf.certain), ("front: within noise",
                                                             nf.within_noise)):
        got = sorted(by_macs[x] for x in rings[name]["x"] if x is not None)
        assert got == sorted(t.number for t in expected), f"{name}: {got}"
        assert rings[name]["hoverinfo"] == "skip", "a ring must not take the point's click"
    line = next(t for t in fig["data"] if t["name"] == "Pareto front")
    assert sorted(by_macs[x] for x in line["x"]) == sorted(m.trial.number for m in nf.members)


def test_patterns_beyond_the_palette_share_one_grey_trace() -> None:
    trials = random_trials(120, patterns=MAX_PATTERNS + 3)
    fig = pareto_figure(Snapshot(study(), trials))
    names = [t["name"] for t in trial_traces(fig)]
    assert len(names) == MAX_PATTERNS and names[0] == "other (4 patterns)", names
    other = trial_traces(fig)[0]  # drawn first, under the coloured ones; listed last
    assert other["legendrank"] > max(t.get("legendrank", 1000) for t in trial_traces(fig)[1:])
    labels = {c[1].split(" · ")[0] for c in other["customdata"]}
    assert len(labels) == 4, f"the grey trace names each point's pattern; got {labels}"


def test_no_completed_trial_gives_an_empty_figure_not_an_error() -> None:
    snap = Snapshot(study(), [rec(0, None, 1.0, "FAIL"), rec(1, None, None, "RUNNING")])
    for fig in (pareto_figure(snap), hypervolume_figure(snap), importance_figure(snap)):
        assert fig["data"] == [] and fig["layout"]["annotations"], fig["layout"]["title"]
    assert snap.knee is None and snap.hypervolume["final"] is None


# --------------------------------------------------------------------------- escaping

_OURS = re.compile(r"<br>|<extra></extra>|</?sub>")


def _strings(node, path=""):
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            if k not in ("template", "uirevision"):  # Plotly's own; a key, never shown
                yield from _strings(v, f"{path}.{k}")
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _strings(v, f"{path}[{i}]")


def test_every_text_in_every_figure_is_escaped() -> None:
    bad = "<b>x</b>&<img src=y>"
    trials = [rec(i, 0.6 + i / 100, 1.0 + i, mixers=[bad, "sepconv", "attention", "ufo"],
                  params={bad: ["a", bad][i % 2], "width/base": [32, 64][i // 2 % 2]})
              for i in range(8)]
    trials.append(rec(8, 0.9, 20.0, mixers=["pooling"] * 4, params={bad: "a"}))
    snap = Snapshot(study(HOSTILE), trials)
    figures = {"pareto": pareto_figure(snap), "hv": hypervolume_figure(snap),
               "importance": importance_figure(snap), "curve": curve_figure(trials[0]),
               "empty": empty_figure(bad, bad)}
    figures.update({f"edf {c}": edf_figure(snap, c) for c in snap.choices})
    assert bad in snap.choices, snap.choices
    seen = []
    for name, fig in figures.items():
        for path, text in _strings(fig):
            assert "<" not in _OURS.sub("", text), f"{name}{path} is not escaped: {text!r}"
            seen.append(text)
    joined = "\n".join(seen)
    for raw in (HOSTILE, bad):  # they are there, as entities
        assert html.escape(raw) in joined, raw


def test_every_edf_curve_is_drawn_from_0_to_1_over_one_shared_span() -> None:
    # a value with one trial was a one-point line (nothing drawn), and each curve began at its
    # first step's height instead of rising from 0
    trials = [rec(0, 0.70, 1.0, mixers=["sepconv"] * 4),  # matched MACs: one bin
              *(rec(i, 0.50 + i / 100, 1.0, mixers=["sepconv"] * 3 + ["attention"])
                for i in range(1, 4))]
    snap = Snapshot(study(), trials)
    fig = edf_figure(snap, "mixer_pattern")
    curves = {tr["name"].split(" (n=")[0]: tr for tr in fig["data"]}
    assert set(curves) == {"sepconv/sepconv/sepconv/sepconv",
                           "sepconv/sepconv/sepconv/attention"}, curves
    lo, hi = fig["layout"]["xaxis"]["range"]
    for tr in curves.values():
        assert tr["y"][0] == 0.0 and tr["y"][-1] == 1.0 and tr["y"] == sorted(tr["y"]), tr
        assert tr["x"][0] == lo and tr["x"][-1] == hi and tr["x"] == sorted(tr["x"]), tr
    single = curves["sepconv/sepconv/sepconv/sepconv"]
    assert single["x"][1:-1] == [0.3] and single["y"] == [0.0, 1.0, 1.0]
    assert lo < 0.47 and hi > 0.3  # every step lies inside the axis, not on its edge


@pytest.mark.parametrize("accs, span", [((0.998, 0.99), (0.0, 0.015)),  # not below 0
                                        ((0.002, 0.01), (0.985, 1.0)),  # not above 1
                                        ((1.0, 0.99), (-0.005, 0.015))])  # a step on 0
def test_the_edf_span_stays_within_0_and_1_unless_a_step_is_on_the_edge(accs, span) -> None:
    trials = [rec(i, a, 1.0, mixers=["sepconv"] * 3 + [m])
              for i, (a, m) in enumerate(zip(accs, ["attention", "pooling"]))]
    fig = edf_figure(Snapshot(study(), trials), "mixer_pattern")
    assert fig["layout"]["xaxis"]["range"] == pytest.approx(list(span), abs=1e-4)


def test_export_command_quotes_every_part() -> None:
    cmd = export_command("postgresql://u:***@h/db", "it's $(rm -rf ~)", 7)
    assert shlex.split(cmd) == ["python", "-m", "nas", "export", "--db",
                                "postgresql://u:***@h/db", "--study", "it's $(rm -rf ~)",
                                "--trial", "7", "--out", "exports/it_s___rm_-rf___-7"]


@pytest.mark.parametrize("study, folder", [("search", "search"), ("a/../b", "a_.._b"),
                                           ("..", "_.."), ("/etc", "_etc"),
                                           ("ünï cödé", "_n__c_d_")])
def test_the_suggested_export_folder_is_one_folder_under_exports(study, folder) -> None:
    out = shlex.split(export_command("sqlite:///x.db", study, 3))[-1]
    assert out == f"exports/{folder}-3"


def test_report_is_one_offline_file_with_everything_escaped() -> None:
    trials = random_trials(40)
    snap = Snapshot(study(HOSTILE), trials)
    text = render_report(snap, "sqlite:////x/nas.db")
    assert HOSTILE not in text, "the study name must be escaped in the report"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    scripts = re.findall(r"<script\b[^>]*>", text)
    figures = 3 + len(snap.choices)  # pareto, hypervolume, importance, one EDF per choice
    assert len(scripts) == 1 + figures, f"plotly.js once, then one per figure; got {scripts}"
    assert not re.search(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=", text), \
        "the report must not load anything"
    assert plotly_js() in text and "plotly.js (gl2d - minified) v4.1.1" in text
    front = re.findall(r"--trial (\d+) ", text)
    assert sorted(map(int, front)) == sorted(m.trial.number for m in snap.noisy.members)


def test_a_study_whose_trials_all_score_the_same_has_a_report_without_importance() -> None:
    """Every completed trial equally accurate (e.g. `--objectives num_val:max`): fANOVA raised
    "zero total variance", so `report` exited 1 and the dashboard's Importance tab answered 500."""
    trials = [dataclasses.replace(t, accuracy=0.5) if t.state == "COMPLETE" else t
              for t in random_trials(12)]
    snap = Snapshot(study(), trials)
    assert snap.importance == {}
    fig = importance_figure(snap)
    assert fig["data"] == [] and "accuracy values that differ" in str(fig["layout"]), fig
    assert "Parameter importance" in render_report(snap, "sqlite:////x/nas.db")


def test_report_lists_the_study_runs_with_their_commands_escaped() -> None:
    trials = [dataclasses.replace(t, run_id=1 if t.number < 4 else 2) for t in random_trials(8)]
    now = datetime.now(timezone.utc)
    runs = [RunRecord(id=i, study_id=1, outcome=o, started_at=T0 + timedelta(minutes=i),
                      heartbeat_at=beat, ended_at=end, message=msg, config={}, db_url="x",
                      versions={}, argv=argv, host="node-1", pid=100 + i, pid_started=None)
            for i, o, beat, end, msg, argv in [
                (1, "interrupted", T0, T0 + timedelta(minutes=1, seconds=90.5), HOSTILE,
                 ("/x/run_search.py", "--space", "tiny", "--study", "a b")),
                (2, "running", now - timedelta(seconds=61), None, None, ("x",)),  # killed
                (3, "running", now, None, None, ("/y/__main__.py", "search", "--budget", "8"))]]
    text = render_report(Snapshot(study(), trials), "sqlite:////x/nas.db", runs)
    table = re.search(r"<table id=runs>(.*?)</table>", text).group(1)
    cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", table)]
    assert cells[:8] == ["#1", "interrupted", "2025-01-01 00:01 UTC", "90.5 s", "node-1:101",
                         "4", "<code>run_search.py --space tiny --study 'a b'</code>", HOSTILE]
    assert cells[8:15] == ["#2", "running", "2025-01-01 00:02 UTC", "running", "node-1:102",
                           "4", "<code>x</code>"], cells[8:16]
    assert re.fullmatch(r"no heartbeat for 6\d s: its process is probably gone; the next run "
                        r"of this study closes it and its running trials", cells[15]), cells[15]
    assert cells[16:] == ["#3", "running", "2025-01-01 00:03 UTC", "running", "node-1:103", "0",
                          "<code>python -m nas search --budget 8</code>", ""]
    assert HOSTILE not in text and "<tr><th>runs</th><td>3 (listed at the end)</td></tr>" in text
    assert "No run is recorded" in render_report(Snapshot(study(), trials), "sqlite:///x.db")


def test_the_vendored_plotly_bundle_is_the_recorded_one_and_draws_every_trace_type() -> None:
    import hashlib

    digest = hashlib.sha256(PLOTLY_JS.read_bytes()).hexdigest()
    assert digest == "3db1f8ca5c906266bd6ab2eeeef9e3c1e3f45c5844529657c3525ec2ad7c77e4", (
        f"{PLOTLY_JS.name} changed; see nas/_static/README.md")
    assert digest in (PLOTLY_JS.parent / "README.md").read_text()
    trials = random_trials(2500)  # above GL_THRESHOLD: scattergl
    trials[0].metrics["curve"] = [[{"epoch": 1, "train_loss": 1.0, "val_accuracy": 0.5}]]
    snap = Snapshot(study(), trials)
    figures = [pareto_figure(snap), pareto_figure(snap, gl_threshold=10**9),
               hypervolume_figure(snap), importance_figure(snap), curve_figure(trials[0]),
               *(edf_figure(snap, c) for c in snap.choices)]
    types = {tr.get("type", "scatter") for fig in figures for tr in fig["data"]}
    drawable = {"scatter", "scattergl"}
    assert types == drawable, f"the gl2d bundle has no {types - drawable}"


# --------------------------------------------------------------------------- snapshots


def test_hypervolume_curve_is_the_normalised_hypervolume() -> None:
    trials = random_trials(50, seed=3)
    snap = Snapshot(study(), trials)
    ev = snap.evaluated
    ref = A.reference_point(ev)
    expected = A.normalized_hypervolume(ev.losses, ref, ev.losses.min(axis=0))
    assert snap.hypervolume["final"] == pytest.approx(expected, rel=1e-12)
    y = hypervolume_figure(snap)["data"][0]["y"]
    assert y[-1] == round(expected, 5) and all(a <= b for a, b in zip(y, y[1:])), y


def test_snapshots_catch_up_only_when_the_study_changed(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    with Store(url) as w:
        s = w.get_or_create_study("s", space="tiny", space_hash="h",
                                  objectives=("accuracy:max", "macs:min"), config={})

        def trial(key: str, acc: float | None):
            t = w.start_trial(s.id, key=key, arch_hash=key * 16, arch=arch(MIXERS), params={})
            if acc is not None:
                w.finish_trial(t.id, state="COMPLETE", accuracy=acc, accuracy_se=0.01,
                               macs=int(acc * 1e10))
            return t

        trial("a", 0.6)
        running = trial("b", None)
        with Store(url, read_only=True) as ro:
            cache = _Snapshots(ro)
            old = _stamp(ro.activity()[0])
            first = cache.get(old)
            assert cache.get(old) is first, "an unchanged study must not be read again"
            w.finish_trial(running.id, state="COMPLETE", accuracy=0.65, accuracy_se=0.01,
                           macs=7 * 10**9)
            trial("c", 0.7)
            new = _stamp(ro.activity()[0])
            assert new != old
            second = cache.get(new)
            assert second is not first and len(second.plotted) == 3
            full = load_snapshot(ro, "s")
            assert second.trials == full.trials, "catching up must equal reading everything"
            assert second.activity == full.activity
            assert cache.get(old) is second, "a page holding the older stamp gets the newer"
            assert _covers(second.activity, old) and not _covers(first.activity, new)


@pytest.mark.parametrize("old_trials", [1, 5], ids=["fewer-before", "more-before"])
def test_a_replaced_file_is_read_anew_not_merged_into_the_cached_study(tmp_path,
                                                                       old_trials) -> None:
    """``mv other.db nas.db`` under an open dashboard: the study of the same name (same id and
    creation time: both files are copies of one) is read whole from the new file; before, its
    trials were merged into those cached from the old one, old accuracies and all."""
    import os
    import shutil

    db, new = tmp_path / "nas.db", tmp_path / "new.db"
    with Store(f"sqlite:///{db}") as w:
        w.get_or_create_study("s", space="tiny", space_hash="h",
                              objectives=("accuracy:max", "macs:min"), config={})
    shutil.copy(db, new)  # one study, twice
    for path, accuracies in ((db, [0.9] * old_trials), (new, [0.3, 0.35, 0.4])):
        with Store(f"sqlite:///{path}") as w:
            s = w.get_study("s")
            for i, acc in enumerate(accuracies):
                t = w.start_trial(s.id, key=f"k{i}", arch_hash=f"{i:016x}", arch=arch(MIXERS),
                                  params={})
                w.finish_trial(t.id, state="COMPLETE", accuracy=acc, accuracy_se=0.01,
                               macs=(i + 1) * 10**9)
    with Store(f"sqlite:///{db}", read_only=True) as ro:
        cache = _Snapshots(ro)
        before = cache.get(_stamp(ro.activity()[0]))
        assert [t.accuracy for t in before.trials] == [0.9] * old_trials
        os.replace(new, db)
        stamp = _stamp(ro.activity()[0])  # the page's poll: the store follows the new file
        after = cache.get(stamp)
        assert [t.accuracy for t in after.trials] == [0.3, 0.35, 0.4]
        assert after.trials == load_snapshot(ro, "s").trials
        assert cache.get(stamp) is after, "read anew once, then cached again"


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True),
                                            ("::1", True), ("[::1]", True),
                                            ("localhost", True), ("0.0.0.0", False),
                                            ("::", False), ("192.168.1.5", False),
                                            ("example.org", False)])
def test_only_loopback_addresses_skip_the_no_authentication_warning(host, loopback) -> None:
    from nas._dashboard import _is_loopback

    assert _is_loopback(host) is loopback


def _post(client, outputs: list[tuple[str, str]], inputs: list[tuple[str, str, object]],
          state: list[tuple[str, str, object]] = (), changed: object = None):
    """One Dash callback request, as the page sends it (``changed``: the input that fired,
    default the first; inputs in the callback's order)."""
    body = {"output": (".." + "...".join(f"{i}.{p}" for i, p in outputs) + "..")
            if len(outputs) > 1 else f"{outputs[0][0]}.{outputs[0][1]}",
            "outputs": [{"id": i, "property": p} for i, p in outputs]
            if len(outputs) > 1 else {"id": outputs[0][0], "property": outputs[0][1]},
            "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
            "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
            "changedPropIds": [changed or f"{inputs[0][0]}.{inputs[0][1]}"]}
    return client.post("/_dash-update-component", json=body)


def test_a_study_deleted_under_the_page_is_an_error_line_not_a_server_error(tmp_path) -> None:
    import sqlite3

    from nas._dashboard import make_app

    url = f"sqlite:///{tmp_path / 'nas.db'}"
    with Store(url) as w:
        s = w.get_or_create_study("gone", space="tiny", space_hash="h",
                                  objectives=("accuracy:max", "macs:min"), config={})
        for i in range(3):
            t = w.start_trial(s.id, key=f"k{i}", arch_hash=f"{i:016x}", arch=arch(MIXERS),
                              params={})
            w.finish_trial(t.id, state="COMPLETE", accuracy=0.6 + i / 100, accuracy_se=0.01,
                           macs=(i + 1) * 10**9)
    with Store(url, read_only=True) as ro:
        cache = _Snapshots(ro)
        app = make_app(ro, study="gone", snapshots=cache)
        client = app.server.test_client()
        stamp = _stamp(ro.activity()[0])
        cache.get(stamp)
        with sqlite3.connect(tmp_path / "nas.db") as con:  # as another tool might
            con.execute("DELETE FROM nas_trials WHERE study_id = ?", (s.id,))
            con.execute("DELETE FROM nas_runs WHERE study_id = ?", (s.id,))
            con.execute("DELETE FROM nas_studies WHERE id = ?", (s.id,))
        newer = [stamp[0], stamp[1] + 1, stamp[2] + 1, *stamp[3:]]  # a page that saw more
        for outputs, inputs in (
                ([("trial", "children")], [("selected", "data", {"study": "gone", "number": 0}),
                                           ("stamp", "data", newer)]),
                ([("grid", "rowData"), ("grid-study", "data")],
                 [("tabs", "value", "trials"), ("stamp", "data", newer)]),
                ([("hv", "figure")], [("tabs", "value", "hypervolume"),
                                      ("stamp", "data", newer)])):
            r = _post(client, outputs, inputs)
            assert r.status_code == 204, (outputs, r.status_code, r.data[:300])
        r = _post(client, [("studies", "children"), ("listed", "data"), ("stamp", "data"),
                           ("refreshed", "children"), ("error", "children"),
                           ("summary", "children"), ("pareto", "figure")],
                  [("poll", "n_intervals", 1), ("url", "search", "?study=gone")],
                  [("listed", "data", None), ("stamp", "data", stamp)])
        assert r.status_code == 200, r.data[:300]
        response = r.get_json()["response"]
        assert response["error"]["children"].startswith("no study named 'gone'"), response
        assert response["stamp"]["data"] is None


def test_requests_the_page_never_makes_are_client_errors_not_server_errors(tmp_path) -> None:
    """A path outside Dash's scripts (``../`` included), a callback body nested past the JSON
    parser's depth, one naming no callback or another callback's inputs, and values the page
    never holds are 4xx with one line, never 500 with a traceback; a real request still works."""
    from nas._dashboard import MAX_REQUEST_BYTES, make_app

    url = f"sqlite:///{tmp_path / 'nas.db'}"
    Store(url).close()
    with Store(url, read_only=True) as ro:
        client = make_app(ro).server.test_client()
        for path in ("/_dash-component-suites/../../etc/passwd",
                     "/_dash-component-suites/..%2f..%2fetc%2fpasswd",
                     "/_dash-component-suites/dash/..%2f..%2f..%2fetc%2fpasswd",
                     "/_dash-component-suites/dash/deps/nope.js",
                     "/_dash-component-suites/nopkg/x.js"):
            assert client.get(path).status_code == 404, path
        update = "/_dash-update-component"
        for body in ("[" * 100_000 + "]" * 100_000, "{not json", "[]", '{"output": "x"}',
                     '{"output": "hv.figure", "inputs": [], "changedPropIds": []}'):
            r = client.post(update, data=body, content_type="application/json")
            assert r.status_code == 400 and r.data.startswith(b"bad callback request: "), \
                (body[:40], r.status_code, r.data[:200])
        r = client.post(update, data="[" + " " * MAX_REQUEST_BYTES + "]",
                        content_type="application/json")
        assert r.status_code == 413
        hv = [("hv", "figure")]
        for inputs in ([("tabs", "value", 5), ("stamp", "data", None)],
                       [("tabs", "value", "runs"), ("stamp", "data", {"x": 1})],
                       [("tabs", "value", "runs"), ("stamp", "data", ["s", "1", 1, 1, None])],
                       [("stamp", "data", None), ("tabs", "value", "runs")]):
            r = _post(client, hv, inputs)
            assert r.status_code == 400, (inputs, r.status_code, r.data[:200])
        r = _post(client, [("trial", "children")], [("selected", "data", {"study": "s"}),
                                                    ("stamp", "data", None)])
        assert r.status_code == 400, r.data[:200]
        for changed in ([1], {"x": 1}, 7):  # unhashable ones crashed Dash (500, traceback)
            r = _post(client, hv, [("tabs", "value", "hypervolume"), ("stamp", "data", None)],
                      changed=changed)
            assert r.status_code == 400 and b"changedPropIds" in r.data, (changed, r.data[:200])
        r = _post(client, hv, [("tabs", "value", "hypervolume"), ("stamp", "data", None)])
        assert r.status_code == 200 and r.get_json()["response"]["hv"]["figure"] == {}


def test_quotes_are_numeric_entities_plotly_decodes() -> None:
    from nas._figures import esc

    assert esc('<a b="c">it\'s & x</a>') == "&lt;a b=&#34;c&#34;&gt;it&#39;s &amp; x&lt;/a&gt;"


def test_the_table_never_answers_for_another_study(tmp_path) -> None:
    """Rows go with their study; a click on a row of the study shown before opens nothing;
    with no study shown, every panel is emptied."""
    from nas._dashboard import make_app

    url = f"sqlite:///{tmp_path / 'nas.db'}"
    with Store(url) as w:
        for name in ("one", "two"):
            s = w.get_or_create_study(name, space="tiny", space_hash="h",
                                      objectives=("accuracy:max", "macs:min"), config={})
            t = w.start_trial(s.id, key=name, arch_hash=name * 8, arch=arch(MIXERS), params={})
            w.finish_trial(t.id, state="COMPLETE", accuracy=0.6, accuracy_se=0.01, macs=10**9)
    with Store(url, read_only=True) as ro:
        client = make_app(ro).server.test_client()
        stamps = {a.name: _stamp(a) for a in ro.activity()}
        grid = [("grid", "rowData"), ("grid-study", "data")]
        r = _post(client, grid, [("tabs", "value", "trials"), ("stamp", "data", stamps["two"])])
        rows, study = r.get_json()["response"]["grid"]["rowData"], \
            r.get_json()["response"]["grid-study"]["data"]
        assert [row["number"] for row in rows] == [0] and study == "two"
        for tab, stamp in (("hypervolume", stamps["two"]), ("trials", None)):
            r = _post(client, grid, [("tabs", "value", tab), ("stamp", "data", stamp)])
            got = r.get_json()["response"]
            assert got["grid"]["rowData"] == [] and got["grid-study"]["data"] is None, got

        def click(grid_study, row="0", point=None):
            return _post(client, [("selected", "data")],
                         [("pareto", "clickData", point),
                          ("grid", "cellClicked", {"rowId": row, "colId": "number"})],
                         [("stamp", "data", stamps["two"]), ("grid-study", "data", grid_study)],
                         changed="pareto.clickData" if point else "grid.cellClicked")

        assert click("one").get_json()["response"] == {}, "a stale row must open no trial"
        # numbers the page never sends (1e400 is valid JSON and reads as inf): no trial, no 500
        for row, point in ((float("inf"), None), ("0", {"points": [{"customdata": [1e400]}]}),
                           (float("nan"), None), ([0], None)):
            r = click("two", row, point)
            assert r.status_code == 200 and r.get_json()["response"] == {}, (row, point, r.data)
        r = click("two")
        assert r.get_json()["response"]["selected"]["data"] == {"study": "two", "number": 0}
        r = _post(client, [("hv", "figure")], [("tabs", "value", "hypervolume"),
                                               ("stamp", "data", None)])
        assert r.get_json()["response"]["hv"]["figure"] == {}, "no study: the panel is emptied"


def test_the_trial_panel_says_which_node_a_trial_ran_on():
    import dataclasses

    from nas._dashboard import _trial_panel

    where = {"host": "gpu7", "node_ip": "10.0.0.7", "pid": 42, "ray_node_id": "ab12" * 14,
             "gpu_ids": ["0", "3"]}
    t = rec(0, 0.8, 1.0)
    ran = dataclasses.replace(t, metrics={**t.metrics, "worker": where})

    def rows(node) -> dict[str, str]:  # every table row of the panel: header -> cell
        found, kids = {}, getattr(node, "children", node)
        if type(node).__name__ == "Tr":
            found[kids[0].children] = kids[1].children
        for kid in kids if isinstance(kids, list) else []:
            found.update(rows(kid))
        return found

    for trial, shown in ((ran, "gpu7 (10.0.0.7) node ab12ab12, GPU 0,3"), (rec(0, 0.8, 1.0), "–")):
        panel = _trial_panel(Snapshot(study(), [trial]), 0, "sqlite:///x.db")
        assert rows(panel)["ran on"] == shown


def test_stalled_connections_neither_lock_the_page_out_nor_stay_open(tmp_path) -> None:
    """Sockets that send half a request and go quiet: past waitress's default of 100 every
    client waited until they timed out (two minutes). 150 of them leave the page served at once,
    and a quiet connection is closed after the idle limit (2 s here; IDLE_TIMEOUT_S in use)."""
    import resource
    import socket
    import threading
    import time
    import urllib.request

    from nas._dashboard import IDLE_TIMEOUT_S, _make_server, make_app

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 1024:  # the server then takes soft // 2
        pytest.skip(f"needs a file-descriptor limit of 1024 or more (ulimit -n: {soft})")
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    Store(url).close()
    with Store(url, read_only=True) as ro:
        app = make_app(ro).server
        for idle_s in (IDLE_TIMEOUT_S, 2):
            server = _make_server(app, "127.0.0.1", 0, 4, idle_timeout_s=idle_s)
            port = server.effective_port
            stop = threading.Event()

            def loop(server=server, stop=stop) -> None:  # server.run(), but one that stops:
                while not stop.is_set():  # closing its socket under run() broke its select
                    server.asyncore.loop(timeout=0.05, map=server._map, count=1)

            runner = threading.Thread(target=loop, daemon=True)
            runner.start()
            stalled = []
            try:
                for _ in range(150 if idle_s == IDLE_TIMEOUT_S else 1):
                    s = socket.create_connection(("127.0.0.1", port), timeout=10)
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # no blank line: incomplete
                    stalled.append(s)
                t0 = time.monotonic()
                if idle_s == IDLE_TIMEOUT_S:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:
                        assert r.status == 200 and b"_dash-config" in r.read()
                    assert time.monotonic() - t0 < 5, "the stalled sockets locked the page out"
                else:
                    stalled[0].settimeout(15)
                    assert stalled[0].recv(1) == b"", "a quiet connection must be closed"
                    assert time.monotonic() - t0 < 6
            finally:
                for s in stalled:
                    s.close()
                stop.set()
                runner.join(timeout=10)
                server.close()


def test_a_given_box_applies_to_the_studies_whose_objectives_it_names(tmp_path) -> None:
    """dashboard --reference: the hypervolume curve of a study over accuracy and MACs is the
    fraction of the given box (as pareto and report compute it), and says so in its title; a
    study over other objectives keeps the data rule."""
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    with Store(url) as w:
        for name, objectives in (("am", ("accuracy:max", "macs:min")),
                                 ("ap", ("accuracy:max", "params:min"))):
            s = w.get_or_create_study(name, space="tiny", space_hash="h",
                                      objectives=objectives, config={})
            for i, acc in enumerate((0.5, 0.6, 0.7)):
                t = w.start_trial(s.id, key=f"{name}{i}", arch_hash=f"{name}{i}" * 8,
                                  arch=arch(MIXERS), params={})
                w.finish_trial(t.id, state="COMPLETE", accuracy=acc, accuracy_se=0.01,
                               macs=(i + 1) * 10**9, params_count=(i + 1) * 10**6)
    with Store(url, read_only=True) as ro:
        cache = _Snapshots(ro, reference="accuracy=0.4,macs=5e9")
        am = cache.get(_stamp(next(a for a in ro.activity() if a.name == "am")))
        ap = cache.get(_stamp(next(a for a in ro.activity() if a.name == "ap")))
        box = A.given_box(("accuracy:max", "macs:min"), "accuracy=0.4,macs=5e9")
        assert am.box is not None and am.box.describe() == box.describe()
        assert am.hypervolume["final"] == pytest.approx(box.fraction(am.evaluated.losses))
        assert "given box: accuracy 1 -&gt; 0.4, macs 0 -&gt; 5000000000" in \
            hypervolume_figure(am)["layout"]["title"]["text"]
        assert ap.box is None and ap.hypervolume["final"] == pytest.approx(
            A.data_box(ap.evaluated).fraction(ap.evaluated.losses))
        _Snapshots(ro, reference="accuracy=0.4,macs=5e9").check_box("am")
        with pytest.raises(ConfigError, match=r"'macs' is not an objective here; the "
                                              r"objectives are accuracy, params \(study 'ap'\)"):
            _Snapshots(ro, reference="accuracy=0.4,macs=5e9").check_box("ap")


def test_a_pruned_trial_shows_the_costs_its_rung_ranked_it_on() -> None:
    """A stopped trial's macs column stays empty (it is no result), but its MACs are known:
    the table showed none, though the search had printed them."""
    pruned = dataclasses.replace(
        rec(1, None, None, "PRUNED"), params_count=None,
        metrics={"pruned_at_epoch": 1, "pruned_costs": {"macs": 29_000_000, "params": 1.5e6}})
    plain = dataclasses.replace(rec(2, None, None, "PRUNED"), params_count=None)
    snap = Snapshot(study(), [rec(0, 0.6, 1.0), pruned, plain])
    rows = {r["number"]: r for r in map(snap.row, snap.trials)}
    assert (rows[1]["gmacs"], rows[1]["mparams"]) == (0.029, 1.5)
    assert A.known_cost(pruned, "params") == 1_500_000 and \
        type(A.known_cost(pruned, "params")) is int  # (stored as 1.5e6: trials.csv said .0)
    assert (rows[2]["gmacs"], rows[2]["mparams"]) == (None, None)
    assert rows[0]["gmacs"] == 1.0 and A.known_cost(pruned, "latency_ms") is None
    assert [t.number for t in snap.plotted] == [0], "a pruned trial is never a point"
