"""--executor local: the same search, trials one by one in the driver, without Ray."""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

import optuna
import pytest

from db import Store
from nas.search import EXHAUSTED_MESSAGE, SearchConfig, run_search

pytestmark = pytest.mark.slow


def test_local_executor_completes_and_records_like_ray(tmp_path, monkeypatch):
    import ray

    was_up = ray.is_initialized()
    url = f"sqlite:///{tmp_path}/nas.db"
    lines: list[str] = []
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    held: set[str] = set()  # our temporary folders seen while the run logged

    def log(line: str) -> None:
        lines.append(line)
        held.update(n for n in os.listdir(temp) if n.startswith("nas-local-"))

    summary = run_search(SearchConfig(space="tiny", budget=2, epochs=1, db_url=url,
                                      runs_dir=str(tmp_path), executor="local",
                                      dataset="digits"),
                         log=log)
    assert summary.completed == 2
    assert not held, f"a run without failures holds no temporary folder (kill -9 leaks it): {held}"
    assert ray.is_initialized() == was_up, "the local executor must not start Ray"
    assert any("in this process (--executor local)" in ln for ln in lines), lines
    store = Store(url)
    done = store.trials("tiny", states=["COMPLETE"])
    assert len(done) == 2 and all(t.accuracy > 0 and t.metrics["curve"] for t in done)
    assert all(t.metrics["worker"] == {"host": platform.node(), "node_ip": None,
                                       "pid": os.getpid(), "ray_node_id": None, "gpu_ids": []}
               for t in done if "reused_from" not in t.metrics)  # (a twin trained nowhere)
    ot = optuna.load_study(study_name="tiny", storage=url).trials
    assert len(ot) == len(store.trials("tiny"))
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in ot) == 2
    assert [r.outcome for r in store.runs("tiny")] == ["completed"]
    # each trial saved its training state after every epoch, removed once it was recorded
    assert (tmp_path / "checkpoints").is_dir() and not os.listdir(tmp_path / "checkpoints")
    assert all(t.metrics["resumed_epochs"] == [0] for t in done)


def test_trial_checkpoints_off_writes_none(tmp_path):
    summary = run_search(SearchConfig(space="tiny", budget=1, epochs=1,
                                      db_url=f"sqlite:///{tmp_path}/nas.db",
                                      runs_dir=str(tmp_path), executor="local",
                                      dataset="digits", trial_checkpoints=False),
                         log=lambda line: None)
    assert summary.completed == 1 and not (tmp_path / "checkpoints").exists()


def test_local_executor_records_a_failure_with_its_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_TEST_RAISE", "boom in process")
    url = f"sqlite:///{tmp_path}/nas.db"
    lines: list[str] = []
    summary = run_search(SearchConfig(space="tiny", budget=1, epochs=1, db_url=url,
                                      runs_dir=str(tmp_path), executor="local", max_failures=0,
                                      dataset="digits",
                                      study="fails"), log=lines.append)
    assert summary.completed == 0 and summary.failed == 1
    (t,) = Store(url).trials("fails")
    assert t.state == "FAIL" and t.error == "RuntimeError: boom in process", t.error
    assert "Traceback" in open(t.metrics["log_path"]).read()
    assert sum(ln.startswith("[ failed ]") for ln in lines) == 1, lines


ONE_FEASIBLE = """\
name: one_feasible
family: metaformer
resolution: 64
num_classes: 1000
stem: v2
head: linear
depth: {total: [4], ratios: ["1:1:1:1"]}
width: {base: [16], multipliers: ["1:2:4:8"], divisor: 16}
norm: ln_nobias
act: starrelu
stages:
  - mixer: [sepconv]
  - mixer: [pooling]
  - mixer: [attention]
  - mixer: [attention, sepconv]
mixers:
  sepconv: {kernel_size: [3]}
  attention: {head_dim: 16}
constraints: {conv_before_attention: true}
proxy: {width_mult: 0.5, depth_mult: 0.5, resolution: 32, stem_stride: 2}
"""


