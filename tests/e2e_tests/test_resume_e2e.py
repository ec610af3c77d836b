"""Resuming a study: what may change, what is refused, and bad input caught before anything."""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from db import Store
from nas.errors import ConfigError, StorageError
from nas.search import SearchConfig, run_search

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_resume_with_changed_epochs_is_refused_unless_allowed(tmp_path):
    url = f"sqlite:///{tmp_path}/nas.db"
    # the mechanics: small and fast, in this process (the resume rule is checked before the
    # executor starts; a resume through Ray is test_faults_e2e's)
    cfg = SearchConfig(space="tiny", budget=1, epochs=1, db_url=url, runs_dir=str(tmp_path),
                       study="resume", dataset="digits", executor="local")
    assert run_search(cfg, log=lambda s: None).completed == 1
    store = Store(url)
    before = [(t.number, t.state) for t in store.trials("resume")]
    assert "widths" not in store.get_study("resume").config["proxy"]  # (see the test below)

    changed = dataclasses.replace(cfg, budget=2, epochs=2)
    with pytest.raises(ConfigError) as info:
        run_search(changed, log=lambda s: None)
    assert "--epochs 1 -> 2" in str(info.value) and "--allow-change" in str(info.value)
    assert [(t.number, t.state) for t in store.trials("resume")] == before, "refusal wrote"
    ot = optuna.load_study(study_name="resume", storage=url)
    assert len(ot.trials) == len(before), "a refused run must not ask Optuna anything"

    # the sampler and the seed may change without --allow-change
    lines: list[str] = []
    summary = run_search(dataclasses.replace(cfg, budget=2, seed=5, sampler="random"),
                         log=lines.append)
    assert summary.completed == 2 and not any("warning" in ln for ln in lines), lines

    lines = []
    summary = run_search(dataclasses.replace(changed, budget=3, allow_change=True),
                         log=lines.append)
    assert summary.completed == 3
    assert any("--allow-change" in ln and "--epochs 1 -> 2" in ln for ln in lines), lines
    assert store.get_study("resume").config["epochs"] == 1, "the study keeps its first settings"


def test_a_space_whose_widths_may_shrink_records_its_proxy_rule(tmp_path):
    """Since 88afa66 such a space's proxy keeps a step down (it was raised): its studies record
    that in the proxy reduction, so a study from before is refused as changed (resuming it would
    put trials of two proxies on one front), and the other spaces' studies are as they were."""
    import yaml

    from search_spaces import SPACES_DIR

    doc = yaml.safe_load((SPACES_DIR / "tiny.yaml").read_text())
    doc["constraints"] = {**(doc.get("constraints") or {}), "nondecreasing_widths": False}
    path = tmp_path / "shrinking.yaml"
    path.write_text(yaml.safe_dump(doc))
    url = f"sqlite:///{tmp_path}/nas.db"
    cfg = SearchConfig(space=str(path), budget=1, epochs=1, db_url=url, runs_dir=str(tmp_path),
                       study="shrinking", dataset="digits", executor="local")
    assert run_search(cfg, log=lambda s: None).completed == 1
    config = Store(url).get_study("shrinking").config
    assert config["proxy"]["widths"] == "each step the way the full widths go", config["proxy"]
    with sqlite3.connect(tmp_path / "nas.db") as con:  # as a study from before 88afa66 was
        for table in ("nas_studies", "nas_runs"):
            con.execute(f"UPDATE {table} SET config = json_remove(config, '$.proxy.widths')")
    with pytest.raises(ConfigError, match="the space's proxy reduction"):
        run_search(dataclasses.replace(cfg, budget=2), log=lambda s: None)


