"""The fault-handling pieces without a Ray cluster: stop signals, stale trials, retries, reaper."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import optuna
import pytest

from db import Store
from nas._interrupt import StopOnSignal, StopRequest, catch_stop_signals, ray_outside_our_group
from nas._reaper import start_reaper, stop_reaper
from nas._searcher import close_stale_trials, enqueue_retries
from nas.models import arch_hash, from_dict, to_dict
from nas.results import DEFAULT_OBJECTIVES, objective_names
from nas.search import _sampler_seed
from search_spaces import load_space

FAIL, WAITING = optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING


@dataclass
class Trial:
    """The attributes of a Ray Tune trial the recorder reads."""

    trial_id: str
    config: dict
    last_result: dict | None = None


def test_first_signal_asks_tune_to_stop_and_a_second_forces_it():
    request = StopRequest()
    stopper = StopOnSignal(request)
    assert not stopper.stop_all() and not stopper("t", {})
    request.handle(signal.SIGINT, None)
    assert stopper.stop_all() and not stopper("t", {}), "all trials stop, never one alone"
    assert (request.exit_code, request.short) == (130, "Ctrl-C")
    assert request.reason == "interrupted by Ctrl-C (SIGINT)"
    with pytest.raises(KeyboardInterrupt):
        request.handle(signal.SIGINT, None)
    assert request.reason == "interrupted by Ctrl-C (SIGINT) (forced by a second signal)"
    term = StopRequest()
    term.handle(signal.SIGTERM, None)
    assert (term.exit_code, term.short, term.reason) == (143, "SIGTERM", "interrupted by SIGTERM")
    hup = StopRequest()
    hup.handle(signal.SIGHUP, None)  # the terminal closed: the same stop, its own code
    assert (hup.exit_code, hup.short, hup.reason) == (
        129, "SIGHUP", "interrupted by SIGHUP (its terminal closed)")


def test_handlers_and_tune_switch_are_restored_after_the_run(monkeypatch):
    def mine(signum, frame):
        raise AssertionError("not during the run")

    monkeypatch.delenv("TUNE_DISABLE_SIGINT_HANDLER", raising=False)
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    try:
        for s in saved:
            signal.signal(s, mine)
        request = StopRequest()
        with catch_stop_signals(request) as installed:
            assert installed and os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # as Tune does, never restoring it
            os.kill(os.getpid(), signal.SIGTERM)  # delivered to our handler: only a flag
            time.sleep(0.05)
        assert request.signum == signal.SIGTERM
        assert all(signal.getsignal(s) is mine for s in saved), "previous handlers restored"
        assert "TUNE_DISABLE_SIGINT_HANDLER" not in os.environ
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


@pytest.mark.parametrize("before", [signal.SIG_DFL, signal.SIG_IGN], ids=["terminal", "nohup"])
def test_sighup_stops_the_search_unless_nohup_ignores_it(before):
    saved = signal.getsignal(signal.SIGHUP)
    try:
        signal.signal(signal.SIGHUP, before)
        request = StopRequest()
        with catch_stop_signals(request):
            if before == signal.SIG_IGN:
                assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)  # SIG_DFL here would end the test process
            time.sleep(0.05)
        assert request.signum == (None if before == signal.SIG_IGN else signal.SIGHUP)
        assert signal.getsignal(signal.SIGHUP) == before, "restored after the run"
    finally:
        signal.signal(signal.SIGHUP, saved)


def test_ray_starts_its_processes_outside_our_group_only_inside_the_block():
    from ray._private import services

    base = services.ConsolePopen

    def pgid_of_a_ray_process() -> int:
        p = services.ConsolePopen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            return os.getpgid(p.pid)
        finally:
            p.kill()
            p.wait()

    with ray_outside_our_group() as moved:
        assert moved
        inside = pgid_of_a_ray_process()
    assert services.ConsolePopen is base, "Ray's class is put back"
    assert inside not in (os.getpgrp(), 0)  # a group of its own: a group signal to ours misses
    assert pgid_of_a_ray_process() == os.getpgrp()


def test_sampler_seed_is_the_seed_for_a_new_study_and_moves_on_with_its_history():
    assert _sampler_seed(7, 0) == 7, "a new study: same seed, same search as before"
    assert _sampler_seed(7, 5) == _sampler_seed(7, 5)
    assert len({_sampler_seed(7, 0), _sampler_seed(7, 5), _sampler_seed(7, 6),
                _sampler_seed(8, 5)}) == 4


def _two_tables(tmp_path):
    """(space, store, our study, Optuna's storage, Optuna's study) of a new 'tiny' study, whose
    directions are the default objectives' (accuracy up, MACs down)."""
    url = f"sqlite:///{tmp_path}/nas.db"
    space = load_space("tiny")
    store = Store(url, decode_arch=from_dict)
    ours = store.get_or_create_study("s", space=space.name, space_hash=space.hash,
                                     objectives=objective_names(DEFAULT_OBJECTIVES), config={})
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(storage=storage, study_name="s",
                                directions=[o.optuna_direction for o in DEFAULT_OBJECTIVES],
                                sampler=optuna.samplers.RandomSampler(seed=1))
    return space, store, ours, storage, study


