"""One invocation of a search as a run record that holds its study's lease (driver side).

A run row (``nas_runs``) records the resolved configuration, the masked database URL, the
library versions, the command line, host and pid, start and end, and the outcome. While it is
'running' it is the study's lease: a second run of the same study is refused
(:class:`db.StudyBusyError`), unless this one stopped sending heartbeats for
:data:`STALE_AFTER_S` or its process is gone (same host), in which case the newcomer takes
over. A background thread renews the heartbeat; if it finds the lease taken over (this process
was frozen for longer than the stale limit), it calls ``on_lost`` so the search stops.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HEARTBEAT_S", "STALE_AFTER_S", "RunHandle", "run_lease", "holder_is_dead",
           "lease_timing"]

STALE_AFTER_S = 60.0  # a running run without a heartbeat for this long is taken over
HEARTBEAT_S = 10.0  # seconds between heartbeats
STALE_ENV = "NAS_LEASE_STALE_S"  # operators may change the stale limit (all runs of a study
#                                  should agree); the heartbeat is then a sixth of it


def lease_timing() -> tuple[float, float]:
    """(heartbeat every, stale after) in seconds, from $NAS_LEASE_STALE_S or the defaults."""
    import math

    from nas.errors import ConfigError

    raw = os.environ.get(STALE_ENV)
    if raw is None:
        return HEARTBEAT_S, STALE_AFTER_S
    try:
        stale = float(raw)
    except ValueError:
        stale = math.nan
    if not (math.isfinite(stale) and stale >= 1):
        raise ConfigError(f"${STALE_ENV} must be a number of seconds >= 1; got {raw!r}")
    return min(HEARTBEAT_S, stale / 6), stale


def _process_started(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def holder_is_dead(holder: Any) -> bool:
    """True when the holder ran on this host and its process is gone (or its pid was reused)."""
    if holder.host != socket.gethostname():
        return False  # another machine: only its heartbeat can tell
    started = _process_started(holder.pid)
    if started is None:
        return True
    return holder.pid_started is not None and abs(started - holder.pid_started) > 1.0


@dataclass
class RunHandle:
    """The caller's side of a run: its id, and the outcome to record when it ends."""

    id: int
    outcome: str | None = None  # completed | failed | interrupted; set by the caller (None at
    #                             an exception: error, or interrupted for KeyboardInterrupt)
    message: str | None = None
    lost: threading.Event = field(default_factory=threading.Event)  # lease taken over
    fence: Callable[[], bool] = lambda: True  # True while the lease is still ours (checked
    #                                           before each write; see run_lease)


def _beat(store, run_id: int, stop: threading.Event, lost: threading.Event,
          on_lost: Callable[[], None], every: float) -> None:
    from db import StorageError

    while not stop.wait(every):
        try:
            alive = store.heartbeat(run_id)
        except StorageError:
            continue  # the database is away for a moment; the next beat retries
        if not alive:
            lost.set()
            on_lost()
            return


def _fence(store, run_id: int, lost: threading.Event, on_lost: Callable[[], None],
           every: float = 1.0) -> Callable[[], bool]:
    """A check the writers call before each write: renews the heartbeat (at most every
    ``every`` s) and says False, for good, once another run took the study over; so a run
    frozen past the stale limit (SIGSTOP, a suspended laptop) never writes over its successor.
    """
    from db import StorageError

    last = [0.0]
    lock = threading.Lock()

    def still_ours() -> bool:
        with lock:
            if lost.is_set():
                return False
            now = time.monotonic()
            if now - last[0] < every:
                return True
            try:
                alive = store.heartbeat(run_id)
            except StorageError:
                return True  # the database is away: the write itself will say so
            last[0] = now
            if not alive:
                lost.set()
                on_lost()
            return alive

    return still_ours


@contextmanager
def run_lease(store, study_id: int, config: Mapping[str, Any], versions: Mapping[str, Any],
              on_lost: Callable[[], None], *, every: float | None = None,
              stale_after_s: float | None = None, study_as: Any = None) -> Iterator[RunHandle]:
    """Begin a run of the study (StudyBusyError if another live run holds it; StorageError
    if it is no longer ``study_as``, the study this run read: ``Store.begin_run``), keep its
    heartbeat, and end it with the handle's outcome (``error`` and the message of an exception
    that escapes; ``interrupted`` for KeyboardInterrupt)."""
    default_every, default_stale = lease_timing()
    every = default_every if every is None else every
    stale_after_s = default_stale if stale_after_s is None else stale_after_s
    pid = os.getpid()
    run = store.begin_run(study_id, config=config, argv=list(sys.argv), versions=versions,
                          host=socket.gethostname(), pid=pid, pid_started=_process_started(pid),
                          stale_after_s=stale_after_s, holder_is_dead=holder_is_dead,
                          study_as=study_as)
    handle = RunHandle(run.id)
    handle.fence = _fence(store, run.id, handle.lost, on_lost)
    stop = threading.Event()
    beat = threading.Thread(target=_beat, name=f"nas-heartbeat-{run.id}", daemon=True,
                            args=(store, run.id, stop, handle.lost, on_lost, every))
    beat.start()
    failing = False  # an exception is leaving the block (then it is the one to report)
    try:
        yield handle
    except KeyboardInterrupt:
        failing = True
        if handle.outcome is None:
            handle.outcome, handle.message = "interrupted", handle.message or "KeyboardInterrupt"
        raise
    except BaseException as e:
        failing = True
        if handle.outcome is None:
            lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
            handle.outcome = "error"
            handle.message = f"{type(e).__name__}: {lines[0] if lines else ''}"[:1000]
        raise
    finally:
        stop.set()
        beat.join(timeout=every + 5)
        if handle.lost.is_set():
            handle.outcome = "abandoned"  # the record already says who took over
        try:
            store.end_run(run.id, handle.outcome or "error", handle.message)
        except Exception:  # noqa: BLE001 - the database is away for good
            if not failing:
                raise
            # the error that ended the run is the one to report; the row stays 'running',
            # and the next run of the study takes it over (its process is gone)
