"""The live dashboard: ``python -m nas dashboard`` (Dash, served by waitress).

Read-only on the database (``Store(read_only=True)``); bound to 127.0.0.1 unless ``--host``
says otherwise; every script comes from the installed packages (Dash, Plotly, AG Grid), so it
works offline. A poll every ``refresh_s`` asks the database one cheap question
(``Store.activity()``); only when a study's trials changed is it reloaded, into a
:class:`nas._snapshot.Snapshot` kept per study, whose expensive panels (hypervolume curve,
EDFs, importance) are computed when their tab is opened.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote

from db import StorageError, Store, StudyActivity, mask_url
from nas import analysis
from nas._figures import (
    PLOTLY_JS,
    curve_figure,
    edf_figure,
    empty_figure,
    hypervolume_figure,
    importance_figure,
    pareto_figure,
)
from nas._snapshot import Snapshot, arch_text, export_command, load_snapshot, run_rows
from nas.results import Objective, parse_objectives, worker_label
from nas_errors import ConfigError, printable

__all__ = ["serve", "make_app"]

_KEEP = 4  # studies whose snapshot is kept in memory
_LOOPBACK = ("localhost",)


def _is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: nobody else can reach the page."""
    import ipaddress

    if host in _LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
_GRAPH_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}
_PLACEHOLDER = "Click a point of the scatter or a row of the table to open its trial."

_COLUMNS = [  # the trial table: field, header, kind (number format or text)
    ("number", "#", "int"), ("state", "state", "text"), ("front", "front", "text"),
    ("accuracy", "val acc", ".4f"), ("accuracy_se", "± SE", ".4f"),
    ("test_accuracy", "test acc", ".4f"), ("gmacs", "GMACs", ".3f"),
    ("mparams", "params (M)", ".2f"), ("mixers", "mixer pattern", "text"),
    ("depths", "depths", "text"), ("widths", "widths", "text"),
    ("duration_s", "seconds", ".1f"), ("error", "error", "text"),
]


def _stamp(a: StudyActivity) -> list[Any]:
    """A study's activity as JSON (what the page holds to tell a change)."""
    return [a.name, a.trials, a.finished, a.complete,
            None if a.last_finished_at is None else a.last_finished_at.isoformat()]


def _covers(a: StudyActivity, stamp: list[Any]) -> bool:
    """Whether a snapshot taken at ``a`` is at least as new as ``stamp`` (trials are only ever
    added and finished, so a page still holding an older stamp is answered from the newer)."""
    return _stamp(a) == stamp or (a.trials >= stamp[1] and a.finished >= stamp[2]
                                  and (a.trials, a.finished) != (stamp[1], stamp[2]))


