"""``python -m nas dashboard`` and ``report`` on bad input: one line on stderr, exit 2, nothing
created. Through ``nas.cli.main`` in this process, and two cases as real subprocesses."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from db import Store
from nas.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    with Store(url) as w:
        w.get_or_create_study("present", space="tiny", space_hash="h",
                              objectives=("accuracy:max", "macs:min"), config={})
    return url


def _one_line(code: int, err: str, says: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}, stderr:\n{err[-2000:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one line: {err!r}"
    assert says in lines[0], f"expected {says!r} in {lines[0]!r}"


@pytest.mark.parametrize("args, says", [
    (["dashboard", "--study", "nope"], "no study named 'nope'"),
    (["dashboard", "--port", "70000"], "--port: must be 0..65535"),
    (["dashboard", "--host", "no-such-host.invalid", "--port", "0"],
     "cannot serve on no-such-host.invalid:0: Invalid host/port specified (--host must be an "
     "address of this machine"),
    (["dashboard", "--host", "192.0.2.1", "--port", "0"],  # TEST-NET-1: nobody's address
     "(--host must be an address of this machine: 127.0.0.1 (the default), 0.0.0.0 for all, "
     "or one of its interfaces' ("),
    (["dashboard", "--refresh", "0"], "--refresh must be 0.5 .. 86400 seconds"),
    (["dashboard", "--refresh", "inf"], "--refresh must be 0.5 .. 86400 seconds"),
    (["dashboard", "--reference", "accuracy=0"],
     "--reference must give every objective (accuracy, macs); missing: macs (study 'present')"),
    (["dashboard", "--ideal", "accuracy=1"], "--ideal needs --reference"),
    (["report", "--study", "present", "--reference", "accuracy=2,macs=1"],
     "--reference accuracy=2 must be worse than the ideal 1 (accuracy:max)"),
    (["report", "--study", "present", "--ideal", "accuracy=1"], "--ideal needs --reference"),
    (["report", "--study", "nope"], "no study named 'nope'"),
    (["report", "--study", "present", "-o", "{tmp}/nowhere/r.html"], "the folder"),
    (["report", "--study", "present", "-o", "{tmp}/notes.txt"], "a name ending in .html"),
])
def test_bad_input_is_one_line_and_exit_2(url, tmp_path, capsys, args, says) -> None:
    args = [a.format(tmp=tmp_path) for a in args]
    try:
        code = main([args[0], "--db", url, *args[1:]])
    except SystemExit as e:  # argparse
        code = e.code
    captured = capsys.readouterr()
    _one_line(code, captured.err, says)
    assert " on http://" not in captured.out, f"it served: {captured.out!r}"
    left = [p.name for p in tmp_path.iterdir() if not p.name.startswith("nas.db")]
    assert left == [], f"files left behind: {left}"  # (SQLite's -wal/-shm may stay)


def test_unreachable_postgres_names_it_without_the_password(capsys) -> None:
    code = main(["dashboard", "--db", "postgresql://nobody:s3cret@127.0.0.1:1/x"])
    err = capsys.readouterr().err
    _one_line(code, err, "postgresql://nobody:***@127.0.0.1:1/x")
    assert "s3cret" not in err


def test_subprocess_missing_database_and_busy_port(url, tmp_path: Path) -> None:
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    busy = held.getsockname()[1]
    missing = tmp_path / "none" / "nas.db"
    commands = {"missing": ["--db", f"sqlite:///{missing}"],
                "busy": ["--db", url, "--port", str(busy)]}
    try:
        procs = {k: subprocess.Popen([sys.executable, "-m", "nas", "dashboard", *c], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for k, c in commands.items()}
        done = {}
        for k, p in procs.items():
            try:
                done[k] = (*p.communicate(timeout=120), p.returncode)
            except subprocess.TimeoutExpired:
                p.kill()
                raise AssertionError(f"{k}: the dashboard did not exit") from None
    finally:
        held.close()
    out, err, code = done["missing"]
    _one_line(code, err, f"no database at sqlite:///{missing}")
    assert not missing.parent.exists(), "the dashboard created the database's folder"
    out, err, code = done["busy"]
    _one_line(code, err, f"cannot serve on 127.0.0.1:{busy}")
    assert "(choose another --port, or --port 0 for any free one)" in err, err
    assert " on http://" not in out


def test_a_host_it_cannot_serve_on_is_told_this_machine_s_addresses() -> None:
    from nas._dashboard import _local_addresses

    listed = _local_addresses().split(", ")
    assert listed[0] == "127.0.0.1", listed  # loopback first, however many addresses follow
    rest = [a for a in listed[1:] if a not in ("::1", "...")]
    assert rest == sorted(rest, key=lambda a: ":" in a), f"IPv4 before IPv6: {listed}"
    assert all("%" not in a for a in listed), listed  # no zone suffix (fe80::1%eth0)


def test_the_report_replaces_an_earlier_report_but_no_other_file_unless_forced(
        url, tmp_path, capsys) -> None:
    # -o used to overwrite any .html, a user's own notes included, and replace links
    notes = tmp_path / "notes.html"
    notes.write_text("<html>my notes</html>")
    link = tmp_path / "link.html"
    link.symlink_to(tmp_path / "nas.db")
    for path, what in ((notes, "a file this command did not write"), (link, "a link")):
        code = main(["report", "--db", url, "--study", "present", "-o", str(path)])
        _one_line(code, capsys.readouterr().err,
                  f"-o {path} exists and is {what}; choose another name, or pass --force to "
                  "replace it")
    assert notes.read_text() == "<html>my notes</html>" and link.is_symlink()
    report = tmp_path / "r.html"
    for _ in range(2):  # a first report, then one over it: no --force needed
        assert main(["report", "--db", url, "--study", "present", "-o", str(report)]) == 0
        assert f"wrote {report} " in capsys.readouterr().out
    assert main(["report", "--db", url, "--study", "present", "-o", str(notes), "--force"]) == 0
    assert "my notes" not in notes.read_text() and "(metaformer-nas)." in notes.read_text()


def test_ctrl_c_while_the_dashboard_starts_says_nothing_of_trials(url, monkeypatch,
                                                                  capsys) -> None:
    """A Ctrl-C before the server runs (the dashboard imports Dash and opens the database for
    about a second) ends it with one line; it said "finished trials are in the database", a
    search's message, about a command that runs none."""
    import nas._dashboard

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # where a Ctrl-C during the start lands

    monkeypatch.setattr(nas._dashboard, "serve", interrupted)
    assert main(["dashboard", "--db", url, "--port", "0"]) == 130
    assert capsys.readouterr().err == "error: interrupted\n"