def test_stale_trials_are_failed_and_get_a_row_unless_ours_has_one(tmp_path):
    space, store, ours, storage, study = _two_tables(tmp_path)
    archs = []  # asked by a run that was then killed: two sampled, one not yet
    for _ in range(2):
        archs.append(space.sample(study.ask()))
    study.ask()
    hashes = [arch_hash(a) for a in archs]
    assert hashes[0] != hashes[1]
    row = store.start_trial(ours.id, key="run:ray0", arch_hash=hashes[0], arch=to_dict(archs[0]),
                            params={})  # Tune started the first: the killed run left its row
    marked = store.interrupt_running(ours.id, "killed")
    assert [t.id for t in marked] == [row.id]

    stale = close_stale_trials(study, storage, space, store, ours.id, {hashes[0]}, "killed")
    assert len(stale) == 3
    attrs = [(t.state, t.user_attrs["interrupted"]) for t in study.trials]
    assert attrs[:2] == [(FAIL, "killed")] * 2, attrs
    assert attrs[2][0] == FAIL and "before its architecture was sampled" in attrs[2][1], attrs
    rows = [(t.key, t.state, t.arch_hash) for t in store.trials("s")]
    assert rows == [("run:ray0", "INTERRUPTED", hashes[0]),
                    ("killed-run:optuna1", "INTERRUPTED", hashes[1])], rows


def test_a_stale_trial_whose_result_our_table_holds_is_told_that_result(tmp_path):
    """The run recorded the trial COMPLETE, then could not tell Optuna (killed, or its database
    restarted): the sampler gets the result, and no INTERRUPTED row appears for it."""
    space, store, ours, storage, study = _two_tables(tmp_path)
    arch = space.sample(study.ask())
    h = arch_hash(arch)
    row = store.start_trial(ours.id, key="run:ray0", arch_hash=h, arch=to_dict(arch), params={})
    store.finish_trial(row.id, state="COMPLETE", accuracy=0.5, macs=1000, params_count=10)
    assert store.interrupt_running(ours.id, "killed") == []
    # built as run_search builds it: the stored values, each objective in its own direction
    done = {t.arch_hash: [o.of(t) for o in DEFAULT_OBJECTIVES]
            for t in store.trials("s", states=["COMPLETE"])}
    close_stale_trials(study, storage, space, store, ours.id, set(), "killed", done=done)
    (t,) = study.trials
    assert t.state == optuna.trial.TrialState.COMPLETE and t.values == [0.5, 1000.0]
    assert "recorded in nas_trials" in t.user_attrs["recovered"]
    assert [(r.key, r.state) for r in store.trials("s")] == [("run:ray0", "COMPLETE")]


def test_a_stale_trial_whose_row_was_finished_is_told_how_it_ended_with_no_second_row(
        tmp_path):
    """The run finished the trial's row PRUNED (or FAIL), then could not tell Optuna: the
    resume tells Optuna the same, and writes no INTERRUPTED row that would train it again."""
    from nas.search import _closed_rows, _retries

    space, store, ours, storage, study = _two_tables(tmp_path)
    ended = {}
    for state in ("PRUNED", "FAIL"):
        trial = study.ask()
        arch = space.sample(trial)
        row = store.start_trial(ours.id, key=f"run:{state}", arch_hash=arch_hash(arch),
                                arch=to_dict(arch), params=dict(trial.params))
        store.finish_trial(row.id, state=state, error="stopped at a rung" if state == "PRUNED"
                           else "diverged", metrics={"optuna_trial": trial.number})
        ended[trial.number] = state
    assert store.interrupt_running(ours.id, "killed") == []
    closed = _closed_rows(store, ours.id)
    assert {n: r.state for n, r in closed.items()} == ended
    close_stale_trials(study, storage, space, store, ours.id, set(), "killed", closed=closed)
    told = [(t.state.name, t.user_attrs["recovered"]) for t in study.trials]
    assert told == [("PRUNED", "killed; recorded PRUNED in nas_trials (#0), and told now"),
                    ("FAIL", "killed; recorded FAIL in nas_trials (#1), and told now")], told
    assert [(r.key, r.state) for r in store.trials("s")] == [("run:PRUNED", "PRUNED"),
                                                            ("run:FAIL", "FAIL")]
    assert _retries(store, ours.id) == []