class _Snapshots:
    """One snapshot per study (the last few), brought up to date only when the study's activity
    changed, by reading its new and running trials."""

    def __init__(self, store: Store, keep: int = _KEEP, *, reference: str | None = None,
                 ideal: str | None = None) -> None:
        self._store = store
        self._keep = keep
        self._box_spec = (reference, ideal)  # --reference, --ideal: a box for every study
        # whose objectives they name; the others keep the data rule
        self._lock = threading.Lock()  # one load at a time: callbacks arrive together
        self._cache: OrderedDict[str, Snapshot] = OrderedDict()

    def get(self, stamp: list[Any]) -> Snapshot:
        """The snapshot of the study in ``stamp`` (see :func:`_stamp`), as new as that stamp."""
        study = stamp[0]
        with self._lock:
            snap = self._cache.get(study)
            generation = self._store.file_generation  # (the stamp's poll followed any mv)
            if snap is not None and snap.generation != generation:
                snap = None  # the SQLite file was replaced: nothing cached is of the new one
            if snap is not None and not _covers(snap.activity, stamp):
                snap = snap.refreshed(self._store)  # only the new and the running trials
                if (not _covers(snap.activity, stamp)  # changed behind the store's back,
                        or self._store.file_generation != generation  # in another file,
                        or any(t.study_id != snap.study.id for t in snap.trials)):  # study
                    snap = None
            for _ in range(3):  # a file replaced while loading is loaded again
                if snap is not None:
                    break
                generation = self._store.file_generation
                snap = load_snapshot(self._store, study)
                if self._store.file_generation != generation:
                    snap = None
                    continue
                snap.generation = generation
                snap.box = self.box_for(snap.objectives)  # (before anything reads it)
            if snap is None:
                raise StorageError(f"the database file of study {study!r} kept being replaced "
                                   "while it was read; try again")
            self._cache[study] = snap
            self._cache.move_to_end(study)
            while len(self._cache) > self._keep:
                self._cache.popitem(last=False)
            return snap

    def box_for(self, objectives: Sequence[Objective]) -> analysis.Box | None:
        """The given box over ``objectives``; None without --reference, or for objectives it
        does not fit (another study's: that study keeps the data rule)."""
        reference, ideal = self._box_spec
        if reference is None:
            return None
        try:
            return analysis.given_box(objectives, reference, ideal)
        except ValueError:
            return None

    def check_box(self, study: str | None) -> None:
        """A ConfigError in one line when --reference/--ideal do not make a box over the
        objectives of ``study`` (default: the newest), the study the page opens on."""
        reference, ideal = self._box_spec
        if ideal is not None and reference is None:
            raise ConfigError(analysis.IDEAL_NEEDS_REFERENCE)
        if reference is None:
            return
        names = [study] if study else [a.name for a in self._store.activity()[-1:]]
        for name in names:
            objectives = parse_objectives(list(self._store.get_study(name).objectives))
            try:
                analysis.given_box(objectives, reference, ideal)
            except ConfigError as e:
                raise ConfigError(f"{e} (study {printable(repr(name))})") from None

    def warm(self, study: str | None) -> None:
        """Read and analyse ``study`` (default: the newest), as the first page will ask."""
        try:
            activity = self._store.activity()
            match = [a for a in activity if a.name == study] if study else activity[-1:]
            if match:
                snap = self.get(_stamp(match[0]))
                snap.memo("pareto", lambda: pareto_figure(snap))
                snap.memo("hv", lambda: hypervolume_figure(snap))  # the tab open first
        except StorageError:
            pass  # the page will say what is wrong


# --------------------------------------------------------------------------- layout


def _studies_table(activity: list[StudyActivity], current: str | None) -> Any:
    from dash import dcc, html

    if not activity:
        return html.P("No studies in this database yet.")
    head = html.Tr([html.Th(h) for h in ("study", "trials", "complete", "last finished")])
    rows = []
    for a in reversed(activity):  # newest first
        last = "–" if a.last_finished_at is None else \
            a.last_finished_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        style = {"fontWeight": "bold"} if a.name == current else {}
        rows.append(html.Tr([
            html.Td(dcc.Link(a.name, href=f"?study={quote(a.name, safe='')}",
                             className="study-link"), style=style),
            html.Td(a.trials), html.Td(a.complete), html.Td(last)]))
    return html.Table([html.Thead(head), html.Tbody(rows)], className="studies")


def _summary(snap: Snapshot) -> Any:
    from dash import html

    counts = " · ".join(f"{n} {s}" for s, n in snap.counts.items()) or "no trials yet"
    noisy = snap.noisy
    front = (f"front {len(noisy.members)} ({len(noisy.certain)} certain, "
             f"{len(noisy.within_noise)} within noise at z = {noisy.z:g})")
    knee = f"knee #{snap.knee.number}" if snap.knee is not None else "no knee yet"
    space = snap.study.space
    objectives = ", ".join(str(o) for o in snap.objectives)
    return [html.H2(snap.study.name, id="study-title"),
            html.Div(f"space {space} · objectives {objectives}", className="muted"),
            html.Div(f"{len(snap.trials)} trials: {counts} · {front} · {knee}",
                     id="study-summary")]


