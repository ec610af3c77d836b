"""End to end: a search killed (-9), interrupted (Ctrl-C, SIGTERM) or with a failing trial.

Each test runs the real CLI in a subprocess of its own session (so a signal to its process group
is what a terminal's Ctrl-C sends), with SIGINT restored to its default there (a background job
of a non-interactive shell inherits it ignored).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
import pytest

from db import Store
from e2e_tests.tables import FAIL, RUNNING, check_tables
from nas._reaper import session_processes

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _command(runs: Path, budget: int, dataset: str = "clutter", local: bool = False
             ) -> list[str]:
    # clutter where a signal must land inside a training (its epochs last long enough);
    # local: --executor local (one trial at a time, in the driver)
    place = ["--executor", "local"] if local else ["--max-concurrent", "2"]
    return [sys.executable, str(ROOT / "run_search.py"), "--space", "tiny", "--epochs", "1",
            "--budget", str(budget), *place, "--runs-dir", str(runs), "--dataset", dataset]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(runs: Path, budget: int, tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    proc = subprocess.Popen(_command(runs, budget), cwd=ROOT, stdout=out.open("w"),
                            stderr=err.open("w"), start_new_session=True,
                            preexec_fn=_default_sigint)
    return proc, out, err


def _wait_for(what, proc: subprocess.Popen, timeout: float = 150.0) -> None:
    t0 = time.monotonic()
    while not what():
        assert proc.poll() is None, f"the search ended (rc {proc.returncode}) before the signal"
        assert time.monotonic() - t0 < timeout, "timed out waiting for the search"
        time.sleep(0.5)


def _completed_one(out: Path):
    return lambda: re.search(r"^\[\s*1/", out.read_text(), re.M) is not None


def _running_row(db: Path):
    def check() -> bool:  # read-only: the test must not create the database itself
        if not db.exists():
            return False
        try:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
                return bool(con.execute("SELECT count(*) FROM nas_trials "
                                        "WHERE state = 'RUNNING'").fetchone()[0])
        except sqlite3.Error:  # its tables are not there yet
            return False

    return check


def _leftovers(pid: int, wait_s: float = 20.0) -> list[str]:
    """Processes of the Ray session the driver ``pid`` started, after up to ``wait_s``."""
    dirs = glob.glob(f"/tmp/ray/session_*_{pid}")
    assert dirs, f"no Ray session dir of driver {pid} under /tmp/ray"
    t0 = time.monotonic()
    while True:
        procs = [p for d in dirs for p in session_processes(d)]
        if not procs or time.monotonic() - t0 > wait_s:
            return [f"{p.pid} {p.name()}" for p in procs]
        time.sleep(1)


def test_kill_9_leaves_no_ray_process_and_a_rerun_resumes_exactly(tmp_path):
    runs, budget = tmp_path / "runs", 3
    url = f"sqlite:///{runs}/nas.db"
    proc, out, _ = _start(runs, budget, tmp_path)
    _wait_for(_completed_one(out), proc)
    time.sleep(2.0)  # into the next trials' training, not the driver's bookkeeping after one
    proc.kill()
    proc.wait()
    assert _leftovers(proc.pid) == [], "Ray processes outlived the killed driver"
    running = (Store(url).trials("tiny", states=["RUNNING"])  # started by Tune, or only asked
               + optuna.load_study(study_name="tiny", storage=url).get_trials(states=(RUNNING,)))
    assert running, "nothing was running when the driver was killed"

    r = subprocess.run(_command(runs, budget), cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    ours, ot = check_tables(url, "tiny", budget)
    interrupted = [t for t in ours if t.state == "INTERRUPTED"]
    assert interrupted and all("previous run was killed" in t.error for t in interrupted)
    done = {t.arch_hash for t in ours if t.state == "COMPLETE"}
    assert {t.arch_hash for t in interrupted} <= done, "interrupted architectures are retried"


# SIGTERM to the driver alone (kill PID) takes the sigint case's path (Tune stops the trials)
# with the sigterm-group case's handler and exit code; it is not run again here (22 s)
@pytest.mark.parametrize("sig, times", [(signal.SIGINT, 1), (signal.SIGINT, 2),
                                        (signal.SIGTERM, "group")],
                         ids=["sigint", "sigint-twice", "sigterm-group"])
def test_signal_stops_cleanly_with_one_line_and_resume_completes(tmp_path, sig, times):
    runs, budget = tmp_path / "runs", 3
    url = f"sqlite:///{runs}/nas.db"
    proc, out, err = _start(runs, budget, tmp_path)
    resume = sig == signal.SIGINT and times == 1  # the others are cheaper: no resume
    if sig == signal.SIGINT:  # Ctrl-C: the terminal signals the whole foreground group
        _wait_for(_completed_one(out) if resume else _running_row(runs / "nas.db"), proc)
        os.killpg(proc.pid, signal.SIGINT)
        if times == 2:  # a second Ctrl-C during the shutdown forces it
            time.sleep(1.0)
            os.killpg(proc.pid, signal.SIGINT)
    else:  # SIGTERM to the whole group, as timeout(1) sends it
        _wait_for(_running_row(runs / "nas.db"), proc)
        ray_groups = {os.getpgid(p.pid) for p in psutil.Process(proc.pid).children(True)
                      if p.name() in ("gcs_server", "raylet")}
        assert ray_groups and proc.pid not in ray_groups, "Ray's processes are in our group"
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
        assert time.monotonic() - t0 < 45, "waited out Ray's 60 s GCS timeout"
    rc = proc.wait(timeout=120)
    lines = [ln for ln in err.read_text().splitlines() if ln.strip()]
    label, code = ("Ctrl-C", 130) if sig == signal.SIGINT else ("SIGTERM", 143)
    assert rc == code, (rc, lines[-20:])
    assert len(lines) == 1 and re.fullmatch(
        rf"interrupted \({label}\): \d+ completed trials kept, [1-9]\d* running trials marked "
        r"INTERRUPTED; re-run the same command to resume", lines[0]), lines[-20:]
    assert _leftovers(proc.pid) == [], "Ray processes outlived the interrupted run"
    ours, ot = check_tables(url, "tiny")
    reason = "interrupted by Ctrl-C (SIGINT)" if sig == signal.SIGINT else "interrupted by SIGTERM"
    reason += " (forced by a second signal)" if times == 2 else ""
    interrupted = [t for t in ours if t.state == "INTERRUPTED"]
    assert interrupted and all(t.error == reason for t in interrupted), interrupted
    assert all(t.user_attrs["interrupted"] == reason for t in ot
               if t.state == FAIL and "interrupted" in t.user_attrs)
    assert [(r.outcome, r.message) for r in Store(url).runs("tiny")] == [("interrupted", reason)]
    kept = int(re.search(r"(\d+) completed trials kept", lines[0]).group(1))
    assert kept == sum(t.state == "COMPLETE" for t in ours) >= resume
    if resume:  # in this process (a resume through Ray is the kill -9 test's): no Ray start
        r = subprocess.run(_command(runs, budget, local=True), cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        check_tables(url, "tiny", budget)


def test_failed_trial_stores_its_reason_and_traceback_with_one_line_each(tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "NAS_TEST_RAISE": "boom"}  # every trial raises RuntimeError("boom")
    proc = subprocess.Popen(_command(runs, 1, "digits"), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr[-3000:]
    failed = [t for t in Store(f"sqlite:///{runs}/nas.db").trials("tiny") if t.state == "FAIL"]
    assert len(failed) == 2, failed  # budget 1: up to budget + max_failures (= budget) attempts
    for t in failed:
        assert t.error == "RuntimeError: boom", t.error
        log = Path(t.metrics["log_path"])
        assert log.parent.parent == runs / "logs", log
        text = log.read_text()
        assert 'raise RuntimeError(os.environ["NAS_TEST_RAISE"])' in text, text[-2000:]
        assert text.rstrip().endswith("RuntimeError: boom"), text[-2000:]
    lines = [ln for ln in stdout.splitlines() if "boom" in ln]
    assert sorted(lines) == sorted(f"[ failed ] #{t.number} RuntimeError: boom (traceback: "
                                   f"{t.metrics['log_path']})" for t in failed), lines
    assert stderr.strip().splitlines() == ["error: only 0 of 1 trials completed (see the "
                                           "failures above)"], stderr[-3000:]
    assert _leftovers(proc.pid) == [], "Ray processes outlived the run"


def test_a_trial_whose_worker_is_killed_is_retried_not_failed(tmp_path):
    """A trial's Ray worker killed mid-training (as the OOM killer, or a node going away, would
    end it): nothing the architecture did, so it is INTERRUPTED and trained again in the same
    run, and the search still completes its budget with no failure recorded."""
    runs, budget = tmp_path / "runs", 2
    url = f"sqlite:///{runs}/nas.db"
    proc, out, err = _start(runs, budget, tmp_path)
    training: list[psutil.Process] = []

    def a_trial_is_training() -> bool:
        if not _running_row(runs / "nas.db")():
            return False
        for p in psutil.Process(proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if " ".join(p.cmdline()).startswith("ray::ImplicitFunc"):
                    training.append(p)
                    return True
        return False

    _wait_for(a_trial_is_training, proc)
    training[0].kill()
    rc = proc.wait(timeout=300)
    assert rc == 0, err.read_text()[-3000:]
    ours, _ = check_tables(url, "tiny", budget)
    lost = [t for t in ours if t.state == "INTERRUPTED"]
    assert len(lost) == 1 and lost[0].error.startswith(
        "lost its Ray worker, retried: ActorDiedError"), [(t.state, t.error) for t in ours]
    assert lost[0].arch_hash in {t.arch_hash for t in ours if t.state == "COMPLETE"}
    assert not [t for t in ours if t.state == "FAIL"], [(t.state, t.error) for t in ours]
    text = out.read_text()
    assert re.search(rf"^\[ lost \] #{lost[0].number} ActorDiedError", text, re.M), text[-3000:]
    final = re.findall(r"^\[progress\] .*$", text, re.M)[-1]  # the line the run ends with
    assert f"{budget}/{budget} done · 0 running · 0 failed" in final, final


def test_a_trial_killed_mid_training_resumes_after_its_last_epoch(tmp_path):
    """kill -9 after a trial's first epoch; the re-run retries that architecture from its
    saved state and finishes it (--executor local: the trial runs in the process that is
    killed; on Ray the worker saves the same files). That the resumed training equals an
    unbroken one is tests/proxies_tests/test_proxies_checkpoint.py's."""
    runs = tmp_path / "runs"
    command = [sys.executable, str(ROOT / "run_search.py"), "--space", "tiny", "--epochs", "2",
               "--budget", "1", "--executor", "local", "--runs-dir", str(runs),
               "--dataset", "clutter"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.monotonic()
    while not glob.glob(str(runs / "checkpoints" / "tiny-*" / "*-r0.pt")):
        assert proc.poll() is None, f"the search ended (rc {proc.returncode}) before an epoch"
        assert time.monotonic() - t0 < 150, "timed out waiting for the first epoch's state"
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    r = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    ours, _ = check_tables(f"sqlite:///{runs}/nas.db", "tiny", 1)
    assert [t.state for t in ours] == ["INTERRUPTED", "COMPLETE"]
    assert ours[0].arch_hash == ours[1].arch_hash, "the interrupted architecture is retried"
    assert ours[1].metrics["resumed_epochs"] == [1]
    assert [e["epoch"] for e in ours[1].metrics["curve"][0]] == [1, 2]
    assert os.listdir(runs / "checkpoints") == [], "a finished run leaves no training state"
