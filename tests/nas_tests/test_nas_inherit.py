"""A study run again takes the settings its command line leaves out from the study's runs."""

from __future__ import annotations

import dataclasses

import pytest

from db import Store
from nas._preflight import (
    INHERITABLE,
    as_option,
    check_resume,
    check_settings,
    inherit_settings,
)
from nas.cli import _given, _parser
from nas.errors import ConfigError
from nas.search import SearchConfig

HASH = "a" * 16


def _typed(*argv: str) -> set[str]:
    full = ["search", *argv]
    return _given(full, _parser().parse_args(full))


def test_the_cli_tells_typed_options_from_defaults() -> None:
    typed = _typed("--space", "tiny", "--bud", "5", "--no-asha-late-rung", "--dataset", "clutter",
                   "--compile")
    # an abbreviation, a --no- flag, a value equal to the default and a bare flag all count
    assert {"space", "budget", "asha_late_rung", "dataset", "compile"} <= typed, typed
    assert not {"epochs", "seed", "sampler", "scheduler", "data_path", "lr"} & typed, typed
    assert _typed("--space", "tiny", "--asha-late-rung") >= {"asha_late_rung"}


def test_every_inheritable_setting_is_a_field_and_an_option() -> None:
    fields = {f.name for f in dataclasses.fields(SearchConfig)}
    dests = set(vars(_parser().parse_args(["search", "--space", "tiny"])))
    assert set(INHERITABLE) <= fields & dests
    # placement, paths and the database are never taken from an earlier run
    assert not {"runs_dir", "db_url", "study", "max_concurrent", "cpus_per_trial",
                "gpus_per_trial", "ray_address", "executor", "progress_every",
                "allow_change"} & set(INHERITABLE)


def _store(tmp_path, first: dict, later: dict | None) -> Store:
    store = Store(f"sqlite:///{tmp_path}/nas.db")
    study = store.get_or_create_study("s", space="tiny", space_hash=HASH,
                                      objectives=["accuracy:max", "macs:min"], config=first)
    for config in ([first] + ([later] if later else [])):
        run = store.begin_run(study.id, config=config, argv=["search"], versions={},
                              host="h", pid=1)
        store.end_run(run.id, "completed")
    return store


FIRST = {"epochs": 1, "dataset": "npz", "data_path": "/data/mine.npz", "budget": 5,
         "sampler": "nsga2", "asha_min_epochs": 1 / 3, "zero_cost": []}
# a second run changed the measured settings with --allow-change, and the search's own
LATER = {**FIRST, "epochs": 2, "budget": 9, "sampler": "random", "zero_cost": ["synflow"],
         "scheduler": "asha", "asha_min_epochs": 0.25, "asha_late_rung": False}


def test_measured_settings_come_from_the_first_run_the_rest_from_the_latest(tmp_path) -> None:
    store = _store(tmp_path, FIRST, LATER)
    everything = SearchConfig(space="tiny", inherit=INHERITABLE)
    cfg, taken = inherit_settings(everything, store, "s", HASH)
    assert (cfg.epochs, cfg.dataset, cfg.data_path) == (1, "npz", "/data/mine.npz")
    assert (cfg.budget, cfg.sampler, cfg.zero_cost, cfg.scheduler) == (9, "random",
                                                                       ("synflow",), "asha")
    assert (cfg.asha_min_epochs, cfg.asha_late_rung) == (0.25, False)
    assert taken == ["--budget 9", "--epochs 1", "--sampler random", "--dataset npz",
                     "--data-path /data/mine.npz", "--zero-cost synflow", "--scheduler asha",
                     "--asha-min-epochs 0.25", "--no-asha-late-rung"], taken
    # the resume rule then finds nothing to refuse
    assert check_resume("s", FIRST, dataclasses.asdict(cfg), allow_change=False,
                        inherits=True) == []


def test_what_the_command_line_sets_stays(tmp_path) -> None:
    store = _store(tmp_path, FIRST, LATER)
    typed = {"budget", "epochs", "dataset"}
    mine = SearchConfig(space="tiny", budget=50, epochs=4, dataset="clutter",
                        inherit=tuple(f for f in INHERITABLE if f not in typed))
    cfg, taken = inherit_settings(mine, store, "s", HASH)
    assert (cfg.budget, cfg.epochs, cfg.dataset, cfg.sampler) == (50, 4, "clutter", "random")
    # another dataset was typed: the study's input file is not its input
    assert cfg.data_path is None and not any("--data-path" in t for t in taken), taken
    # the Python API (inherit=()) takes nothing; nor does a new study or another space's
    assert inherit_settings(SearchConfig(space="tiny"), store, "s", HASH)[1] == []
    everything = SearchConfig(space="tiny", inherit=INHERITABLE)
    assert inherit_settings(everything, store, "new", HASH) == (everything, [])
    assert inherit_settings(everything, store, "s", "b" * 16) == (everything, [])