def test_retries_are_asked_first_and_enqueued_once(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/o.db", directions=["maximize"])
    retries = [("h1", {"x": "b"}), ("h2", {"x": "c"})]
    assert enqueue_retries(study, retries) == 2
    assert enqueue_retries(study, retries) == 0, "a retry already waiting is not enqueued twice"
    assert [t.user_attrs for t in study.trials if t.state == WAITING] == [{"retry_of": "h1"},
                                                                          {"retry_of": "h2"}]
    asked = [study.ask() for _ in range(2)]
    assert [t.suggest_categorical("x", ["a", "b", "c"]) for t in asked] == ["b", "c"]


def test_optunas_study_never_searched_takes_new_objectives_one_searched_does_not(tmp_path):
    from nas.errors import StorageError
    from nas.results import parse_search_objectives
    from nas.search import _optuna_study

    url = f"sqlite:///{tmp_path}/o.db"
    three = parse_search_objectives("accuracy:max,macs:min,params:min")
    optuna.create_study(storage=url, study_name="s", directions=["maximize", "minimize"])
    assert _optuna_study(url, "s", "nsga2", 0, three, check_only=True)[0] is None
    assert [d.name for d in optuna.load_study(study_name="s", storage=url).directions] == [
        "MAXIMIZE", "MINIMIZE"], "check_only changes nothing"
    assert _optuna_study(url, "new", "nsga2", 0, three, check_only=True)[0] is None
    assert optuna.get_all_study_names(url) == ["s"], "check_only creates nothing"
    study, _ = _optuna_study(url, "s", "nsga2", 0, three)  # no trial: made again
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]
    study.ask()  # one trial: now held to its objectives
    for check_only in (True, False):
        with pytest.raises(StorageError, match="has directions .*; use another --study"):
            _optuna_study(url, "s", "nsga2", 0, DEFAULT_OBJECTIVES, check_only=check_only)


