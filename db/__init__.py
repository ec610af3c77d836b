"""Results database of the NAS engine: studies and trials in SQLite or PostgreSQL.

Typical use::

    store = Store(default_url("runs"))
    study = store.get_or_create_study("s1", space="metaformer-v1", space_hash=h,
                                      objectives=("accuracy:max", "macs:min"), config=cfg)
    trial = store.start_trial(study.id, key=ray_trial_id, arch_hash=ah, arch=arch, params=p)
    store.finish_trial(trial.id, state="COMPLETE", accuracy=0.71, macs=1.2e9, metrics={...})
    trials = store.trials("s1")   # fronts, hypervolume and more: nas.analysis

The schema is versioned (Alembic, :data:`HEAD_REVISION`): ``Store`` creates it in an empty
database and refuses an older one with :class:`SchemaError` naming the upgrade command
(``python -m nas db upgrade``, i.e. :func:`upgrade`).
"""

from __future__ import annotations

from db._engine import is_memory_sqlite, mask_url, normalize_url, parse_url, sqlite_path
from db._retry import (
    OUTAGE_ENV,
    call_retrying,
    give_up_waits,
    is_connection_lost,
    is_database_lost,
    outage_s,
    parse_outage,
    refuses_writes,
    resume_waits,
    stops_recording,
    tables_gone,
    waits_given_up,
)
from db._runs import lease_limit
from db._schema import HEAD_REVISION, KNOWN_REVISIONS, schema_revision, upgrade
from db.errors import DatabaseGoneError, SchemaError, StorageError, StudyBusyError
from db.records import (
    RUN_OUTCOMES,
    TERMINAL_STATES,
    TRIAL_STATES,
    RunRecord,
    StudyActivity,
    StudyRecord,
    TrialRecord,
    activity_of,
)
from db.store import Store, default_url

__all__ = [
    "optuna_storage",
    "OUTAGE_ENV",
    "HEAD_REVISION",
    "KNOWN_REVISIONS",
    "RUN_OUTCOMES",
    "TERMINAL_STATES",
    "TRIAL_STATES",
    "DatabaseGoneError",
    "RunRecord",
    "SchemaError",
    "StorageError",
    "Store",
    "StudyActivity",
    "StudyBusyError",
    "StudyRecord",
    "TrialRecord",
    "activity_of",
    "call_retrying",
    "default_url",
    "give_up_waits",
    "is_connection_lost",
    "is_database_lost",
    "lease_limit",
    "mask_url",
    "normalize_url",
    "outage_s",
    "parse_outage",
    "parse_url",
    "refuses_writes",
    "resume_waits",
    "schema_revision",
    "sqlite_path",
    "is_memory_sqlite",
    "stops_recording",
    "tables_gone",
    "waits_given_up",
    "upgrade",
]


def optuna_storage(url: str):
    """Optuna's RDBStorage for ``url``, pre-pinging and retrying as :class:`Store` does (a
    server restart is waited out); imported on first use, as Optuna is a heavy import."""
    from db._optuna import optuna_storage as make

    return make(url)