def test_a_space_run_out_of_feasible_configurations_ends_as_exhausted(tmp_path, capsys,
                                                                     monkeypatch):
    """Two configurations, one feasible: once it is trained every proposal is a duplicate or
    infeasible, and the run stops after PROPOSALS_PER_SLOT of them saying that the space ran
    out, not that trials failed (none did)."""
    from nas.cli import main
    from search_spaces import Space

    space = tmp_path / "one.yaml"
    space.write_text(ONE_FEASIBLE)
    args = ["search", "--space", str(space), "--budget", "2", "--epochs", "1", "--executor",
            "local", "--runs-dir", str(tmp_path / "runs"), "--dataset", "digits",
            "--study", "one"]
    # a space this small is counted before anything starts, and the budget refused
    assert main(args) == 2
    assert capsys.readouterr().err == (
        "error: --budget 2 exceeds the one distinct architecture of space 'one_feasible' that "
        "meets its constraints (2 configurations before them); lower --budget or loosen the "
        "constraints\n")
    assert not (tmp_path / "runs").exists()
    # a space too large to count runs until the sampler and the random draws find nothing new
    monkeypatch.setattr(Space, "feasible_size", lambda self, limit=0: None)
    rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err[-1].startswith(
        "error: only 1 of 2 trials completed: neither the sampler (200 proposals in a row) "
        "nor 20,000 random draws nor a local search found a new feasible configuration (this "
        "run skipped "), err[-3:]
    store = Store(f"sqlite:///{tmp_path}/runs/nas.db")
    rows = store.trials("one")
    assert [t.state for t in rows].count("COMPLETE") == 1
    assert {t.state for t in rows} == {"COMPLETE", "DUPLICATE", "INFEASIBLE"}, rows
    assert [(r.outcome, r.message) for r in store.runs("one")] == [
        ("failed", EXHAUSTED_MESSAGE)]
    # the same command again: refused before asking the sampler, nothing added to the study
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert "its run 1 already found no new feasible configuration with --sampler nsga2 " \
        "--seed 0" in out, out
    assert "found a new feasible configuration (in an earlier run with this --sampler and " \
        "--seed;" in err.strip().splitlines()[-1], err
    assert len(store.trials("one")) == len(rows)
    assert [r.outcome for r in store.runs("one")] == ["failed", "failed"]
    # another seed lets the sampler try (and here fail) again
    before = len(rows)
    assert main([*args, "--seed", "1"]) == 1
    capsys.readouterr()
    assert len(store.trials("one")) > before


def test_a_space_with_a_tiny_feasible_share_is_searched_not_called_exhausted(tmp_path, capsys):
    """max_macs admits ~0.1% of hybrid_conv_attn: the sampler's first generation proposes
    200 infeasible architectures in a row; seeded random draws then find a feasible one, and
    the run completes instead of ending "exhausted" while feasible ones remain."""
    from nas._searcher import PROPOSALS_PER_SLOT
    from nas.cli import main

    text = (Path(__file__).resolve().parents[2] / "search_spaces" /
            "hybrid_conv_attn.yaml").read_text()
    assert "  max_macs: 8.0e+9\n" in text
    space = tmp_path / "rare.yaml"
    space.write_text(text.replace("  max_macs: 8.0e+9\n", "  max_macs: 3.8e+8\n", 1))
    rc = main(["search", "--space", str(space), "--budget", "1", "--epochs", "1", "--executor",
               "local", "--runs-dir", str(tmp_path / "runs"), "--dataset", "digits",
               "--study", "rare"])
    capsys.readouterr()
    assert rc == 0
    rows = Store(f"sqlite:///{tmp_path}/runs/nas.db").trials("rare")
    states = [t.state for t in rows]
    assert states.count("COMPLETE") == 1 and states.count("INFEASIBLE") >= PROPOSALS_PER_SLOT
    (done,) = [t for t in rows if t.state == "COMPLETE"]
    assert done.macs <= 3.8e8


def test_a_search_goes_on_when_its_stdout_reader_leaves(tmp_path):
    """`run_search.py ... | head -1`: the reader leaves after the first line. A write then
    raised BrokenPipeError inside the trial bookkeeping and the run ended in a traceback as
    'error'; now the search finishes its budget without printing, and says so on stderr."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, str(root / "run_search.py"), "--space", "tiny", "--budget", "2",
         "--epochs", "1", "--dataset", "digits", "--executor", "local",
         "--runs-dir", str(tmp_path)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("study 'tiny' in sqlite:///")
    proc.stdout.close()  # as `head -1` exits
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "stdout was closed by its reader" in err, err
    store = Store(f"sqlite:///{tmp_path}/nas.db", read_only=True)
    assert len(store.trials("tiny", states=["COMPLETE"])) == 2
    assert [r.outcome for r in store.runs("tiny")] == ["completed"]


@pytest.mark.parametrize("stdout", ["closed", "/dev/full"])
def test_a_search_whose_stdout_cannot_be_written_keeps_its_trials(tmp_path, stdout):
    """`run_search.py ... >&-`: Python starts with sys.stdout None, which made Ray Tune's import
    fail with an AttributeError traceback (exit 1) before any trial; now it prints nowhere.
    `> /dev/full` (a full disk), stdout buffered: the front's table failed to flush with a
    traceback (exit 120); now one line, exit 1, the trials recorded."""
    import os
    import subprocess
    import sys

    if stdout == "/dev/full" and not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with open(os.devnull if stdout == "closed" else stdout, "w") as out:
        r = subprocess.run(
            [sys.executable, str(root / "run_search.py"), "--space", "tiny", "--budget", "1",
             "--epochs", "1", "--dataset", "digits", "--executor", "local",
             "--runs-dir", str(tmp_path)],
            cwd=tmp_path, stdout=out, stderr=subprocess.PIPE, text=True, timeout=300, env=env,
            preexec_fn=(lambda: os.close(1)) if stdout == "closed" else None)
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    if stdout == "closed":
        assert r.returncode == 0 and r.stderr == "", r.stderr[-3000:]
    else:
        assert r.returncode == 1 and r.stderr.splitlines() == [
            "error: cannot write to standard output: No space left on device; the search's "
            "trials are recorded in the database (`python -m nas pareto` shows its front)"]
    store = Store(f"sqlite:///{tmp_path}/nas.db", read_only=True)
    assert len(store.trials("tiny", states=["COMPLETE"])) == 1