def test_a_run_started_at_the_same_moment_keeps_the_optuna_study_it_made(tmp_path, monkeypatch):
    """Run A reads the still-empty study and checks it; at that moment run B gives it other
    objectives, makes Optuna's study for them and takes the lease. A must be refused at the
    lease without deleting and re-making B's Optuna study for its own directions (it did: a
    study never searched was re-made before the lease)."""
    from nas.errors import StorageError
    from nas.results import parse_search_objectives
    from nas.search import SearchConfig, _optuna_study, run_search

    url = f"sqlite:///{tmp_path}/nas.db"
    cfg = SearchConfig(space="tiny", budget=1, epochs=1, db_url=url, runs_dir=str(tmp_path),
                       dataset="digits", executor="local")
    theirs = parse_search_objectives("accuracy:max,macs:min,params:min")
    check = Store.check_study_as

    def b_moves_right_after_a_checks(self, study_as):
        check(self, study_as)  # A's view is current here; B acts before A's next step
        b = self.get_or_create_study(study_as.name, space=study_as.space,
                                     space_hash=study_as.space_hash,
                                     objectives=objective_names(theirs), config={"run": "B"})
        _optuna_study(url, b.name, "nsga2", 0, theirs)[0].set_user_attr("made_by", "B")
        self.begin_run(b.id, config={}, argv=[], versions={}, host="b", pid=1, study_as=b)

    monkeypatch.setattr(Store, "check_study_as", b_moves_right_after_a_checks)
    optuna.create_study(storage=url, study_name="tiny", directions=["maximize", "minimize"])
    with pytest.raises(StorageError, match="by a run that started at the same time"):
        run_search(cfg, log=lambda s: None)
    ours = optuna.load_study(study_name="tiny", storage=url)
    assert ours.user_attrs == {"made_by": "B"}, "B's Optuna study was deleted and made again"
    assert [d.name for d in ours.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]
    assert [r.host for r in Store(url).runs("tiny")] == ["b"], "A recorded a run"
    # B ends before any trial: A's command again, its objectives typed (untyped, it would take
    # the study's), takes the study, and Optuna's is made again for them under A's lease
    monkeypatch.setattr(Store, "check_study_as", check)
    store = Store(url)
    store.end_run(store.runs("tiny")[0].id, "failed", "stopped before any trial")
    cfg = dataclasses.replace(cfg, objectives="accuracy:max,macs:min")
    assert run_search(cfg, log=lambda s: None).completed == 1
    ours = optuna.load_study(study_name="tiny", storage=url)
    assert [d.name for d in ours.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert [t.state.name for t in ours.trials] == ["COMPLETE"]


_SLEEPER = "import time; time.sleep(120)"  # its argv names a session dir (or not)


def _gone(proc: subprocess.Popen, timeout: float = 15.0) -> bool:
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def test_reaper_ends_the_session_processes_only(tmp_path):
    session = tmp_path / "session_2026_1"
    session.mkdir()
    ours = subprocess.Popen([sys.executable, "-c", _SLEEPER, str(session)])  # its command line
    other = subprocess.Popen([sys.executable, "-c", _SLEEPER, str(tmp_path / "session_2026_10")])
    try:
        stop_reaper(start_reaper(str(session)))
        assert _gone(ours), "a process of the session outlived the run"
        assert other.poll() is None, "the reaper must not touch another session"
    finally:
        for p in (ours, other):
            p.kill()
            p.wait()


def test_reaper_ends_the_session_when_the_driver_is_killed(tmp_path):
    session = tmp_path / "session_2026_2"
    session.mkdir()
    ours = subprocess.Popen([sys.executable, "-c", _SLEEPER, str(session)])
    driver = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from nas._reaper import start_reaper; "
         "r = start_reaper(sys.argv[1]); print('up' if r else 'none', flush=True); "
         "time.sleep(120)", str(session)],
        stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(
            os.path.dirname(os.path.abspath(__file__)))))
    try:
        assert driver.stdout.readline().strip() == "up"
        assert ours.poll() is None
        driver.kill()  # kill -9: no finally, no atexit in the driver
        driver.wait()
        assert _gone(ours), "a process of the session outlived the killed driver"
    finally:
        for p in (ours, driver):
            p.kill()
            p.wait()


def _fake_raylet(tmp_path) -> subprocess.Popen:
    """A real process named ``raylet`` (a link to sleep): what the guard watches for."""
    link = tmp_path / "raylet"
    link.symlink_to("/bin/sleep")
    return subprocess.Popen([str(link), "60"])


def test_ray_lost_guard_leaves_quietly_when_the_run_ends_without_a_signal(tmp_path):
    import psutil

    from nas._interrupt import RayLostGuard

    raylet = _fake_raylet(tmp_path)
    try:
        closed = []
        guard = RayLostGuard(StopRequest(), lambda: [psutil.Process(raylet.pid)],
                             lambda: closed.append(1) or "line").start()
        assert guard.watching.wait(10)
        guard.closed = True  # what run_search sets once it has closed the run itself
        guard._thread.join(5)
        assert not guard._thread.is_alive() and closed == []
    finally:
        raylet.kill()
        raylet.wait()


GUARDED = """
import os, signal, subprocess, sys, time, psutil
from nas._interrupt import RayLostGuard, StopRequest
raylet = subprocess.Popen([sys.argv[1], "60"])
request = StopRequest()
def close():
    open(sys.argv[2], "w").write("closed")
    return "interrupted (SIGTERM): closed by the guard"
guard = RayLostGuard(request, lambda: [psutil.Process(raylet.pid)], close).start()
guard.watching.wait(10)
request.handle(signal.SIGTERM, None)  # the stop signal
time.sleep(1.0)
print("still waiting for Ray", flush=True)  # Ray alive: the guard must not act yet
if sys.argv[3] == "closed-first":  # the driver closed the run itself, then ends Ray
    with guard.lock:
        guard.closed = True
    raylet.kill()
    time.sleep(2.0)
    print("left quietly", flush=True)
    sys.exit(0)
raylet.kill()  # Ray dies with the signal (left a zombie: this process never waits for it)
time.sleep(30)
"""


