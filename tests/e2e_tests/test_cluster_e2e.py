"""A search that joins a real local two-node Ray cluster (`ray start --head`, then a second
node with `ray start --address`, on loopback) through --ray-address, with the database on the
test PostgreSQL server: one trial on each GPU of both nodes, and the cluster left running (it is
not the search's to stop)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest

from db import Store
from nas._reaper import session_processes

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster():
    """Two Ray nodes on loopback, one CPU and two GPUs each: `ray start --head`, then `ray start
    --address` as a second machine would join (same host here; Ray tells nodes apart by node
    id). The GPUs are declared, not real: Ray assigns them (and sets CUDA_VISIBLE_DEVICES) as
    on a GPU machine, and the trials, finding no CUDA, train on the CPU."""
    temp = tempfile.mkdtemp(prefix="nasray-", dir="/tmp")  # short: Ray's socket paths
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    if "RAY_AUTH_MODE" not in env and (Path.home() / ".ray" / "auth_token").exists():
        # the head then runs with token auth, but `ray start --address` does not pick the
        # token up by itself (Ray 2.60): the joining node must be told, as on a real cluster
        env["RAY_AUTH_MODE"] = "token"
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--num-gpus", "2",
              "--disable-usage-stats"]
    subprocess.run([RAY, "start", "--head", "--port", str(port), "--include-dashboard",
                    "false", "--temp-dir", temp, *common],
                   check=True, capture_output=True, text=True, env=env, timeout=180)
    session = str(Path(temp, "session_latest").resolve())
    try:
        subprocess.run([RAY, "start", "--address", f"127.0.0.1:{port}", *common],
                       check=True, capture_output=True, text=True, env=env, timeout=180)
        yield f"127.0.0.1:{port}", session
    finally:  # only this cluster's processes: `ray stop` would end every Ray on the machine
        for p in session_processes(session):
            try:
                p.kill()
            except Exception:  # noqa: BLE001 - already gone
                pass
        shutil.rmtree(temp, ignore_errors=True)


def test_search_through_ray_address_places_a_trial_on_every_gpu_of_both_nodes(
        ray_cluster, pg_database_url, tmp_path):
    address, session = ray_cluster
    url = pg_database_url  # a cluster's search records to a server database (issue 11)
    r = subprocess.run([sys.executable, str(ROOT / "run_search.py"), "--space", "tiny",
                        "--budget", "4", "--epochs", "1", "--dataset", "digits", "--db", url,
                        "--runs-dir", str(tmp_path), "--ray-address", address,
                        "--gpus-per-trial", "1", "--cpus-per-trial", "0.5"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "4 trial(s) at a time, each 0.5 CPU + 1 GPU" in r.stdout, r.stdout[-2000:]
    done = Store(url).trials("tiny", states=["COMPLETE"])
    assert len(done) == 4
    # four trials at once on four GPUs, two per node: Ray had to give each trial its own GPU,
    # and each trial's record says which node and which of its GPUs
    workers = [t.metrics["worker"] for t in done]
    assert all(w["pid"] and w["host"] for w in workers), workers
    by_node: dict[str, list[str]] = {}
    for w in workers:
        by_node.setdefault(w["ray_node_id"], []).extend(w["gpu_ids"])
    assert None not in by_node and sorted(map(sorted, by_node.values())) == [["0", "1"]] * 2, \
        workers
    spans = sorted((t.started_at, t.finished_at) for t in done)
    assert spans[-1][0] < spans[0][1], f"the four trials did not run at once: {spans}"
    assert "trials ran on 2 nodes: " in r.stdout, r.stdout[-2000:]
    ot = optuna.load_study(study_name="tiny", storage=url)  # Optuna's study in the same server
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in ot.trials) == 4
    alive = [p for p in session_processes(session) if p.cmdline()]
    raylets = [p for p in alive if Path(p.cmdline()[0]).name == "raylet"]
    assert len(raylets) == 2 and any(Path(p.cmdline()[0]).name == "gcs_server" for p in alive), \
        f"the search stopped the cluster: {[p.cmdline()[0] for p in alive]}"
    if (Path.home() / ".ray" / "auth_token").exists():  # the head runs with token auth
        # a wrong token is one line within seconds (ray.init: a log line a second for 20 s,
        # then only "Failed to connect"), before anything is recorded
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "wrong" * 8}
        bad = subprocess.run([sys.executable, str(ROOT / "run_search.py"), "--space", "tiny",
                              "--budget", "1", "--epochs", "1", "--dataset", "digits",
                              "--runs-dir", str(tmp_path / "bad"), "--ray-address", address],
                             capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode == 2 and len(lines) == 1, bad.stderr[-3000:]
        assert "its head refused this machine's authentication token" in lines[0], lines
        assert not (tmp_path / "bad").exists()


def test_a_cluster_that_goes_away_ends_the_run_in_one_line_with_its_trials_closed(
        ray_cluster, tmp_path):
    """Every process of the joined cluster killed mid-search (as `ray stop --force` on it):
    Ray's driver would wait a minute and end the process its own way, the run left 'running'.
    The run ends itself instead: one line, exit 1, its running trials INTERRUPTED in both
    tables and the completed ones kept (a re-run against a restarted cluster resumes)."""
    import time

    address, session = ray_cluster
    url = f"sqlite:///{tmp_path}/nas.db"
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_search.py"), "--space", "tiny",
                             "--budget", "8", "--epochs", "3", "--dataset", "digits", "--db",
                             url, "--runs-dir", str(tmp_path), "--ray-address", address,
                             "--cpus-per-trial", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                trials = Store(url, read_only=True).trials("tiny")
            except Exception:  # noqa: BLE001 - not created yet
                trials = []
            states = [t.state for t in trials]
            if "COMPLETE" in states and "RUNNING" in states:
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        for p in session_processes(session):  # the whole cluster, and only it
            if p.pid == proc.pid:  # (the driver is attached to the session too)
                continue
            try:
                p.kill()
            except Exception:  # noqa: BLE001 - already gone
                pass
        killed = time.monotonic()
        out, err = proc.communicate(timeout=120)
        took = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, (proc.returncode, took, out[-3000:], err[-3000:])
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: the Ray cluster at --ray-address {address} stopped "
                           f"answering: "), err[-3000:]
    assert last.endswith("restart the cluster and re-run the same command to resume"), last
    assert took < 45, took  # Ray's own wait is about 60 s
    store = Store(url)
    (run,) = store.runs("tiny")
    assert run.outcome == "failed" and "stopped answering" in run.message, run
    states = [t.state for t in store.trials("tiny")]
    assert "RUNNING" not in states and "COMPLETE" in states and "INTERRUPTED" in states, states
    ot = optuna.load_study(study_name="tiny", storage=url).trials
    assert not [t for t in ot if t.state == optuna.trial.TrialState.RUNNING]
