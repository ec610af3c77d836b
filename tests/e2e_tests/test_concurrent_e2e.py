"""Two searches of one study started together: one runs, the other is refused; budget exact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from db import Store
from e2e_tests.tables import check_tables

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_two_runs_of_one_study_at_once_keep_the_budget(tmp_path):
    url = f"sqlite:///{tmp_path}/nas.db"
    # the study's lease is taken before any executor starts: in the driver (--executor local)
    # is enough, and saves a Ray start (a lease held by a run through Ray: the test below)
    cmd = [sys.executable, str(ROOT / "run_search.py"), "--space", "tiny", "--budget", "3",
           "--epochs", "1", "--executor", "local", "--db", url, "--runs-dir", str(tmp_path),
           "--study", "both", "--dataset", "digits"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], (codes, [e[-2000:] for _, e in outs])
    loser = next(err for p, (_, err) in zip(procs, outs) if p.returncode == 2)
    (line,) = loser.strip().splitlines()
    assert "study 'both' is being searched by run" in line and "--study" in line, line

    store = Store(url)
    check_tables(url, "both", budget=3)  # the budget kept exactly, both tables agreeing
    assert [r.outcome for r in store.runs("both")] == ["completed"], store.runs("both")


def test_a_frozen_run_that_wakes_after_a_takeover_leaves_its_successor_alone(tmp_path):
    """SIGSTOP a run past the stale limit, let a second run take the study over, SIGCONT the
    first: it stops (exit 143, saying why) without writing anything, and the second completes
    the budget with both tables agreeing."""
    import os
    import signal
    import time

    url = f"sqlite:///{tmp_path}/nas.db"
    env = {**os.environ, "NAS_LEASE_STALE_S": "4"}
    cmd = [sys.executable, str(ROOT / "run_search.py"), "--space", "tiny", "--budget", "2",
           "--epochs", "1", "--max-concurrent", "1", "--db", url, "--runs-dir", str(tmp_path),
           "--study", "frozen"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=ROOT, env=env)
    try:
        for line in first.stdout:  # wait for its first completed trial
            if line.startswith("[  1/2]"):
                break
        # freeze it while its second trial trains: not inside a write (a frozen SQLite writer
        # holds the lock, and nobody can take over until it wakes)
        _wait_for(lambda: Store(url).count("frozen", "RUNNING") > 0, "a second trial running")
        time.sleep(0.5)
        for _ in range(20):  # frozen inside a write (its heartbeat's), it is thawed and frozen
            assert first.poll() is None, "the first run ended before it could be frozen"
            first.send_signal(signal.SIGSTOP)  # again a moment later: a fresh clone's
            if not _write_locked(tmp_path / "nas.db"):  # make test hit that once in a while
                break
            first.send_signal(signal.SIGCONT)
            time.sleep(0.3)
        else:
            raise AssertionError("the first run held the database's write lock at every freeze")
        time.sleep(6)  # past the stale limit
        # the successor trains in its own process (--executor local): the takeover is the
        # driver's, and a second Ray start beside the frozen run's would cost ~20 s here
        second = subprocess.Popen(cmd + ["--executor", "local"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)

        def taken_over() -> bool:
            if Store(url).runs("frozen")[0].outcome == "abandoned":
                return True
            assert second.poll() is None, f"the second run ended: {second.communicate()}"
            return False

        _wait_for(taken_over, "the second run to take over")
        first.send_signal(signal.SIGCONT)
        _, err1 = first.communicate(timeout=300)
        out2, err2 = second.communicate(timeout=600)
    finally:
        for p in (first,):
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
    assert second.returncode == 0, err2[-3000:]
    assert first.returncode == 143, (first.returncode, err1[-2000:])
    assert "another run took over this study" in err1, err1[-2000:]
    assert "Traceback" not in err1 + err2, (err1 + err2)[-3000:]

    store = Store(url)
    ours, _ = check_tables(url, "frozen", budget=2)
    runs = store.runs("frozen")
    assert [r.outcome for r in runs] == ["abandoned", "completed"], runs
    first_run, second_run = runs[0].id, runs[1].id
    after = [t for t in ours if t.started_at > runs[1].started_at]
    # after the takeover the first run finished nothing: what it had opened since (asked of
    # Optuna between its lease check and the freeze) it closed as interrupted, in both tables
    assert all(t.run_id == second_run or t.state == "INTERRUPTED" for t in after), \
        [(t.number, t.run_id, t.state) for t in after]
    assert all(t.run_id == second_run for t in ours if t.state == "COMPLETE"
               and t.started_at > runs[1].started_at)
    assert {t.run_id for t in ours} <= {first_run, second_run}


def _write_locked(path) -> bool:
    """Whether another connection holds ``path``'s SQLite write lock (a transaction open)."""
    import sqlite3

    conn = sqlite3.connect(path, timeout=0.5, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as e:
        if "locked" not in str(e):
            raise
        return True
    finally:
        conn.close()


def _wait_for(condition, what: str, timeout: float = 180.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