def _runs_panel(store: Store, snap: Snapshot) -> Any:
    """The study's runs (read now: a run can end without changing a trial), oldest first."""
    from dash import html

    from nas._run import lease_timing

    try:
        rows = run_rows(store.runs(snap.study.id), snap.trials, stale_after_s=lease_timing()[1])
    except StorageError as e:
        return html.P(f"database error: {e}", style={"color": "#b00020"})
    if not rows:
        return html.P("No run is recorded for this study.")
    head = html.Tr([html.Th(h) for h in ("run", "outcome", "started", "wall", "host:pid",
                                         "trials", "command (as typed, password masked)",
                                         "message")])
    body = [html.Tr([html.Td(f"#{r.id}"), html.Td(r.outcome), html.Td(r.started),
                     html.Td("running" if r.wall_s is None else f"{r.wall_s:.1f} s"),
                     html.Td(r.where), html.Td(r.trials), html.Td(html.Code(r.command)),
                     html.Td(r.message)]) for r in rows]
    return html.Table([html.Thead(head), html.Tbody(body)], className="studies",
                      id="runs-table")


def _value_table(pairs: list[tuple[str, Any]]) -> Any:
    from dash import html

    return html.Table([html.Tr([html.Th(k), html.Td("–" if v is None else str(v))])
                       for k, v in pairs], className="values")


def _num(v: Any, spec: str, scale: float = 1.0) -> str | None:
    return None if not isinstance(v, (int, float)) else format(v / scale, spec)


def _trial_panel(snap: Snapshot, number: int, masked_url: str) -> Any:
    import json

    from dash import dcc, html

    t = snap.by_number.get(number)
    if t is None:
        return html.P(f"Trial #{number} is not in study {snap.study.name}.")
    m = t.metrics
    status = snap.front_status.get(t.number)
    costs = [("val accuracy", _num(t.accuracy, ".4f")), ("± SE", _num(t.accuracy_se, ".4f")),
             ("test accuracy", _num(t.test_accuracy, ".4f")),
             ("full-model GMACs", _num(t.macs, ".3f", 1e9)),
             ("full-model params (M)", _num(t.params_count, ".3f", 1e6)),
             ("activations (M)", _num(m.get("acts"), ".2f", 1e6)),
             ("proxy MMACs", _num(m.get("proxy_macs"), ".2f", 1e6)),
             ("proxy params (K)", _num(m.get("proxy_params"), ".1f", 1e3)),
             ("repeats", m.get("repeats")), ("device", m.get("device")),
             ("ran on", worker_label(m["worker"]) if m.get("worker") else None),
             ("trial seconds", _num(t.duration_s, ".1f")),
             ("training seconds", _num(m.get("train_seconds"), ".1f")),
             ("started", t.started_at.isoformat(timespec="seconds")),
             ("finished", None if t.finished_at is None
              else t.finished_at.isoformat(timespec="seconds"))]
    command = export_command(masked_url, snap.study.name, t.number)
    children = [
        html.H3(f"Trial #{t.number} · {t.state}" + (f" · front: {status}" if status else ""),
                id="trial-title"),
        html.Div(arch_text(snap.features[t.number]), className="arch"),
    ]
    if t.error:
        children.append(html.Pre(t.error, className="error"))
    twin = snap.twin_note(t)
    if twin:
        children.append(html.Div(twin, className="muted", id="trial-twins"))
    children += [
        dcc.Graph(figure=curve_figure(t), config=_GRAPH_CONFIG, id="trial-curve"),
        html.H4("Costs and results"), _value_table(costs),
        html.H4("Configuration (sampled parameters)"),
        _value_table(sorted(t.params.items())) if t.params else html.P("none"),
        html.Details([html.Summary(f"architecture (hash {t.arch_hash})"),
                      html.Pre(json.dumps(t.arch, indent=1, sort_keys=True))]),
        html.H4("Export"),
        html.Div([html.Pre(command, id="export-command"),
                  dcc.Clipboard(target_id="export-command", title="copy")],
                 className="export"),
    ]
    return children


