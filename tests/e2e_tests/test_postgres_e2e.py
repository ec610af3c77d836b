"""End to end on a real PostgreSQL server (started by tests/conftest.py): a search through the
CLI with a password in --db, which must never be printed, logged or stored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from sqlalchemy import create_engine, inspect, text

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
