"""End to end on a real PostgreSQL server (started by tests/conftest.py): a search through the
CLI with a password in --db, which must never be printed, logged or stored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from db import Store

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _all_rows_text(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            chunks = []
            for table in inspect(conn).get_table_names():
                rows = conn.execute(text(f'SELECT * FROM "{table}"')).fetchall()
                chunks.append(f"{table}: {rows!r}")
            return "\n".join(chunks)
    finally:
        engine.dispose()


def test_search_on_postgresql_never_shows_the_password(pg_database_url, tmp_path):
    from sqlalchemy.engine import make_url

    password = make_url(pg_database_url).password
    assert password, "the test server's URL must carry a password"
    runs = tmp_path / "runs"
    r = subprocess.run([sys.executable, str(ROOT / "run_search.py"), "--space", "tiny",
                        "--budget", "2", "--epochs", "1", "--max-concurrent", "2", "--dataset",
                        "digits", "--db", pg_database_url, "--runs-dir", str(runs), "--study",
                        "pg"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert password not in r.stdout + r.stderr, "password printed"
    assert "***" in r.stdout, "the masked URL is shown instead"

    store = Store(pg_database_url)
    done = store.trials("pg", states=["COMPLETE"])
    assert len(done) == 2 and len({t.arch_hash for t in done}) == 2
    ot = optuna.load_study(study_name="pg", storage=pg_database_url)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in ot.trials) == 2
    assert len(ot.trials) == len(store.trials("pg")), "both tables count the same proposals"
    (run,) = store.runs("pg")
    assert run.outcome == "completed" and "***" in run.db_url
    assert all(t.run_id == run.id for t in store.trials("pg"))

    assert password not in _all_rows_text(pg_database_url), "password stored in a table"
    for f in runs.rglob("*"):
        if f.is_file() and f.stat().st_size < 50_000_000:
            assert password.encode() not in f.read_bytes(), f"password written to {f}"


def test_a_database_lost_for_longer_than_the_wait_stops_the_search_and_the_resume_closes_it(
        private_postgres, tmp_path):
    """The server goes down after the first trial is recorded and stays down past
    $NAS_DB_OUTAGE_S: the search stops with one line and exit 1, Optuna is never told a result
    our table lacks, and once the server is back the same command resumes to the budget with
    both tables agreeing."""
    import os
    import threading
    import time

    server, url = private_postgres
    cmd = [sys.executable, str(ROOT / "run_search.py"), "--space", "tiny", "--budget", "5",
           "--epochs", "1", "--dataset", "digits", "--db", url, "--runs-dir",
           str(tmp_path / "runs"), "--study", "lost", "--executor", "local",
           "--progress-every", "0"]
    env = {**os.environ, "NAS_DB_OUTAGE_S": "2"}
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=ROOT, env=env)
    out: list[str] = []
    first = threading.Event()

    def read() -> None:
        for line in p.stdout:
            out.append(line)
            if line.startswith("[  1/5]"):
                first.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert first.wait(300), "".join(out)[-3000:]
        server.halt()  # for good, until the run has ended
        halted = time.monotonic()
        err = p.communicate(timeout=120)[1]
        took = time.monotonic() - halted
    finally:
        if p.poll() is None:
            p.kill()
    reader.join(10)
    text = "".join(out)
    assert p.returncode == 1, (p.returncode, err[-3000:])
    assert "Traceback" not in text + err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: lost the database postgresql"), err
    assert "(no answer for 2 s: connection failed" in lines[0] and "re-run the same command" \
        in lines[0], lines[0]
    assert make_url(url).password not in text + err
    assert took < 60, took  # the wait, once or twice, and a close-out that waits no more

    server.resume()
    store = Store(url)
    ours = {t.number: t.state for t in store.trials("lost")}
    ot = {t.number: t.state.name for t in optuna.load_study(study_name="lost",
                                                          storage=url).trials}
    assert ours[0] == "COMPLETE", ours
    # our table is the record: Optuna never holds a result our table lacks
    assert all(ours.get(n) in ("COMPLETE", "DUPLICATE") for n, s in ot.items()
               if s == "COMPLETE"), (ours, ot)

    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ours = {t.number: t.state for t in store.trials("lost")}
    ot = {t.number: t.state.name for t in optuna.load_study(study_name="lost",
                                                          storage=url).trials}
    assert list(ours.values()).count("COMPLETE") == 5, ours
    assert "RUNNING" not in ours.values() and "RUNNING" not in ot.values(), (ours, ot)
    assert ours.keys() == ot.keys(), "both tables count the same proposals"
    # (Optuna is told a duplicate's known result: COMPLETE there, DUPLICATE here)
    assert all(ot[n] == "COMPLETE" for n, s in ours.items() if s == "COMPLETE"), (ours, ot)
    assert all(s in ("COMPLETE", "DUPLICATE") for n, s in ours.items() if ot[n] == "COMPLETE")
    assert [run.outcome for run in store.runs("lost")][-1] == "completed"
    assert "running" not in [run.outcome for run in store.runs("lost")]
