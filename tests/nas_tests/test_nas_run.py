"""A search invocation as a run record holding its study's lease (nas/_run.py), real SQLite."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from db import StorageError, Store, StudyBusyError
from nas._run import holder_is_dead, run_lease


@pytest.fixture
def study(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/nas.db")
    rec = store.get_or_create_study("s", space="tiny", space_hash="h",
                                    objectives=("accuracy:max", "macs:min"), config={})
    return store, rec.id


def test_a_run_is_recorded_with_its_outcome_and_holds_the_lease(study):
    store, sid = study
    with run_lease(store, sid, {"epochs": 1}, {"python": "3"}, on_lost=lambda: None) as run:
        (rec,) = store.runs(sid)
        assert rec.outcome == "running" and rec.pid == os.getpid()
        assert rec.host == socket.gethostname() and rec.pid_started is not None
        with pytest.raises(StudyBusyError) as info:
            with run_lease(store, sid, {}, {}, on_lost=lambda: None):
                pass
        assert f"run {run.id}" in str(info.value) and "\n" not in str(info.value)
        run.outcome = "completed"
    assert [r.outcome for r in store.runs(sid)] == ["completed"]
    with run_lease(store, sid, {}, {}, on_lost=lambda: None) as again:  # released: free again
        again.outcome = "failed"
    assert [r.outcome for r in store.runs(sid)] == ["completed", "failed"]


def test_an_exception_ends_the_run_as_error_with_its_message(study):
    store, sid = study
    with pytest.raises(StorageError):
        with run_lease(store, sid, {}, {}, on_lost=lambda: None):
            raise StorageError("database went away")
    (rec,) = store.runs(sid)
    assert rec.outcome == "error" and rec.message == "StorageError: database went away"


def test_the_error_that_ended_a_run_is_reported_when_its_end_cannot_be_recorded(study):
    # the database went away for good: ending the run fails too, and must not hide the cause
    store, sid = study
    with pytest.raises(RuntimeError, match="the real cause"):
        with run_lease(store, sid, {}, {}, on_lost=lambda: None):
            store.close()  # every later call on this store raises StorageError
            raise RuntimeError("the real cause")
    (rec,) = Store(store.url).runs(sid)
    assert rec.outcome == "running"  # left for the next run to take over (its process is gone)


def test_a_dead_holder_on_this_host_is_detected():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()

    class Holder:
        host, pid, pid_started = socket.gethostname(), gone.pid, None

    assert holder_is_dead(Holder())
    Holder.pid, Holder.pid_started = os.getpid(), None
    assert not holder_is_dead(Holder())
    Holder.pid_started = 1.0  # our pid, but another process's start time: a reused pid
    assert holder_is_dead(Holder())
    Holder.host = "another-machine"
    assert not holder_is_dead(Holder()), "a remote holder is judged by its heartbeat only"


def test_a_taken_over_run_is_told_and_ends_abandoned(study):
    store, sid = study
    lost = threading.Event()
    with run_lease(store, sid, {}, {}, on_lost=lost.set, every=0.2, stale_after_s=0.01) as run:
        time.sleep(0.3)
        other = store.begin_run(sid, config={}, argv=[], versions={}, host="elsewhere", pid=1,
                                stale_after_s=0.01)  # our heartbeat is "stale" after 10 ms
        assert lost.wait(5), "the heartbeat thread must notice the takeover"
        run.outcome = "completed"
    mine = next(r for r in store.runs(sid) if r.id == run.id)
    assert mine.outcome == "abandoned" and "run" in (mine.message or ""), mine
    assert next(r for r in store.runs(sid) if r.id == other.id).outcome == "running"