def test_a_study_run_once_continues_with_that_run(tmp_path) -> None:
    store = _store(tmp_path, {**FIRST, "asha_min_epochs": 1 / 3}, None)
    mine = SearchConfig(space="tiny", asha_min_epochs=0.5, inherit=INHERITABLE)
    cfg, taken = inherit_settings(mine, store, "s", HASH)
    assert cfg.asha_min_epochs == 1 / 3 and "--asha-min-epochs 1/3" in taken, taken
    assert cfg.zero_cost == () and not any("zero-cost" in t for t in taken), taken


def test_a_rung_taken_from_a_later_run_never_clashes_with_the_epochs(tmp_path) -> None:
    # a second run, with --allow-change, trained 5 epochs with its first rung at 3; the study's
    # own epochs (1) come from its first run, so that rung cannot be taken with them
    store = _store(tmp_path, FIRST, {**LATER, "epochs": 5, "asha_min_epochs": 3})
    everything = SearchConfig(space="tiny", inherit=INHERITABLE)
    cfg, taken = inherit_settings(everything, store, "s", HASH)
    assert (cfg.epochs, cfg.scheduler, cfg.asha_min_epochs) == (1, "asha", 1 / 3), taken
    assert not any("asha-min-epochs" in t for t in taken), taken
    check_settings(cfg, resolved=True)  # a plain re-run is not refused


def test_the_rung_is_judged_against_the_epochs_the_run_will_use() -> None:
    # --asha-min-epochs 3 typed on a study of 5 epochs: not judged against the default 3
    typed = SearchConfig(space="tiny", scheduler="asha", asha_min_epochs=3,
                         inherit=tuple(f for f in INHERITABLE
                                       if f not in ("scheduler", "asha_min_epochs")))
    check_settings(typed)
    with pytest.raises(ConfigError, match="must be < --epochs"):
        check_settings(typed, resolved=True)  # as if the study had 3 epochs too
    check_settings(dataclasses.replace(typed, epochs=5), resolved=True)
    with pytest.raises(ConfigError, match="must be < --epochs"):  # nothing to take: at once
        check_settings(dataclasses.replace(typed, inherit=()))
    with pytest.raises(ConfigError, match="inherit must be a tuple of names"):
        check_settings(SearchConfig(space="tiny", inherit="epochs"))


def test_a_zero_cost_stored_as_a_string_is_one_name(tmp_path) -> None:
    store = _store(tmp_path, FIRST, {**LATER, "zero_cost": "synflow"})  # as the API stores it
    cfg, taken = inherit_settings(SearchConfig(space="tiny", inherit=INHERITABLE), store, "s",
                                  HASH)
    assert cfg.zero_cost == ("synflow",) and "--zero-cost synflow" in taken, taken


def test_what_a_study_turned_on_can_be_turned_off() -> None:
    from nas.cli import _unless_off

    assert {"compile"} <= _typed("--space", "tiny", "--no-compile")
    assert [_unless_off(v) for v in ("none", "OFF", " ", None, "synflow:2")] == [
        None, None, None, None, "synflow:2"]


@pytest.mark.parametrize("field, value, option", [
    ("asha_min_epochs", 1 / 3, "--asha-min-epochs 1/3"),
    ("asha_min_epochs", 2, "--asha-min-epochs 2"),
    ("compile", True, "--compile"),
    ("compile", False, "--no-compile"),
    ("zero_cost", (), "--zero-cost none"),
    ("data_path", None, "no --data-path"),
    ("trial_checkpoints", False, "--no-trial-checkpoints"),
    ("prescreen", None, "--prescreen none"),
    ("zero_cost", ("synflow", "naswot"), "--zero-cost synflow,naswot"),
    ("data_path", "/my data/x.npz", "--data-path '/my data/x.npz'"),
])
def test_options_are_written_as_typed(field, value, option) -> None:
    assert as_option(field, value) == option


def test_a_typed_change_is_refused_naming_both_remedies() -> None:
    with pytest.raises(ConfigError) as e:
        check_resume("s", {"epochs": 3}, {"epochs": 1}, allow_change=False, inherits=True)
    assert "(give --epochs 3, or leave it out: a resumed study takes its own)" in str(e.value)


