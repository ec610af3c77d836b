"""Two searches of one study started together: one runs, the other is refused; budget exact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from db import Store

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_two_runs_of_one_study_at_once_keep_the_budget(tmp_path):
    url = f"sqlite:///{tmp_path}/nas.db"
    cmd = [sys.executable, str(ROOT / "run_search.py"), "--space", "tiny", "--budget", "3",
           "--epochs", "1", "--max-concurrent", "1", "--db", url, "--runs-dir", str(tmp_path),
           "--study", "both"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], (codes, [e[-2000:] for _, e in outs])
    loser = next(err for p, (_, err) in zip(procs, outs) if p.returncode == 2)
    (line,) = loser.strip().splitlines()
    assert "study 'both' is being searched by run" in line and "--study" in line, line

    store = Store(url)
    done = store.trials("both", states=["COMPLETE"])
    assert len(done) == 3 and len({t.arch_hash for t in done}) == 3, "budget kept exactly"
    assert store.count("both", "RUNNING") == 0
    ot = optuna.load_study(study_name="both", storage=url)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in ot.trials) == 3
    assert [r.outcome for r in store.runs("both")] == ["completed"], store.runs("both")