def _guarded(tmp_path, mode: str) -> subprocess.CompletedProcess:
    raylet = tmp_path / "raylet"
    raylet.symlink_to("/bin/sleep")
    return subprocess.run([sys.executable, "-c", GUARDED, str(raylet), str(tmp_path / "closed"),
                           mode], capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def test_ray_lost_guard_closes_the_run_and_exits_143_once_ray_dies(tmp_path):
    t0 = time.monotonic()
    r = _guarded(tmp_path, "ray-dies")
    assert r.returncode == 143, r.stderr[-2000:]
    assert r.stdout == "still waiting for Ray\n"
    assert r.stderr == "interrupted (SIGTERM): closed by the guard\n"
    assert (tmp_path / "closed").read_text() == "closed" and time.monotonic() - t0 < 20


def test_ray_lost_guard_stays_silent_when_the_driver_closed_the_run_first(tmp_path):
    r = _guarded(tmp_path, "closed-first")  # then ray.shutdown() ends Ray on purpose
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == "still waiting for Ray\nleft quietly\n" and r.stderr == ""
    assert not (tmp_path / "closed").exists()


def test_a_trial_interrupted_after_reporting_keeps_where_it_was_running(tmp_path):
    from nas._recorder import Recorder
    from nas.search import _close_running

    from ._results import study_setup

    _, store, study, _ = study_setup(tmp_path)
    recorder = Recorder(store, study.id, "run", 3, 0, lambda line: None)
    trials = [Trial(t, {"arch_hash": f"h{t}", "arch": {}, "params": {}}) for t in "abc"]
    for t in trials:
        recorder.on_trial_start(0, [], t)
    here = {"hostname": "gpu7", "node_ip": "10.0.0.7", "pid": 99, "ray_node_id": "n" * 56,
            "ray_gpu_ids": ["1"]}
    recorder.on_trial_result(0, [], trials[0], {"epoch": 1, "repeat": 0, **here})
    recorder.on_trial_result(0, [], trials[1], {"epoch": 1, "repeat": 0, **here, "pid": 98})
    recorder._fail(trials[1], "diverged")  # finished before the stop: not touched by it
    assert _close_running(store, study.id, None, recorder, StopRequest(), None) == 2
    rows = {t.key: t for t in store.trials("s")}
    assert rows["run:a"].state == "INTERRUPTED"
    assert rows["run:a"].metrics["worker"] == {"host": "gpu7", "node_ip": "10.0.0.7", "pid": 99,
                                               "ray_node_id": "n" * 56, "gpu_ids": ["1"]}
    assert rows["run:b"].state == "FAIL" and rows["run:b"].metrics["worker"]["pid"] == 98
    assert rows["run:c"].state == "INTERRUPTED" and "worker" not in rows["run:c"].metrics


@pytest.mark.parametrize("make, lost", [
    (lambda: __import__("ray").exceptions.ActorDiedError(), True),
    (lambda: __import__("ray").exceptions.NodeDiedError("node 1 died"), True),
    (lambda: __import__("ray").exceptions.RayTaskError("trainable", "tb", ValueError("nan")),
     False),
    (None, False),  # no error file: never a retry on a guess
])
def test_only_a_worker_or_node_that_went_away_counts_as_lost(tmp_path, make, lost):
    import cloudpickle

    from nas._trial_errors import lost_reason

    class Trial:  # the attributes of a Ray Tune trial that are read
        pickled_error_file = str(tmp_path / "error.pkl")
        error_file = str(tmp_path / "error.txt")

    if make is not None:
        (tmp_path / "error.pkl").write_bytes(cloudpickle.dumps(make()))
    reason = lost_reason(Trial())
    assert (reason is not None) == lost, reason
    if lost:
        assert "\n" not in reason and reason.split(":")[0] in ("ActorDiedError", "NodeDiedError")


def test_a_lost_trial_is_asked_again_once_and_not_counted_as_failed(tmp_path):
    from nas._searcher import BudgetedSearcher

    from ._results import study_setup

    space, store, study, ot = study_setup(tmp_path)
    lost: dict[str, str] = {}
    searcher = BudgetedSearcher(space, ot, DEFAULT_OBJECTIVES, store, study.id, "run", budget=3,
                                done={}, max_attempts=10, num_classes=10, lost=lost)
    first = searcher.suggest("a")
    lost["a"] = "ActorDiedError: The actor died unexpectedly before finishing this task."
    searcher.on_trial_complete("a", None, error=True)
    assert searcher.failed == 0 and searcher.retrying == {"a": lost["a"]}
    searcher.settle("a")
    told = ot.trials[0]
    assert told.state == optuna.trial.TrialState.FAIL
    assert told.user_attrs["interrupted"].startswith("lost its Ray worker: ActorDiedError")
    again = searcher.suggest("b")  # the enqueued retry comes first
    assert again["arch_hash"] == first["arch_hash"] and again["params"] == first["params"]
    lost["b"] = lost["a"]  # lost again: once per run, so now a failure like any other
    searcher.on_trial_complete("b", None, error=True)
    searcher.settle("b")
    assert searcher.failed == 1 and "b" not in searcher.retrying
    assert searcher.suggest("c")["arch_hash"] != first["arch_hash"]


def test_a_trial_lost_before_tune_said_it_began_still_gets_its_row(tmp_path):
    """A worker killed before Tune's on_trial_start for its trial (seen in a fresh clone's run of
    test_a_trial_whose_worker_is_killed_...): Optuna is told FAIL and asks it again, so our table
    gets its INTERRUPTED row too, and both count the same proposals; no running trial is
    uncounted in the progress view."""
    from nas._progress import Progress
    from nas._recorder import Recorder
    from nas._searcher import BudgetedSearcher

    from ._results import study_setup

    space, store, study, ot = study_setup(tmp_path)
    lost: dict[str, str] = {}
    searcher = BudgetedSearcher(space, ot, DEFAULT_OBJECTIVES, store, study.id, "run", budget=3,
                                done={}, max_attempts=10, num_classes=10, lost=lost)
    progress = Progress(3, DEFAULT_OBJECTIVES, log=lambda line: None, every=0)
    lines: list[str] = []
    recorder = Recorder(store, study.id, "run", 3, 0, lines.append, settle=searcher.settle,
                        retrying=searcher.retrying, progress=progress)
    running = Trial("a", searcher.suggest("a"))
    recorder.on_trial_start(0, [], running)  # a trial that did begin, still running
    early = Trial("b", searcher.suggest("b"))  # asked, never said to have begun
    lost["b"] = "ActorDiedError: The actor died unexpectedly before finishing this task."
    searcher.on_trial_complete("b", None, error=True)
    recorder.on_trial_error(0, [], early)
    rows = {t.key: t for t in store.trials("s")}
    assert rows["run:b"].state == "INTERRUPTED", rows
    assert rows["run:b"].error.startswith("lost its Ray worker, retried: ActorDiedError")
    assert rows["run:b"].arch_hash == early.config["arch_hash"]
    asked = [t for t in ot.trials if t.state != optuna.trial.TrialState.WAITING]  # (its retry)
    assert len(rows) == len(asked) == 2
    assert progress.running == 1, "the trial still running stays counted"
    assert lines == [f"[ lost ] #{rows['run:b'].number} ActorDiedError: The actor died "
                     "unexpectedly before finishing this task; its architecture is trained "
                     "again"], lines


def test_a_sqlite_file_deleted_mid_search_stops_it_and_optuna_is_not_told(tmp_path):
    """Deleted while a search runs, the file's rows would go on into a file no one can open:
    the trial's row is refused, so Optuna is not told its result, and the run is stopped."""
    from nas._recorder import Recorder
    from nas._searcher import BudgetedSearcher

    from ._results import result, study_setup

    space, store, study, ot = study_setup(tmp_path)
    lost: list[BaseException] = []
    searcher = BudgetedSearcher(space, ot, DEFAULT_OBJECTIVES, store, study.id, "run",
                                budget=3, done={}, max_attempts=10, num_classes=10)
    lines: list[str] = []
    recorder = Recorder(store, study.id, "run", 3, 0, lines.append, settle=searcher.settle,
                        on_db_lost=lost.append)
    trial = Trial("a", searcher.suggest("a"))
    recorder.on_trial_start(0, [], trial)
    report = result().report()
    recorder.on_trial_result(0, [], trial, report)
    (tmp_path / "nas.db").unlink()
    searcher.on_trial_complete("a", report)
    recorder.on_trial_complete(0, [], trial)
    assert len(lost) == 1 and "was deleted or moved while open" in str(lost[0])
    assert lines == ["[ not recorded ] #0 trial a ended COMPLETE: the database is out of "
                     "reach; the search stops"], lines
    assert [t.state for t in ot.trials] == [optuna.trial.TrialState.RUNNING]


def test_a_row_that_cannot_be_finished_keeps_its_result_from_optuna(tmp_path):
    """A write refused for another reason than a lost database (here: the table is gone, as
    when a database is dropped and made again under the search) was logged, and then Optuna
    was told the result anyway: Optuna held a result our table lacked."""
    import sqlite3

    from nas._recorder import Recorder
    from nas._searcher import BudgetedSearcher

    from ._results import result, study_setup

    space, store, study, ot = study_setup(tmp_path)
    searcher = BudgetedSearcher(space, ot, DEFAULT_OBJECTIVES, store, study.id, "run",
                                budget=3, done={}, max_attempts=10, num_classes=10)
    lines: list[str] = []
    recorder = Recorder(store, study.id, "run", 3, 0, lines.append, settle=searcher.settle)
    trial = Trial("a", searcher.suggest("a"))
    recorder.on_trial_start(0, [], trial)
    report = result().report()
    recorder.on_trial_result(0, [], trial, report)
    with sqlite3.connect(tmp_path / "nas.db") as con:
        con.execute("ALTER TABLE nas_trials RENAME TO nas_trials_gone")
    searcher.on_trial_complete("a", report)
    recorder.on_trial_complete(0, [], trial)
    assert len(lines) == 1 and lines[0].startswith("[ not recorded ] trial a: "), lines
    assert [t.state for t in ot.trials] == [optuna.trial.TrialState.RUNNING]


def test_a_lost_database_stop_and_signals_in_either_order():
    """Lost first: exit 1, and the user's first Ctrl-C does not force (the close-out waits for
    nothing), a second does. A signal first: its exit code, and the database still named."""
    import signal

    request = StopRequest()
    request.lost_database("no answer for 30 s: refused")
    assert request.requested and request.exit_code == 1
    assert request.reason == "interrupted: lost the database (no answer for 30 s: refused)"
    request.handle(signal.SIGINT, None)
    with pytest.raises(KeyboardInterrupt):
        request.handle(signal.SIGINT, None)
    request = StopRequest()
    request.handle(signal.SIGINT, None)
    request.lost_database("refused", gone=None)
    assert request.database == "refused" and request.exit_code == 130


def _second_trial_after(tmp_path, damage):
    """Two trials of a search on a SQLite file: the first recorded and told, then
    ``damage(store)``, then the second ends (no traceback may escape). Returns (request,
    store, Optuna study, searcher, recorder, the recorder's lines)."""
    from nas._recorder import Recorder
    from nas._searcher import BudgetedSearcher
    from nas.search import _database_lost

    from ._results import result, study_setup

    space, store, study, ot = study_setup(tmp_path)
    request = StopRequest()
    searcher = BudgetedSearcher(space, ot, DEFAULT_OBJECTIVES, store, study.id, "run",
                                budget=3, done={}, max_attempts=10, num_classes=10)
    lines: list[str] = []
    recorder = Recorder(store, study.id, "run", 3, 0, lines.append, settle=searcher.settle,
                        on_db_lost=lambda e: _database_lost(store, request, e))
    trials = [Trial(t, searcher.suggest(t)) for t in "ab"]
    for trial in trials:
        recorder.on_trial_start(0, [], trial)
    report = result(curve=[[{"epoch": i, "note": "x" * 200} for i in range(200)]]).report()
    searcher.on_trial_complete("a", report)
    recorder.on_trial_result(0, [], trials[0], report)
    recorder.on_trial_complete(0, [], trials[0])  # recorded, then told
    damage(store)
    searcher.on_trial_complete("b", report)
    recorder.on_trial_result(0, [], trials[1], report)
    recorder.on_trial_complete(0, [], trials[1])
    return request, store, ot, searcher, recorder, lines


def test_a_full_database_stops_the_search_with_one_line_and_optuna_is_not_told(tmp_path):
    """A write refused for good (here SQLite's file may not grow: a full disk) is not a result
    to drop and go on from: the run stops as for a lost database, Optuna is not told the
    result our table lacks, and the line says what to do."""
    from types import SimpleNamespace

    from sqlalchemy import event

    from nas.search import _lost_database

    def fill(store) -> None:
        event.listen(store._engine, "connect",
                     lambda conn, _: conn.execute("PRAGMA max_page_count = 1"))
        store._engine.dispose()  # from now on the file cannot grow

    request, store, ot, searcher, recorder, lines = _second_trial_after(tmp_path, fill)
    assert request.requested and request.exit_code == 1 and request.database_refused
    assert request.database == "database or disk is full"
    assert request.reason == "interrupted: the database refused writes (database or disk is full)"
    assert lines[-1] == ("[ not recorded ] #1 trial b ended COMPLETE: the database refuses "
                         "writes; the search stops"), lines
    assert [t.state for t in ot.trials] == [optuna.trial.TrialState.COMPLETE,
                                            optuna.trial.TrialState.RUNNING]
    run = SimpleNamespace(outcome=None, message=None)
    line = str(_lost_database(request, None, store, "s", DEFAULT_OBJECTIVES, searcher,
                              recorder, run, 1.0))
    assert line == (f"error: the database sqlite:///{tmp_path}/nas.db refused a write (database "
                    "or disk is full); the search stopped: 1 trial(s) of this run recorded "
                    "before it, 1 left RUNNING (the next run of this study closes them as "
                    "INTERRUPTED and trains them again); re-run the same command once it takes "
                    "writes again (free disk space, or make it writable), to resume"), line
    rows = store.trials("s")
    assert [(t.key, t.state) for t in rows] == [("run:a", "COMPLETE"), ("run:b", "RUNNING")]
    assert rows[0].metrics["optuna_trial"] == 0  # its Optuna trial, for a resume to match


def test_tables_dropped_under_the_search_stop_it_with_one_line(tmp_path):
    """The database dropped and made again under a running search (here its tables dropped):
    it ended in a traceback; now the run stops as for a lost database, Optuna is not told, and
    the line says the tables are gone."""
    from types import SimpleNamespace

    from sqlalchemy import create_engine, text

    from nas.search import _lost_database

    def drop(store) -> None:
        engine = create_engine(store.url)
        with engine.begin() as conn:
            for name in ("nas_trials", "nas_runs", "nas_studies"):
                conn.execute(text(f"DROP TABLE {name}"))
        engine.dispose()

    request, store, ot, searcher, recorder, lines = _second_trial_after(tmp_path, drop)
    assert request.requested and request.exit_code == 1
    assert request.database_gone == "tables"
    assert request.database == "its tables are gone: no such table: nas_trials", request.database
    assert lines[-1] == ("[ not recorded ] #1 trial b ended COMPLETE: the database lost its "
                         "tables; the search stops"), lines
    assert [t.state for t in ot.trials] == [optuna.trial.TrialState.COMPLETE,
                                            optuna.trial.TrialState.RUNNING]
    run = SimpleNamespace(outcome=None, message=None)
    line = str(_lost_database(request, None, store, "s", DEFAULT_OBJECTIVES, searcher,
                              recorder, run, 1.0))
    assert line == (f"error: lost the database sqlite:///{tmp_path}/nas.db (its tables are "
                    "gone: no such table: nas_trials); the search stopped (1 trial(s) of this "
                    "run had been recorded in it): what was dropped took its results with it; "
                    "once the database is restored from a backup, re-run the same command to "
                    "resume"), line


def test_a_ctrl_c_then_a_database_that_refuses_the_close_out_is_named_in_the_line(tmp_path):
    """A Ctrl-C came first, then the close-out's writes were refused: the run does not claim
    to have marked trials INTERRUPTED; the stop names the database (exit 130 all the same)."""
    import signal

    from sqlalchemy import event

    from nas._recorder import Recorder
    from nas.search import _close_running

    from ._results import study_setup

    _, store, study, _ = study_setup(tmp_path)
    recorder = Recorder(store, study.id, "run", 3, 0, lambda line: None)
    recorder.on_trial_start(0, [], Trial("a", {"arch_hash": "ha", "arch": {}, "params": {}}))
    request = StopRequest()
    request.handle(signal.SIGINT, None)
    event.listen(store._engine, "connect",
                 lambda conn, _: conn.execute("PRAGMA query_only = ON"))  # takes no writes
    store._engine.dispose()
    assert _close_running(store, study.id, None, recorder, request, None) == 0
    assert request.database == "attempt to write a readonly database", request.database
    assert request.database_refused and request.exit_code == 130
    assert [t.state for t in store.trials("s")] == ["RUNNING"]  # the next run closes it