# --------------------------------------------------------------------- python -m nas studies


def _searched(tmp_path) -> str:
    """A database with study 's' (two runs, the second started two trials, one failed) and an
    empty study 'e'; its URL."""
    url = f"sqlite:///{tmp_path}/nas.db"
    store = Store(url)
    study = store.get_or_create_study("s", space="tiny", space_hash=HASH,
                                      objectives=["accuracy:max", "macs:min"], config=FIRST)
    store.get_or_create_study("e", space="tiny", space_hash=HASH,
                              objectives=["accuracy:max", "macs:min"], config=FIRST)
    for config, argv, states in (
            (FIRST, ["/x/run_search.py", "--space", "tiny", "--epochs", "1"], []),
            (LATER, ["/x/nas/__main__.py", "search", "--db", "postgresql://u:***@h/d",
                     "--sampler", "random"], ["COMPLETE", "FAIL"])):
        run = store.begin_run(study.id, config=config, argv=argv, versions={}, host="h",
                              pid=7)
        for i, state in enumerate(states):
            t = store.start_trial(study.id, key=f"{run.id}-{i}", arch_hash=f"{i:016x}",
                                  arch={}, params={}, run_id=run.id)
            store.finish_trial(t.id, state=state, error="boom" if state == "FAIL" else None)
        store.end_run(run.id, "completed")
    store.close()
    return url


def _out(capsys) -> str:
    return " ".join(capsys.readouterr().out.split())  # rich wraps cells: compare words


def test_studies_lists_every_study_and_one_studys_runs(tmp_path, capsys, monkeypatch) -> None:
    from nas.cli import main

    monkeypatch.setenv("COLUMNS", "400")  # one line per row

    url = _searched(tmp_path)
    before = (tmp_path / "nas.db").read_bytes()
    assert main(["studies", "--db", url]) == 0
    text = _out(capsys)
    assert "2 studies in" in text and "1 complete, 1 fail" in text and "none" in text, text
    assert main(["studies", "--db", url, "--study", "s"]) == 0
    text = _out(capsys)
    assert "runs of study 's'" in text and "run_search.py --space tiny --epochs 1" in text, text
    assert "python -m nas search --db 'postgresql://u:***@h/d' --sampler random" in text, text
    # the second run's two trials are counted against it, the first's none
    assert " 0 │ run_search.py" in text and " 2 │ python -m nas" in text, text
    assert ("a re-run that types none of these options continues study 's' with: --budget 9 "
            "--epochs 1 --sampler random --dataset npz --data-path /data/mine.npz --zero-cost "
            "synflow --scheduler asha --asha-min-epochs 0.25 --no-asha-late-rung") in text, text
    assert (tmp_path / "nas.db").read_bytes() == before, "studies must only read"


def test_studies_says_when_a_running_run_has_gone_silent(tmp_path, capsys, monkeypatch) -> None:
    """A run killed with -9 stays 'running' in the database until the study's next run; a
    reader cannot close it, but says it has sent no heartbeat for longer than the stale limit."""
    import time

    from nas.cli import main

    monkeypatch.setenv("COLUMNS", "400")
    url = f"sqlite:///{tmp_path}/nas.db"
    with Store(url) as store:
        study = store.get_or_create_study("s", space="tiny", space_hash=HASH,
                                          objectives=["accuracy:max", "macs:min"], config=FIRST)
        store.begin_run(study.id, config=FIRST, argv=["run_search.py"], versions={}, host="h",
                        pid=7, stale_after_s=1)  # (a reader judges it by the longer limit)
    assert main(["studies", "--db", url, "--study", "s"]) == 0
    assert "no heartbeat" not in _out(capsys)  # alive, as far as anyone can tell
    monkeypatch.setenv("NAS_LEASE_STALE_S", "1")
    time.sleep(1.1)
    assert main(["studies", "--db", url]) == 0
    assert "#1 running (no heartbeat for 1 s: probably gone)" in _out(capsys)
    assert main(["studies", "--db", url, "--study", "s"]) == 0
    assert ("no heartbeat for 1 s: its process is probably gone; the next run of this study "
            "closes it and its running trials") in _out(capsys)


def test_studies_refuses_an_unknown_study_or_a_missing_database(tmp_path, capsys) -> None:
    from nas.cli import main

    url = _searched(tmp_path)
    assert main(["studies", "--db", url, "--study", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: no study named 'nope'")
    assert main(["studies", "--runs-dir", str(tmp_path / "none")]) == 2
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "none").exists(), "nothing is created"