def test_a_folder_this_user_may_not_enter_is_one_line() -> None:
    """pathlib's exists()/is_dir() raise PermissionError on a folder the user may not enter
    (a colleague's home): that was a traceback in studies, pareto, report and a search. As
    root, which enters anything, the command runs as ``nobody``."""
    import os
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp())  # (pytest's tmp_path sits in a folder only root enters:
    base.chmod(0o755)  # 'nobody' would be refused there, whatever this test's folder says)
    closed = base / "closed"
    closed.mkdir(mode=0o700)
    argv = [sys.executable, "-m", "nas", "studies", "--db", f"sqlite:///{closed}/sub/nas.db"]
    if os.geteuid() == 0:
        argv[:0] = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        try:
            probe = subprocess.run([*argv[:5], "-c", "import nas.cli"], cwd=ROOT,
                                   capture_output=True).returncode
        except OSError:  # no setpriv
            probe = 1
        if probe:
            pytest.skip("cannot run this checkout's Python as 'nobody' here")
    else:
        closed.chmod(0o000)
    try:
        r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        closed.chmod(0o700)
        shutil.rmtree(base)
    assert r.returncode == 2 and r.stderr == (
        f"error: cannot use the path '{closed}/sub/nas.db': Permission denied (this user must "
        "be able to enter every folder on the path, and to read, or write, what it names)\n"), \
        r.stderr[-2000:]


@pytest.mark.parametrize("after_start", [False, True])
def test_ctrl_c_before_a_search_s_trials_says_nothing_was_trained(tmp_path, monkeypatch,
                                                                  capsys, after_start) -> None:
    """A Ctrl-C while a search prepared its dataset said "finished trials are in the
    database", with no database there; once its trials ran (a KeyboardInterrupt its own
    handlers did not turn into a stop) it still says so."""
    import nas.search

    def interrupted(*args, **kwargs):
        e = KeyboardInterrupt()
        if after_start:
            e.after_start = True  # as run_search marks it once the trials ran
        raise e

    monkeypatch.setattr(nas.search, "run_search", interrupted)
    assert main(["search", "--space", "tiny", "--budget", "1", "--runs-dir",
                 str(tmp_path)]) == 130
    assert capsys.readouterr().err == ("error: interrupted; finished trials are in the database\n"
                                       if after_start else
                                       "error: interrupted before any trial of this run started\n")