def test_a_space_file_whose_description_was_edited_continues_its_study(tmp_path):
    """A study is held to its space: a description edited between runs continues it, a real
    change is refused, and a study begun when the hash covered the description too continues
    (with the description it began with) and takes up the current hash."""
    import yaml

    from search_spaces import SPACES_DIR, load_space

    doc = yaml.safe_load((SPACES_DIR / "tiny.yaml").read_text())
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({**doc, "description": "first words"}))
    url = f"sqlite:///{tmp_path}/nas.db"
    cfg = SearchConfig(space=str(path), budget=1, epochs=1, db_url=url, runs_dir=str(tmp_path),
                       study="mine", dataset="digits", executor="local")
    assert run_search(cfg, log=lambda s: None).completed == 1
    store = Store(url)
    assert store.get_study("mine").space_hash == load_space(str(path)).hash

    path.write_text(yaml.safe_dump({**doc, "description": "other words"}))
    assert run_search(dataclasses.replace(cfg, budget=2), log=lambda s: None).completed == 2

    old = load_space(str(path)).hashes[1]  # the whole document's, as studies before held it
    with sqlite3.connect(tmp_path / "nas.db") as con:
        con.execute("UPDATE nas_studies SET space_hash = ?", (old,))
    assert run_search(dataclasses.replace(cfg, budget=3), log=lambda s: None).completed == 3
    assert store.get_study("mine").space_hash == load_space(str(path)).hash, "taken up"
    path.write_text(yaml.safe_dump({**doc, "description": "third words"}))  # so from now on
    assert run_search(dataclasses.replace(cfg, budget=4), log=lambda s: None).completed == 4

    path.write_text(yaml.safe_dump({**doc, "description": "other words",
                                    "resolution": doc.get("resolution", 224) * 2}))
    with pytest.raises(StorageError, match="another search space"):
        run_search(dataclasses.replace(cfg, budget=5), log=lambda s: None)
    assert len(store.trials("mine")) == 4


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_search.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_a_study_run_again_takes_the_options_left_out_from_its_runs(tmp_path):
    # a search typed with its own settings, continued by commands that leave them out: they
    # train and count as the study did
    runs = ["--space", "tiny", "--runs-dir", str(tmp_path), "--executor", "local"]
    r = _cli(*runs, "--budget", "1", "--epochs", "1", "--dataset", "digits", "--sampler",
             "random", "--seed", "7")
    assert r.returncode == 0, r.stderr[-2000:]
    r = _cli(*runs, "--budget", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert ("study 'tiny' continues with its earlier runs' settings: --seed 7 --epochs 1 "
            "--sampler random --dataset digits (options given on the command line replace "
            "them)") in r.stdout, r.stdout[-3000:]
    store = Store(f"sqlite:///{tmp_path}/nas.db")
    trials = store.trials("tiny", states=["COMPLETE"])
    assert len(trials) == 2
    assert all(len(t.metrics["curve"]) == 1 for t in trials), "the second run trained 1 epoch"
    second = store.runs("tiny")[-1].config
    assert (second["epochs"], second["sampler"], second["seed"]) == (1, "random", 7)
    assert "inherit" not in second, "what was left out is not stored, its values are"
    # the budget too: nothing left to run, and no "only 2 of 20 completed" failure
    r = _cli(*runs)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "--budget 2 --seed 7" in r.stdout and "(budget 2); nothing to run" in r.stdout
    # a typed option that changes what a trial measures is still refused, with both remedies
    r = _cli(*runs, "--budget", "3", "--epochs", "3")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "(give --epochs 1, or leave it out: a resumed study takes its own)" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--study", " x"], "--study must be"),
    (["--study", "y" * 300], "(300 characters)"),
    (["--seed", "-1"], "--seed must be"),
    (["--max-concurrent", "0"], "--max-concurrent must be an integer >= 1; got 0"),
    (["--max-concurrent", "-1"], "--max-concurrent must be"),
    (["--batch-size", "0"], "--batch-size must be"),
    (["--budget", "0"], "--budget must be"),
    (["--epochs", "0"], "--epochs must be"),
    (["--sampler", "bogus"], "invalid choice: 'bogus'"),
    (["--budget", "73"], "--budget 73 exceeds the 72 configurations of space 'tiny'"),
    # the dataset's input is checked before the database exists (it used to leave nas.db)
    (["--dataset", "npz", "--data-path", "/nonexistent/x.npz"], "/nonexistent/x.npz is not a"),
    (["--data-path", "/nonexistent/x.npz"], "takes no --data-path"),
])
def test_bad_input_is_one_line_exit_2_before_anything_starts(tmp_path, args, message):
    runs = tmp_path / "runs"
    r = _cli("--space", "tiny", "--budget", "1", "--runs-dir", str(runs), *args)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line, line
    assert not runs.exists(), "nothing (database, cache, Ray) may start before the checks"


def test_batch_larger_than_the_dataset_is_refused_before_ray(tmp_path):
    r = _cli("--space", "tiny", "--budget", "1", "--runs-dir", str(tmp_path),
             "--batch-size", "100000")
    assert r.returncode == 2, r.stderr[-2000:]
    (line,) = r.stderr.strip().splitlines()
    assert "--batch-size 100000 exceeds the 6000 training images" in line, line
    assert not (tmp_path / "ray").exists()


def test_damaged_optuna_schema_is_one_line_before_ray(tmp_path):
    url = f"sqlite:///{tmp_path}/nas.db"
    Store(url).close()
    optuna.create_study(storage=url, study_name="other")
    with sqlite3.connect(tmp_path / "nas.db") as con:
        con.execute("UPDATE alembic_version SET version_num = 'damaged'")
    with pytest.raises(StorageError) as info:
        run_search(SearchConfig(space="tiny", budget=1, db_url=url, runs_dir=str(tmp_path)),
                   log=lambda s: None)
    assert "Optuna's tables" in str(info.value) and "\n" not in str(info.value), info.value
    r = _cli("--space", "tiny", "--budget", "1", "--runs-dir", str(tmp_path), "--db", url)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert not (tmp_path / "ray").exists()
