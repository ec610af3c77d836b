"""A PostgreSQL restart closes every pooled connection: the next write of our store and of
Optuna's study must open a new one instead of failing (the search would lose a trial)."""

from __future__ import annotations

import optuna
import pytest
from sqlalchemy.engine import make_url

from db import Store
from nas.models import from_dict
from nas.results import DEFAULT_OBJECTIVES
from nas.search import _optuna_study


def _drop_connections(url: str) -> int:
    """Close the server side of every connection to ``url``'s database, as a restart does."""
    import psycopg

    u = make_url(url)
    with psycopg.connect(host=u.host, port=u.port or 5432, user=u.username,
                         password=u.password, dbname="postgres", autocommit=True,
                         connect_timeout=10) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()",
                            (u.database,)).fetchall()
    return len(rows)


@pytest.mark.parametrize("what", ["optuna", "store"])
def test_writes_survive_the_server_dropping_pooled_connections(pg_database_url, what):
    store = Store(pg_database_url, decode_arch=from_dict)
    study = store.get_or_create_study("reconnect", space="tiny", space_hash="0" * 16,
                                      objectives=("accuracy:max", "macs:min"), config={})
    ot_study, _ = _optuna_study(pg_database_url, "reconnect", "random", 0, DEFAULT_OBJECTIVES)
    trial = ot_study.ask()
    ot_study.tell(trial, [0.5, 1.0])
    assert _drop_connections(pg_database_url) >= 1
    if what == "optuna":  # a tell after the drop, as the recorder's after a restart
        trial = ot_study.ask()
        ot_study.tell(trial, [0.6, 2.0])
        assert [t.state for t in ot_study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    else:
        assert store.runs(study.id) == []
