"""A search that joins a real local two-node Ray cluster (`ray start --head`, then a second
node with `ray start --address`, on loopback) through --ray-address, runs trials on both nodes,
and leaves the cluster running: it is not the search's to stop."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

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
    """Two Ray nodes on loopback, one CPU each: `ray start --head`, then `ray start --address`
    as a second machine would join (same host here; Ray tells nodes apart by node id)."""
    temp = tempfile.mkdtemp(prefix="nasray-", dir="/tmp")  # short: Ray's socket paths
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    if "RAY_AUTH_MODE" not in env and (Path.home() / ".ray" / "auth_token").exists():
        # the head then runs with token auth, but `ray start --address` does not pick the
        # token up by itself (Ray 2.60): the joining node must be told, as on a real cluster
        env["RAY_AUTH_MODE"] = "token"
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--num-gpus", "0",
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


def test_search_through_ray_address_runs_on_both_nodes_and_leaves_them_up(ray_cluster,
                                                                          tmp_path):
    address, session = ray_cluster
    url = f"sqlite:///{tmp_path}/nas.db"
    r = subprocess.run([sys.executable, str(ROOT / "run_search.py"), "--space", "tiny",
                        "--budget", "2", "--epochs", "1", "--dataset", "digits", "--db", url,
                        "--runs-dir", str(tmp_path), "--ray-address", address,
                        "--cpus-per-trial", "1"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 trial(s) at a time, each 1 CPU" in r.stdout, r.stdout[-2000:]
    done = Store(url).trials("tiny", states=["COMPLETE"])
    assert len(done) == 2
    # one CPU per node and two trials at once: Ray had to place one trial on each node, and
    # each trial's record says where it ran
    workers = [t.metrics["worker"] for t in done]
    nodes = {w["ray_node_id"] for w in workers}
    assert len(nodes) == 2 and None not in nodes, workers
    assert all(w["pid"] and w["host"] for w in workers), workers
    assert "trials ran on 2 nodes: " in r.stdout, r.stdout[-2000:]
    alive = [p for p in session_processes(session) if p.cmdline()]
    raylets = [p for p in alive if Path(p.cmdline()[0]).name == "raylet"]
    assert len(raylets) == 2 and any(Path(p.cmdline()[0]).name == "gcs_server" for p in alive), \
        f"the search stopped the cluster: {[p.cmdline()[0] for p in alive]}"
