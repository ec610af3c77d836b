"""Ctrl-C and SIGTERM (and SIGHUP) stop a search cleanly: a flag that Tune polls, our handlers
around the run.

Signal flow (driver, main thread only): the first SIGINT or SIGTERM sets the flag, and gives up
waiting for the database (:func:`db.give_up_waits`: calls waiting for the server raise, and a
lost connection is not waited for until the run ends, so a Ctrl-C during an outage stops the
run at once instead of once the waits ran out); Tune asks
:class:`StopOnSignal` ``stop_all()`` after every event, stops the running trials (without calling
any trial callback) and ``tuner.fit()`` returns; the driver then closes the trials it left running
in both tables (INTERRUPTED in ours, FAIL + ``interrupted`` in Optuna's) and raises
:class:`nas.errors.SearchInterrupted`. A second signal raises ``KeyboardInterrupt`` at once, out
of Tune's shutdown; the same closing code runs in a ``finally``. Tune's own SIGINT handler is
switched off (``TUNE_DISABLE_SIGINT_HANDLER``) while ours is installed; ``ray.init`` replaces
the SIGTERM handler with ``sys.exit`` and Tune installs one for SIGUSR1, so
:func:`catch_stop_signals` restores all three as they were before the run (``run_search`` is
a library call too).

Where Ray's processes are in the driver's process group (as ``ray.init`` starts them), a SIGTERM
sent to that group (``timeout``, ``kill -TERM -PGID``) also ends the GCS and raylet of the Ray
this run started (they block SIGINT, not SIGTERM). Tune can then stop nothing: Ray's client
waits 60 s for the GCS and ends the process with status 1, closing nothing; or its core worker
ends the process (``_Exit(1)``) as soon as the plasma store inside the raylet is gone, which was
measured at 50 ms after the signal. No closing can be relied on to win that race, so
:func:`ray_outside_our_group` starts the Ray processes of ``ray.init`` in process groups of their
own (as Ray itself does on Windows): a SIGTERM to the driver's group then reaches the driver
alone, which takes the Ctrl-C path above and ends Ray with ``ray.shutdown()``. Their ends with
the driver do not depend on the group: Ray ties them to the driver's life and :mod:`nas._reaper`
ends what is left, even after kill -9.

A SIGTERM sent to every process of the run (systemd's control-group stop, Slurm's ``scancel``)
still ends Ray's processes with the driver. :class:`RayLostGuard` watches for that after a stop
signal and, once Ray's GCS or raylet has exited, closes the run itself (the same closing, the
same line, exit 143) when Ray has not ended the process first; otherwise the next run closes the
trials left RUNNING as killed, as after kill -9.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ray.tune import Stopper

from db import give_up_waits

__all__ = ["ClusterLostGuard", "RayLostGuard", "StopRequest", "StopOnSignal", "catch_stop_signals",
           "ray_outside_our_group", "reinstall"]

#: SIGHUP (the terminal or ssh session closed) stops like SIGTERM, unless it is ignored, as
#: under ``nohup``: a search started that way must outlive its terminal, so it stays ignored
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
LABELS = {signal.SIGINT: ("Ctrl-C", "Ctrl-C (SIGINT)"), signal.SIGTERM: ("SIGTERM", "SIGTERM"),
          signal.SIGHUP: ("SIGHUP", "SIGHUP (its terminal closed)")}


class StopRequest:
    """What the handlers saw: the first stop signal (None: none yet)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.forced = False  # a second signal arrived during the shutdown
        self.lost_lease = False  # stopped because another run took over the study
        self.database: str | None = None  # stopped because the database is out of reach: why
        #: ... because its SQLite file was deleted or replaced ("file"), or its tables are gone,
        #: as when it is dropped under the run ("tables"); None otherwise
        self.database_gone: str | None = None
        self.database_refused = False  # ... because it takes no writes (disk full, read-only)
        self.database_stop = False  # the lost database, not a signal, stopped the run
        self.signalled_after = False  # a signal came after that stop
        self.event = threading.Event()  # set with the first stop (for threads to wait on)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        if self.database_stop:
            return 1  # the run itself stopped midway
        return 128 + (self.signum or signal.SIGINT)  # 130 SIGINT, 143 SIGTERM, 129 SIGHUP

    @property
    def short(self) -> str:
        """``Ctrl-C`` or ``SIGTERM``, for the one-line message."""
        if self.lost_lease:
            return "another run took over this study"
        if self.database_stop:
            return "the database refused writes" if self.database_refused else \
                "lost the database"
        return LABELS.get(self.signum, (f"signal {self.signum}",))[0]

    @property
    def reason(self) -> str:
        """Stored with every trial the stop interrupted."""
        if self.lost_lease:
            return "interrupted: another run took over the study (no heartbeat for too long)"
        if self.database_stop:
            return f"interrupted: {self.short} ({self.database})"
        name = LABELS.get(self.signum, ("", f"signal {self.signum}"))[1]
        return f"interrupted by {name}" + (" (forced by a second signal)" if self.forced else "")

    def taken_over(self) -> None:
        """Another run took over the study's lease (this one was frozen past the stale limit):
        stop as for SIGTERM, and say why."""
        if self.signum is None:
            self.lost_lease = True
            self.signum = signal.SIGTERM
            self.event.set()

    def lost_database(self, why: str, gone: str | None = None, refused: bool = False) -> None:
        """The database is out of reach (no answer for longer than the outage wait, its SQLite
        file gone or its tables dropped: ``gone``, "file" or "tables") or refuses writes (disk
        full, read-only: ``refused``): stop
        as for SIGTERM (no trial result can be recorded), exit 1, and say why (``why``: one
        line)."""
        if self.database is not None:
            return
        self.database_refused = refused
        self.database, self.database_gone = why, gone  # (also after a signal: the close-out
        if self.signum is None:                        # then writes nothing, and says why)
            self.database_stop = True
            self.signum = signal.SIGTERM
            self.event.set()

    def handle(self, signum: int, frame) -> None:
        if self.signum is None:
            self.signum = signum
            self.event.set()
            give_up_waits()  # a database outage is not waited out any longer
            return
        if self.database_stop and not self.signalled_after:  # a lost database stopped the run
            self.signalled_after = True  # (its close-out waits for nothing): the user's first
            return                       # signal is not a second one that forces
        self.forced = True
        raise KeyboardInterrupt  # second signal: out of whatever the driver is doing now


