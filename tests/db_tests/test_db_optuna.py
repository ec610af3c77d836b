"""Optuna's RDBStorage and our nas_ tables live in the same database (SQLite, PostgreSQL)."""

from __future__ import annotations

import optuna
import pytest
from sqlalchemy import create_engine, inspect

from db import Store
from db._models import Base

OBJECTIVES = ("accuracy:max", "macs:min")


def _use_optuna(url: str, study_name: str, n: int) -> None:
    storage = optuna.storages.RDBStorage(url)
    try:
        study = optuna.create_study(
            storage=storage, study_name=study_name, directions=["maximize", "minimize"]
        )
        for _ in range(n):
            trial = study.ask()
            x = trial.suggest_float("x", 0.0, 1.0)
            trial.suggest_categorical("stage1/mixer", ["attn", "pool"])
            study.tell(trial, [x, 1.0 - x])
    finally:
        storage.remove_session()
        storage.engine.dispose()


def _use_ours(url: str, name: str) -> list[int]:
    with Store(url) as store:
        study = store.get_or_create_study(
            name, space="sp", space_hash="h", objectives=OBJECTIVES, config={}
        )
        ids = []
        for i in range(3):
            t = store.start_trial(study.id, key=f"k{i}", arch_hash=f"a{i}", arch={}, params={})
            store.finish_trial(t.id, state="COMPLETE", accuracy=0.1 * i, macs=10 - i)
            ids.append(t.id)
        return ids


@pytest.mark.parametrize("first", ["optuna", "ours"])
def test_optuna_rdb_storage_coexists(
    backend_url: str, store: Store, name_prefix: str, first: str
) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = backend_url
    opt_a, opt_b, ours_a, ours_b = (f"{name_prefix}{n}" for n in ("opt-a", "opt-b", "a", "b"))
    try:
        if first == "optuna":
            _use_optuna(url, opt_a, 3)
            _use_ours(url, ours_a)
        else:
            _use_ours(url, ours_a)
            _use_optuna(url, opt_a, 3)
        # and again, interleaved, with both already present
        _use_optuna(url, opt_b, 2)
        _use_ours(url, ours_b)

        engine = create_engine(url)
        try:
            tables = set(inspect(engine).get_table_names())
        finally:
            engine.dispose()
        ours = set(Base.metadata.tables)
        assert all(t.startswith("nas_") for t in ours), f"unprefixed table in {ours}"
        assert ours <= tables and {"studies", "trials"} <= tables, f"got tables {sorted(tables)}"

        storage = optuna.storages.RDBStorage(url)
        try:
            counts = {
                name: len(optuna.load_study(study_name=name, storage=storage).get_trials())
                for name in (opt_a, opt_b)
            }
        finally:
            storage.remove_session()
            storage.engine.dispose()
        expected = {opt_a: 3, opt_b: 2}
        assert counts == expected, f"expected Optuna trial counts {expected}, got {counts}"

        got = {s.name: store.count(s.name) for s in store.list_studies()}
        got = {k: v for k, v in got.items() if k.startswith(name_prefix)}
        assert got == {ours_a: 3, ours_b: 3}, f"expected 3 COMPLETE trials each, got {got}"
    finally:
        _delete_optuna_studies(url, [opt_a, opt_b])


def _delete_optuna_studies(url: str, names: list[str]) -> None:
    storage = optuna.storages.RDBStorage(url)
    try:
        existing = {s.study_name for s in storage.get_all_studies()}
        for name in names:
            if name in existing:
                optuna.delete_study(study_name=name, storage=storage)
    finally:
        storage.remove_session()
        storage.engine.dispose()
