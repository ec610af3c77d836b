"""A search that joins a real local Ray cluster (`ray start --head` on loopback) through
--ray-address, and leaves the cluster running: it is not the search's to stop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
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
def ray_head():
    temp = tempfile.mkdtemp(prefix="nasray-", dir="/tmp")  # short: Ray's socket paths
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port",
                    str(port), "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard",
                    "false", "--temp-dir", temp, "--disable-usage-stats"],
                   check=True, capture_output=True, text=True, env=env, timeout=180)
    session = str(Path(temp, "session_latest").resolve())
    try:
        yield f"127.0.0.1:{port}", session
    finally:  # only this cluster's processes: `ray stop` would end every Ray on the machine
        for p in session_processes(session):
            try:
                p.kill()
            except Exception:  # noqa: BLE001 - already gone
                pass


def test_search_through_ray_address_runs_on_the_cluster_and_leaves_it_up(ray_head, tmp_path):
    address, session = ray_head
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
    # the trials ran in the cluster's workers: their logs are in its session directory
    workers = list(Path(session, "logs").glob("worker-*"))
    assert workers, "no worker of the cluster ran anything"
    time.sleep(2)
    alive = {Path(p.cmdline()[0]).name for p in session_processes(session) if p.cmdline()}
    assert {"gcs_server", "raylet"} <= alive, f"the search stopped the cluster: {alive}"