class StopOnSignal(Stopper):
    """Tune stops every trial once a stop signal was caught (trials are never stopped alone)."""

    def __init__(self, request: StopRequest) -> None:
        self.request = request

    def __getstate__(self) -> dict:
        return {}  # Tune pickles its run config for its own restore, which we do not use

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return getattr(self, "request", None) is not None and self.request.requested


@contextmanager
def catch_stop_signals(request: StopRequest) -> Iterator[bool]:
    """Our SIGINT/SIGTERM handler while the block runs; yields False where none can be set.

    Signal handlers can only be set from the main thread; elsewhere the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    saved = {s: signal.getsignal(s) for s in (*SIGNALS, signal.SIGUSR1)}
    env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    try:
        for s in SIGNALS:
            if not (s == signal.SIGHUP and saved[s] == signal.SIG_IGN):  # nohup: kept ignored
                signal.signal(s, request.handle)
        yield True
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        if env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = env


def reinstall(request: StopRequest) -> None:
    """Put our SIGTERM handler back after ``ray.init`` replaced it (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request.handle)


@contextmanager
def ray_outside_our_group() -> Iterator[bool]:
    """While the block runs (``ray.init``), Ray starts its processes in process groups of their
    own; yields whether it could (POSIX, and Ray's ``ConsolePopen`` where this Ray keeps it).

    ``ray.init`` starts the GCS, the raylet and their helpers in the driver's process group, so a
    SIGTERM to that group (``timeout``, ``kill -TERM -PGID``) ended them with the driver. The
    patch is Ray's own ``ConsolePopen`` with ``process_group=0`` and lasts only for the block.
    """
    try:
        from ray._private import services
        base = services.ConsolePopen
    except (ImportError, AttributeError):
        base = None
    if base is None or os.name != "posix":
        yield False
        return

    class OwnGroupPopen(base):
        def __init__(self, *args, **kwargs) -> None:
            kwargs.setdefault("process_group", 0)
            super().__init__(*args, **kwargs)

    services.ConsolePopen = OwnGroupPopen
    try:
        yield True
    finally:
        services.ConsolePopen = base


