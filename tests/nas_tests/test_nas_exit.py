"""nas._exit.leave: sys.exit without module teardown, after every atexit handler and thread."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = textwrap.dedent("""
    import atexit, sys, threading, time
    from pathlib import Path
    import nas  # registers the fast exit's handler first, as every entry point does
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

    class Teardown:  # freed by Python's module teardown, which leave() skips
        def __del__(self):
            (out / "teardown").write_text("ran")

    keep = Teardown()
    atexit.register(lambda: (out / "atexit").write_text("ran"))  # as Ray's and logging's are
    threading.Thread(target=lambda: (time.sleep(0.5), (out / "thread").write_text("ran"))).start()
    print("last line", end="")  # buffered: flushed before the process ends
    {end}
""")


@pytest.mark.parametrize("end", ["leave(3)", "sys.exit(3)"])
def test_leave_skips_only_the_teardown(tmp_path, end):
    script = tmp_path / "script.py"
    script.write_text(_SCRIPT.replace("{end}", end))
    r = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
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
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import atexit, sys
        from pathlib import Path
        atexit.register(lambda: Path(sys.argv[1], "early").write_text("ran"))
        from nas._exit import leave
        leave(4)
    """))
    r = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 4 and (tmp_path / "early").read_text() == "ran", r.stderr[-2000:]
