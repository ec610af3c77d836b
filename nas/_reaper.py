"""A watchdog process that ends this run's Ray processes when the driver ends, even by kill -9.

Ray ties the processes ``ray.init`` starts (GCS, raylet, monitors) to the driver's life, but the
dashboard and runtime-env agents the raylet starts (~190 MB together) outlive a killed driver.
:func:`start_reaper` runs this file as a child in a session of its own (a terminal's Ctrl-C does
not reach it) holding the read end of a pipe whose write end only the driver has: the kernel
closes it when the driver exits for any reason. The reaper then terminates (SIGTERM, then
SIGKILL) every process of *this* Ray session and nothing else: a process belongs to the session
when the session directory (unique: time stamp + driver pid) is in its command line (GCS, raylet,
monitors) or among its open files (the agents and workers the raylet starts keep their logs
there). Environment markers such as ``RAY_RAYLET_PID`` are not used: a pid can be reused.
Only a run that started Ray itself starts a reaper: a Ray instance the caller started is theirs.

Standard library and psutil only (a Ray dependency): it runs with ``python -I``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

__all__ = ["start_reaper", "stop_reaper", "session_processes"]

GRACE_S = 3.0  # SIGTERM to SIGKILL


def session_processes(session_dir: str, exclude: set[int] = frozenset()) -> list:
    """The live processes of the Ray session in ``session_dir`` (psutil.Process objects)."""
    import psutil

    session_dir = session_dir.rstrip("/")
    # the dir itself, not a longer name it is the start of (session_..._1 vs session_..._10)
    named = re.compile(re.escape(session_dir) + r"(?![^/\s,;:'\"])")
    found = []
    for p in psutil.process_iter():
        if p.pid in exclude:
            continue
        try:
            if _belongs(p, named, session_dir + "/"):
                found.append(p)
        except (psutil.Error, OSError):  # gone, or not ours to inspect
            continue
    return found


def _belongs(p, named: re.Pattern, prefix: str) -> bool:
    if any(named.search(arg) for arg in p.cmdline()):
        return True
    return any(f.path.startswith(prefix) for f in p.open_files())


def _reap(session_dir: str, exclude: set[int]) -> None:
    import psutil

    for _ in range(2):  # a second sweep for anything started while the first one ran
        procs = session_processes(session_dir, exclude)
        if not procs:
            return
        for p in procs:
            try:
                p.terminate()
            except psutil.Error:
                pass
        alive = _wait_gone(procs, GRACE_S)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        _wait_gone(alive, GRACE_S)


def _wait_gone(procs: list, timeout: float) -> list:
    """Those of ``procs`` still alive after up to ``timeout`` s (a zombie counts as gone)."""
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for p in procs:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.Error:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _main(session_dir: str, driver_pid: int) -> None:
    for s in (signal.SIGINT, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while sys.stdin.buffer.read(4096):  # returns b"" once the driver has gone or closed it
        pass
    _reap(session_dir, exclude={os.getpid(), driver_pid})


def start_reaper(session_dir: str) -> subprocess.Popen | None:
    """Start the watchdog for ``session_dir``; returns once it is watching (None: it died)."""
    proc = subprocess.Popen(
        [sys.executable, "-I", os.path.abspath(__file__), session_dir, str(os.getpid())],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    if proc.stdout.readline().strip() != b"ready":  # it died: the run goes on without one
        proc.wait()
        return None
    return proc


def stop_reaper(proc: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """After ``ray.shutdown()``: let the reaper sweep what is left and wait for it."""
    if proc is None:
        return
    proc.stdin.close()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass  # it carries on alone; it never outlives its sweep
    proc.stdout.close()


if __name__ == "__main__":
    _main(sys.argv[1], int(sys.argv[2]))
