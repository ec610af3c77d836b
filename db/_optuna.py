"""Optuna's RDBStorage over our database, as robust to a server restart as db.Store (private).

Optuna's study lives in the same database as our tables (optuna-dashboard opens it as it is).
Its storage gets the Store's connection handling: pooled PostgreSQL connections are pre-pinged
(a restart closed them: a new one is opened at checkout instead of failing the next call), and
each storage call is retried like a Store transaction, a lost connection for up to
:data:`db._retry.OUTAGE_S` seconds. Each call is one transaction, rolled back when it fails,
so running it again is safe, except in the narrow case of a connection lost while its COMMIT
went through: a ``tell`` run again then finds its trial finished and raises (the resume's
close_stale_trials tidies such leftovers).
"""

from __future__ import annotations

import functools
from typing import Any

import optuna
from sqlalchemy.exc import SQLAlchemyError

from db._engine import normalize_url
from db._retry import call_retrying

__all__ = ["optuna_storage"]

#: the storage calls a study makes; each opens and commits (or rolls back) one session
_CALLS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_trial_user_attrs",
    "get_trial_system_attrs", "get_all_studies", "create_new_trial", "set_trial_param",
    "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial_id_from_study_id_trial_number",
    "get_trial", "get_all_trials", "get_best_trial", "get_n_trials", "record_heartbeat",
)
_ERRORS = (optuna.exceptions.StorageInternalError, SQLAlchemyError)


def _retried(name: str):
    method = getattr(optuna.storages.RDBStorage, name)

    @functools.wraps(method)
    def call(self, *args: Any, **kwargs: Any) -> Any:
        return call_retrying(lambda: method(self, *args, **kwargs), _ERRORS, patient=True)

    return call


class _RetryingRDBStorage(optuna.storages.RDBStorage):
    pass


for _name in _CALLS:
    if hasattr(optuna.storages.RDBStorage, _name):
        setattr(_RetryingRDBStorage, _name, _retried(_name))


def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's storage for ``url`` (normalised as db.Store's), pre-pinging and retrying."""
    url = normalize_url(url)
    kwargs = {} if url.startswith("sqlite") else {"engine_kwargs": {"pool_pre_ping": True}}
    return _RetryingRDBStorage(url, **kwargs)