class _Guard:
    """A daemon thread running ``_watch``; the driver's own closing holds ``lock`` and sets
    ``closed``, after which the guard does nothing."""

    def __init__(self, name: str) -> None:
        self.lock = threading.Lock()
        self.closed = False
        self._thread = threading.Thread(target=self._watch, name=name, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _watch(self) -> None:
        raise NotImplementedError


class RayLostGuard(_Guard):
    """After a stop signal, closes the run itself when the Ray this run started died with it.

    ``close()`` closes the run (its trials INTERRUPTED, the run ended) and returns the line to
    print; the guard flushes stdout, prints the line on stderr and exits with the signal's code.
    The driver's own closing holds ``lock`` and sets ``closed`` (then ``ray.shutdown()`` ends Ray
    on purpose and the guard does nothing). Only Ray's GCS and raylet are watched, found once at
    start among ``ray_processes()`` (psutil processes: the driver's children).
    """

    POLL_S = 0.2
    WATCHED = ("gcs_server", "raylet")

    def __init__(self, request: StopRequest, ray_processes: Callable[[], list],
                 close: Callable[[], str]) -> None:
        super().__init__("nas-ray-lost-guard")
        self.request, self.ray_processes, self.close = request, ray_processes, close
        self.watching = threading.Event()  # set once the processes to watch are known
        self._procs: list = []

    def ray_gone(self) -> bool:
        """Whether a watched Ray process has exited (False while none is known)."""
        return bool(self._procs) and not all(_alive(p) for p in self._procs)

    def _watch(self) -> None:
        try:
            self._procs = [p for p in self.ray_processes() if _name(p) in self.WATCHED]
        finally:
            self.watching.set()
        if not self._procs:  # nothing to tell by: the normal path alone
            return
        while not self.request.event.wait(0.5):
            if self.closed:  # the run ended without a stop signal
                return
        while True:
            with self.lock:
                if self.closed:
                    return
                if self.ray_gone():
                    self._close_and_exit()
            time.sleep(self.POLL_S)

    def _close_and_exit(self) -> None:
        _close_and_exit(self.close, f"interrupted ({self.request.short}): Ray ended with the "
                        f"signal; re-run the same command to resume", self.request.exit_code)


def _close_and_exit(close: Callable[[], str], fallback: str, code: int) -> None:
    """``close()`` the run, print the line it returns (``fallback`` if it fails) on stderr and
    exit with ``code`` at once (the driver's main thread may be stuck in Ray)."""
    line = fallback
    try:
        line = close()
    except BaseException as e:  # noqa: BLE001 - exit with the code regardless
        line += f" (closing the run failed: {type(e).__name__}: {e})"[:300]
    finally:
        try:
            sys.stdout.flush()  # os._exit skips it: the last lines of a log file
            sys.stderr.write(("\n" if sys.stdout.isatty() else "") + line + "\n")
            sys.stderr.flush()
        finally:
            os._exit(code)


class ClusterLostGuard(_Guard):
    """With ``--ray-address``: closes the run itself when the cluster's head stops answering.

    Ray's driver waits for a lost head (its GCS) for about a minute and then ends the process
    with a message of its own, leaving the run 'running' and its trials RUNNING. This thread
    opens a TCP connection to the head's GCS port every :attr:`POLL_S`; after
    :attr:`LOST_AFTER_S` without one it calls ``close()`` (the trials INTERRUPTED, the run
    ended; returns the line to print), prints that line on stderr and exits with
    ``exit_code``. Same protocol as :class:`RayLostGuard`: the driver's own closing holds
    ``lock`` and sets ``closed``, after which the guard does nothing.
    """

    POLL_S = 1.0
    LOST_AFTER_S = 10.0
    CONNECT_TIMEOUT_S = 2.0

    def __init__(self, endpoint: tuple[str, int], close: Callable[[], str],
                 exit_code: int) -> None:
        super().__init__("nas-cluster-lost-guard")
        self.endpoint, self.close, self.exit_code = endpoint, close, exit_code
        self.lost = False  # the head stopped answering (then ray.shutdown() is skipped)

    def ray_gone(self) -> bool:
        return self.lost

    def _answers(self) -> bool:
        import socket

        try:
            with socket.create_connection(self.endpoint, timeout=self.CONNECT_TIMEOUT_S):
                return True
        except OSError:
            return False

    def _watch(self) -> None:
        silent_since = None
        while not self.closed:
            now = time.monotonic()
            if self._answers():
                silent_since = None
            elif silent_since is None:
                silent_since = now
            elif now - silent_since >= self.LOST_AFTER_S:
                with self.lock:
                    if self.closed:
                        return
                    self.lost = True
                    self._close_and_exit()
            time.sleep(self.POLL_S)

    def _close_and_exit(self) -> None:
        host, port = self.endpoint
        _close_and_exit(self.close, f"error: the Ray cluster's head at {host}:{port} stopped "
                        "answering", self.exit_code)


def _alive(p) -> bool:
    """Whether psutil process ``p`` still runs (a zombie, killed but not waited for, is not)."""
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _name(p) -> str:
    import psutil

    try:
        return p.name()
    except psutil.Error:
        return ""
