"""nas._exit.leave: sys.exit without module teardown, after every atexit handler and thread."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_TEARDOWN_MARK = textwrap.dedent("""
    import sys
    from pathlib import Path
    import nas

    class Teardown:  # freed by Python's module teardown, which the fast exit skips
        def __init__(self):
            self.write = Path(sys.argv[1], "teardown").write_text  # (sys is gone by then)

        def __del__(self):
            self.write("ran")

    keep = Teardown()
""")


def _run(tmp_path, *argv, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv, str(tmp_path)], cwd=tmp_path, input=stdin,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


_SCRIPT = _TEARDOWN_MARK + textwrap.dedent("""
    import atexit, threading, time
    from nas._exit import leave
    from db._engine import make_engine
    from sqlalchemy import text

    out = Path(sys.argv[1])
    engine = make_engine(f"sqlite:///{out / 'x.db'}")  # WAL, its connection pooled (open)
    with engine.begin() as c:
        c.execute(text("CREATE TABLE t (v INTEGER)"))
        for v in range(500):
            c.execute(text("INSERT INTO t VALUES (:v)"), {"v": v})
    assert (out / "x.db-wal").exists()  # the rows are in the -wal file until it is folded back

    atexit.register(lambda: (out / "atexit").write_text("ran"))  # as Ray's and logging's are
    threading.Thread(target=lambda: (time.sleep(0.5), (out / "thread").write_text("ran"))).start()
    print("last line", end="")  # buffered: flushed before the process ends
    {end}
""")


@pytest.mark.parametrize("end", ["leave(3)", "sys.exit(3)"])
def test_leave_skips_only_the_teardown(tmp_path, end):
    (tmp_path / "script.py").write_text(_SCRIPT.replace("{end}", end))
    r = _run(tmp_path, str(tmp_path / "script.py"))
    assert r.returncode == 3, r.stderr[-2000:]
    assert r.stdout == "last line" and "Traceback" not in r.stderr, (r.stdout, r.stderr)
    assert (tmp_path / "atexit").exists() and (tmp_path / "thread").exists()
    # the database is whole in its main file: a copy of x.db alone holds every row
    assert not (tmp_path / "x.db-wal").exists()
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(tmp_path / "x.db", copy / "x.db")
    with sqlite3.connect(copy / "x.db") as con:
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 500
    # what leave() saves: Python's teardown (the sys.exit case shows the test would see it)
    assert (tmp_path / "teardown").exists() == (end == "sys.exit(3)")


def test_a_handler_registered_before_nas_still_runs(tmp_path):
    """``coverage run`` or a sitecustomize registers its handler before ``nas`` is imported:
    it would run after ours, so leave() takes Python's full teardown there."""
    (tmp_path / "script.py").write_text(textwrap.dedent("""
        import atexit, sys
        from pathlib import Path
        atexit.register(lambda: Path(sys.argv[1], "early").write_text("ran"))
        from nas._exit import leave
        leave(4)
    """))
    r = _run(tmp_path, str(tmp_path / "script.py"))
    assert r.returncode == 4 and (tmp_path / "early").read_text() == "ran", r.stderr[-2000:]


def test_the_fast_exit_is_taken_by_python_m(tmp_path):
    (tmp_path / "viam.py").write_text(_TEARDOWN_MARK + "from nas._exit import leave\nleave(5)\n")
    r = _run(tmp_path, "-m", "viam")
    assert r.returncode == 5 and not (tmp_path / "teardown").exists(), r.stderr[-2000:]


@pytest.mark.parametrize("wrapper", ["caught", "cProfile", "python -i"])
def test_a_caller_that_catches_the_exit_ends_the_process_its_own_way(tmp_path, wrapper):
    """leave() deep inside another program (a driver that catches SystemExit, cProfile, pdb),
    or with a prompt after it (python -i): the process ends with the code and the teardown it
    would have had with sys.exit."""
    if wrapper == "caught":  # leave(0) caught, then a failure: exit 1, not 0
        (tmp_path / "script.py").write_text(_TEARDOWN_MARK + textwrap.dedent("""
            from nas._exit import leave
            def command():
                leave(0)
            try:
                command()
            except SystemExit:
                pass
            raise RuntimeError("after the command")
        """))
        r, code = _run(tmp_path, str(tmp_path / "script.py")), 1
    else:  # cProfile, or python -i's prompt, takes the SystemExit of leave(3): exit 0
        (tmp_path / "script.py").write_text(_TEARDOWN_MARK + "from nas._exit import leave\n"
                                            "leave(3)\n")
        how = ["-m", "cProfile", "-o", str(tmp_path / "prof")] if wrapper == "cProfile" else ["-i"]
        r, code = _run(tmp_path, *how, str(tmp_path / "script.py"),
                       stdin="raise SystemExit(0)\n"), 0
    assert r.returncode == code and (tmp_path / "teardown").exists(), r.stderr[-2000:]


def test_a_connection_still_checked_out_keeps_the_full_teardown(tmp_path):
    """dispose() leaves a checked-out connection open (its -wal file would stay): the fast exit
    steps aside and Python's teardown closes it, as before."""
    (tmp_path / "script.py").write_text(_TEARDOWN_MARK + textwrap.dedent("""
        from sqlalchemy import text
        from db._engine import make_engine
        from nas._exit import leave
        engine = make_engine(f"sqlite:///{Path(sys.argv[1]) / 'x.db'}")
        conn = engine.connect()
        conn.execute(text("CREATE TABLE t (v INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
        conn.commit()
        leave(0)
    """))
    r = _run(tmp_path, str(tmp_path / "script.py"))
    assert r.returncode == 0 and (tmp_path / "teardown").exists(), r.stderr[-2000:]
    assert not (tmp_path / "x.db-wal").exists()