_CSS = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; }
.page { padding: 10px 18px; }
.muted, .header { color: #666; font-size: 13px; }
table.studies, table.values { border-collapse: collapse; font-size: 13px; }
table.studies td, table.studies th, table.values td, table.values th {
  padding: 2px 10px; border-bottom: 1px solid #eee; text-align: left; }
.row { display: flex; gap: 12px; align-items: flex-start; }
.main { flex: 3; min-width: 0; } .side { flex: 2; min-width: 0; max-height: 640px;
  overflow-y: auto; border-left: 1px solid #ddd; padding-left: 12px; }
pre { white-space: pre-wrap; word-break: break-all; font-size: 12px; background: #f6f6f6;
  padding: 6px; } pre.error { background: #fdecea; }
.export { display: flex; gap: 6px; align-items: flex-start; }
h2 { margin: 10px 0 2px 0; } h3 { margin: 6px 0; } h4 { margin: 10px 0 4px 0; }
"""

#: where the page gets plotly.js: our partial bundle (``nas._figures.PLOTLY_JS``), versioned
_PLOTLY_PATH = f"/_nas/{PLOTLY_JS.name}"
#: Dash's graphs load plotly.js from ``window._dashPlotlyJSURL`` (the full 4.8 MB bundle, set by
#: the renderer when it starts); this points it at ours and ignores the renderer's value
_PLOTLY_URL_JS = ('<script>Object.defineProperty(window, "_dashPlotlyJSURL", '
                  '{get() { return "%s"; }, set(v) {}, configurable: true});</script>')

_INDEX = """<!DOCTYPE html>
<html>
<head>{%metas%}<title>{%title%}</title>{%favicon%}{%css%}<style>""" + _CSS + """</style>
{plotly_url}</head>
<body>{%app_entry%}<footer>{%config%}{%scripts%}{%renderer%}</footer></body>
</html>"""


def _layout(masked_url: str, refresh_s: float) -> Any:
    import dash_ag_grid as dag
    from dash import dcc, html

    widths = {"state": 120, "front": 120, "mixers": 300, "depths": 100, "widths": 140,
              "error": 260}

    def column(field: str, header: str, kind: str) -> dict[str, Any]:
        col: dict[str, Any] = {"field": field, "headerName": header,
                               "minWidth": widths.get(field, 90)}
        if kind == "text":
            col["filter"] = "agTextColumnFilter"
        else:
            col["filter"] = "agNumberColumnFilter"
            col["type"] = "numericColumn"
            if kind != "int":
                col["valueFormatter"] = {
                    "function": f"params.value == null ? '' : d3.format('{kind}')(params.value)"}
        return col

    grid = dag.AgGrid(
        id="grid", rowData=[], columnDefs=[column(*c) for c in _COLUMNS],
        defaultColDef={"sortable": True, "filter": True, "floatingFilter": True,
                       "resizable": True},
        getRowId="params.data.number.toString()", columnSize="responsiveSizeToFit",
        dashGridOptions={"animateRows": False, "tooltipShowDelay": 300},
        style={"height": "460px", "width": "100%"})
    # the hypervolume curve first: the trial table (AG Grid) costs a first visit ~0.4 s of
    # the browser's time, so it is built when its tab is opened
    tabs = dcc.Tabs(id="tabs", value="hypervolume", children=[
        dcc.Tab(label="Hypervolume", value="hypervolume", children=[
            dcc.Loading(dcc.Graph(id="hv", config=_GRAPH_CONFIG))]),
        dcc.Tab(label="Trials", value="trials", children=[grid]),
        dcc.Tab(label="Design EDFs", value="edf", children=[
            html.Div([html.Label("design choice "),
                      dcc.Dropdown(id="edf-choice", clearable=False,
                                   style={"width": "360px"})], className="row"),
            dcc.Loading(dcc.Graph(id="edf", config=_GRAPH_CONFIG))]),
        dcc.Tab(label="Importance", value="importance", children=[
            dcc.Loading(dcc.Graph(id="importance", config=_GRAPH_CONFIG))]),
        dcc.Tab(label="Runs", value="runs", children=[html.Div(id="runs")]),
    ])
    return html.Div([
        dcc.Location(id="url", refresh=False),
        dcc.Interval(id="poll", interval=int(refresh_s * 1000)),
        dcc.Store(id="listed"), dcc.Store(id="stamp"), dcc.Store(id="selected"),
        dcc.Store(id="grid-study"),  # the study whose rows the table holds
        html.Div([html.B("metaformer-nas dashboard"),
                  f" · {masked_url} (read-only) · refreshed every {refresh_s:g} s · ",
                  html.Span(id="refreshed")], className="header"),
        html.Div(id="error", style={"color": "#b00020"}),
        html.Details([html.Summary("studies"), html.Div(id="studies")], open=True),
        html.Div(id="summary"),
        html.Div([
            html.Div(dcc.Graph(id="pareto", config=_GRAPH_CONFIG,
                               style={"height": "600px"}), className="main"),
            html.Div(html.P(_PLACEHOLDER), id="trial", className="side"),
        ], className="row"),
        tabs,
    ], className="page")


# --------------------------------------------------------------------------- the app


def make_app(store: Store, *, refresh_s: float = 5.0, study: str | None = None,
             snapshots: _Snapshots | None = None) -> Any:
    """The Dash app over ``store`` (a read-only :class:`db.Store`); ``study`` is shown first
    (default: the newest study)."""
    import dash
    from dash import Input, Output, State, ctx, html, no_update
    from dash.exceptions import PreventUpdate

    masked = mask_url(store.url)
    snapshots = snapshots or _Snapshots(store)
    app = dash.Dash(__name__, serve_locally=True, title="metaformer-nas dashboard",
                    update_title=None, include_assets_files=False, compress=False,
                    enable_mcp=False)
    app.index_string = _INDEX.replace(
        "{plotly_url}", _PLOTLY_URL_JS % app.get_relative_path(_PLOTLY_PATH))
    app.layout = _layout(masked, refresh_s)

    _guard_requests(app)

    @app.server.route(_PLOTLY_PATH)
    def plotly_js():  # versioned name: cached for a year
        from flask import send_file

        return send_file(PLOTLY_JS, mimetype="text/javascript", max_age=365 * 86400)

    @app.callback(Output("studies", "children"), Output("listed", "data"),
                  Output("stamp", "data"), Output("refreshed", "children"),
                  Output("error", "children"), Output("summary", "children"),
                  Output("pareto", "figure"),
                  Input("poll", "n_intervals"), Input("url", "search"),
                  State("listed", "data"), State("stamp", "data"))
    def refresh(_n, search, listed, old):
        """Every poll: one cheap query; the study's panels only when its trials changed."""
        now = datetime.now().strftime("%H:%M:%S")
        try:
            activity = store.activity()
        except StorageError as e:
            return (no_update, no_update, no_update, now, f"database error: {e}",
                    no_update, no_update)
        names = [a.name for a in activity]
        wanted = (parse_qs((search or "").lstrip("?")).get("study") or [None])[0]
        current = wanted or study or (names[-1] if names else None)
        error = ""
        if current is not None and current not in names:
            error, current = f"no study named {current!r} in {masked}", None
        new_list = [current, *map(_stamp, activity)]
        table = no_update if new_list == listed else _studies_table(activity, current)
        if current is None:
            return table, new_list, None, now, error, html.Div(), {}
        stamp = _stamp(activity[names.index(current)])
        if stamp == old:
            return table, new_list, no_update, now, error, no_update, no_update
        try:
            snap = snapshots.get(stamp)
        except StorageError as e:  # e.g. the study was deleted since activity() listed it
            return (table, new_list, None, now, f"database error: {e}", html.Div(), {})
        return (table, new_list, stamp, now, error, _summary(snap),
                snap.memo("pareto", lambda: pareto_figure(snap)))

    def snapshot(stamp: list[Any]) -> Snapshot:
        """The stamp's snapshot; when the database no longer has the study (deleted, or the
        database gone) the panel is left as it is, and the next poll says what is wrong."""
        try:
            return snapshots.get(stamp)
        except StorageError:
            raise PreventUpdate from None

    def when_open(tab: str, build, cleared: Any):
        """A callback body that builds its panel only while ``tab`` is open, and shows
        ``cleared`` when no study is (e.g. the one shown was deleted)."""
        def update(active, stamp, *args):
            if not stamp:
                return cleared
            if active != tab:
                raise PreventUpdate
            return build(snapshot(stamp), *args)
        return update

    @app.callback(Output("grid", "rowData"), Output("grid-study", "data"),
                  Input("tabs", "value"), Input("stamp", "data"))
    def rows(active, stamp):
        """The table's rows and their study, sent while its tab is open (10,000 rows are
        2.9 MB of JSON); emptied otherwise, so the table never shows another study's rows
        while the new ones are on their way."""
        if not stamp or active != "trials":
            return [], None
        return snapshot(stamp).rows, stamp[0]

    app.callback(Output("hv", "figure"), Input("tabs", "value"), Input("stamp", "data"))(
        when_open("hypervolume", lambda snap: snap.memo("hv", lambda: hypervolume_figure(snap)),
                  {}))
    app.callback(Output("importance", "figure"), Input("tabs", "value"),
                 Input("stamp", "data"))(
        when_open("importance",
                  lambda snap: snap.memo("importance", lambda: importance_figure(snap)), {}))

    app.callback(Output("runs", "children"), Input("tabs", "value"), Input("stamp", "data"))(
        when_open("runs", lambda snap: _runs_panel(store, snap), []))

    def edf(snap: Snapshot, choice: str | None):
        choices = snap.choices
        if choice not in choices:
            choice = choices[0] if choices else None
        fig = edf_figure(snap, choice) if choice else \
            empty_figure(f"{snap.study.name} · error EDFs", "no design choice varies yet")
        return fig, [{"label": c, "value": c} for c in choices], choice

    app.callback(Output("edf", "figure"), Output("edf-choice", "options"),
                 Output("edf-choice", "value"), Input("tabs", "value"), Input("stamp", "data"),
                 Input("edf-choice", "value"))(when_open("edf", edf, ({}, [], None)))

    @app.callback(Output("selected", "data"), Input("pareto", "clickData"),
                  Input("grid", "cellClicked"), State("stamp", "data"),
                  State("grid-study", "data"), prevent_initial_call=True)
    def select(click, cell, stamp, grid_study):
        if not stamp:
            return no_update
        try:
            if ctx.triggered_id == "pareto":
                points = (click or {}).get("points") or [{}]
                number = (points[0].get("customdata") or [None])[0]
            elif grid_study != stamp[0]:  # a row of the study shown before: not its trial
                return no_update
            else:
                number = (cell or {}).get("rowId")
            return no_update if number is None else {"study": stamp[0], "number": int(number)}
        except (AttributeError, IndexError, KeyError, OverflowError, TypeError, ValueError):
            return no_update  # not a click the page makes (1e400 in JSON is inf: OverflowError)

    @app.callback(Output("trial", "children"), Input("selected", "data"),
                  Input("stamp", "data"))
    def show(selected, stamp):
        if not stamp or not selected or selected.get("study") != stamp[0]:
            return html.P(_PLACEHOLDER)
        return _trial_panel(snapshot(stamp), selected["number"], masked)

    return app


MAX_REQUEST_BYTES = 1 << 20  # a callback request is a few KB; more is refused (413)


def _guard_requests(app: Any) -> None:
    """Requests the app cannot serve are the client's error (4xx), not a server error with a
    traceback: a file outside Dash's registered scripts (``../`` included) is 404, a callback
    request that is not one the page makes (malformed, nested past the JSON parser's depth,
    naming no callback of this app) is 400, a body over :data:`MAX_REQUEST_BYTES` is 413."""
    from dash.exceptions import DependencyException
    from flask import request
    from werkzeug.exceptions import BadRequest

    server = app.server
    server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    update = app.get_relative_path("/_dash-update-component")

    @server.errorhandler(DependencyException)
    def not_a_script(_e):
        return "not found\n", 404, {"Content-Type": "text/plain; charset=utf-8"}

    def refuse(why: str):
        return f"bad callback request: {why}\n", 400, {"Content-Type": "text/plain; charset=utf-8"}

    @server.before_request
    def check_callback_request():
        if request.path != update or request.method != "POST":
            return None
        try:  # parsed once: Dash's own get_json() reads the cached result
            body = request.get_json(cache=True)
        except (BadRequest, RecursionError) as e:  # RecursionError: nested too deep
            return refuse(f"not JSON ({type(e).__name__})")
        if not isinstance(body, dict):
            return refuse("not a JSON object")
        spec = app.callback_map.get(body.get("output")) if isinstance(
            body.get("output"), str) else None
        if spec is None:
            return refuse("no such callback")
        changed = body.get("changedPropIds")
        if not (isinstance(changed, list) and all(isinstance(c, str) for c in changed)):
            return refuse("'changedPropIds' must be a list of strings")
        outputs = body.get("outputs")
        wanted = [(o.component_id, o.component_property) for o in spec["output"]] \
            if isinstance(spec["output"], list) else None
        if wanted is None:
            outputs = [outputs]
        if not (isinstance(outputs, list) and _ids(outputs) == (
                wanted or [(spec["output"].component_id, spec["output"].component_property)])):
            return refuse("'outputs' are not this callback's")
        for key in ("inputs", "state"):
            if _ids(body.get(key, [])) != [(i["id"], i["property"]) for i in spec[key]]:
                return refuse(f"'{key}' are not this callback's")
            for item in body.get(key, []):
                name = f"{item['id']}.{item['property']}"
                if not _VALUES.get(name, _any)(item.get("value")):
                    return refuse(f"{name} is not a value the page holds")
        return None


def _any(_v: Any) -> bool:
    return True


def _of(*types: type) -> Any:
    """A check: None, or an instance of ``types`` (bool is not an int here)."""
    return lambda v: v is None or (isinstance(v, types) and not (
        isinstance(v, bool) and bool not in types))


def _is_stamp(v: Any) -> bool:
    """None, or what :func:`_stamp` makes: [name, trials, finished, complete, iso time]."""
    return v is None or (isinstance(v, list) and len(v) == 5 and isinstance(v[0], str) and all(
        type(x) is int for x in v[1:4]) and _of(str)(v[4]))


#: what each value a callback reads may be (the page only ever holds these)
_VALUES = {
    "stamp.data": _is_stamp,
    "listed.data": _of(list),
    "selected.data": lambda v: v is None or (isinstance(v, dict) and isinstance(
        v.get("study"), str) and type(v.get("number")) is int),
    "grid-study.data": _of(str),
    "url.search": _of(str),
    "tabs.value": _of(str),
    "edf-choice.value": _of(str),
    "poll.n_intervals": _of(int),
    "pareto.clickData": _of(dict),
    "grid.cellClicked": _of(dict),
}


def _ids(items: Any) -> list[tuple[Any, Any]] | None:
    """[(id, property), ...] of a callback request's inputs, state or outputs; None when they
    are not a list of objects that name both."""
    if not isinstance(items, list) or not all(
            isinstance(i, dict) and "id" in i and "property" in i for i in items):
        return None
    return [(i["id"], i["property"]) for i in items]


def _local_addresses(most: int = 8) -> str:
    """This machine's interface addresses (loopback, then IPv4 first), for a --host it cannot
    serve on."""
    import socket

    import psutil

    try:
        found = [a.address.split("%")[0] for nics in psutil.net_if_addrs().values()
                 for a in nics if a.family in (socket.AF_INET, socket.AF_INET6)]
    except (OSError, psutil.Error):
        return "see `ip addr`"
    # loopback first (what --host usually wants), then IPv4 before IPv6
    found = sorted(set(found), key=lambda a: (a not in ("127.0.0.1", "::1"), ":" in a, a))
    return ", ".join(found[:most]) + (", ..." if len(found) > most else "") or "none found"


# waitress's defaults (100 connections, an idle one closed after 120 s) let about 100 sockets
# that send half a request and go quiet lock every client out for two minutes
MAX_CONNECTIONS = 1000
IDLE_TIMEOUT_S = 20  # a connection silent this long is closed (the page polls every few s)


def _make_server(app, host: str, port: int, threads: int, *,
                 idle_timeout_s: int = IDLE_TIMEOUT_S):
    """waitress's server for ``app`` (a Flask app), not yet running."""
    import resource

    from waitress import create_server

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = MAX_CONNECTIONS if soft == resource.RLIM_INFINITY else \
        max(100, min(MAX_CONNECTIONS, soft // 2))  # descriptors left for the database and files
    return create_server(app, host=host, port=port, threads=threads, ident="metaformer-nas",
                         connection_limit=limit, channel_timeout=idle_timeout_s,
                         cleanup_interval=max(1, idle_timeout_s // 4))


def serve(url: str, *, host: str = "127.0.0.1", port: int = 8050,
          study: str | None = None, refresh_s: float = 5.0,
          threads: int = 8, reference: str | None = None, ideal: str | None = None) -> int:
    """Open ``url`` read-only and serve the dashboard until Ctrl-C; returns the exit code.

    ``reference`` (and ``ideal``) fix the hypervolume box of every study whose objectives
    they name (:func:`nas.analysis.given_box`). An unknown ``study``, a box that does not fit
    the study shown first, an unreachable database and an address that cannot be bound raise
    a one-line :class:`nas_errors.NasError` before anything is served.
    """
    if not 0.5 <= refresh_s <= 86400:
        raise ConfigError(f"--refresh must be 0.5 .. 86400 seconds; got {refresh_s}")
    store = Store(url, read_only=True)
    try:
        if study is not None:
            store.get_study(study)  # StorageError naming the existing studies
        snapshots = _Snapshots(store, reference=reference, ideal=ideal)
        snapshots.check_box(study)
        app = make_app(store, refresh_s=refresh_s, study=study, snapshots=snapshots)
        try:
            server = _make_server(app.server, host, port, threads)
        except (OSError, ValueError) as e:
            import errno

            why = (getattr(e, "strerror", None) or str(e)).rstrip(".")
            if getattr(e, "errno", None) in (errno.EADDRINUSE, errno.EACCES):
                hint = "choose another --port, or --port 0 for any free one"
            else:  # an unknown name, or an address that is not this machine's
                hint = ("--host must be an address of this machine: 127.0.0.1 (the default), "
                        f"0.0.0.0 for all, or one of its interfaces' ({_local_addresses()})")
            raise ConfigError(f"cannot serve on {host}:{port}: {why} ({hint})") from e
        snapshots.warm(study)  # the first page is then served from memory (requests queue)
        listen = getattr(server, "effective_listen", None) or \
            [(server.effective_host, server.effective_port)]
        where = ", ".join(f"http://{'[' + h + ']' if ':' in h else h}:{p}/" for h, p in listen)
        print(f"dashboard of {mask_url(url)} (read-only) on {where} (Ctrl-C stops it)",
              flush=True)
        if not _is_loopback(host):
            print(f"warning: listening on {host}: anyone who can reach this machine can read "
                  f"the database through it (there is no authentication)", file=sys.stderr,
                  flush=True)
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
        return 0
    finally:
        store.close()

