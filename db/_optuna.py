"""Optuna's RDBStorage over our database, as robust to a server restart as db.Store (private).

Optuna's study lives in the same database as our tables (optuna-dashboard opens it as it is).
Its storage gets the Store's connection handling: pooled PostgreSQL connections are pre-pinged
(a restart closed them: a new one is opened at checkout instead of failing the next call), and
each storage call is retried like a Store transaction, a lost connection for up to
:data:`db._retry.OUTAGE_S` seconds. Each call is one transaction, rolled back when it fails,
so running it again is safe, except in the narrow case of a connection lost while its COMMIT
went through. A ``tell`` of values (``set_trial_state_values`` to a finished state) run again
after a lost connection then finds its trial finished: when the stored state and values are
the ones it was setting, that is its own commit, and it returns as the first attempt would
have. A FAIL or PRUNED without values cannot be told from another run's and still raises.
Elsewhere the case stays narrow: a ``create_new_trial`` run again leaves one extra RUNNING
trial, as does a WAITING trial set RUNNING again (it returns False, and Optuna asks for another
trial); a resume's close_stale_trials closes them. Attributes, parameters and intermediate
values are upserts. Called inside another retried call (not done by Optuna's storage), the
outer one retries and this check does not run.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import optuna
from sqlalchemy.exc import SQLAlchemyError

from db._engine import normalize_url, server_connect_args
from db._retry import call_retrying, is_connection_lost

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


def _landed(trial: optuna.trial.FrozenTrial, state: optuna.trial.TrialState,
            values: Sequence[float] | None) -> bool:
    """Whether ``trial`` holds exactly what a finishing ``set_trial_state_values`` set."""
    if trial.state != state:
        return False
    if values is None:
        return True
    stored = trial.values or []
    return len(stored) == len(values) and all(
        a == b or math.isclose(a, b, rel_tol=1e-12) for a, b in zip(stored, values))


class _RetryingRDBStorage(optuna.storages.RDBStorage):
    def set_trial_state_values(self, trial_id: int, state: optuna.trial.TrialState,
                               values: Sequence[float] | None = None) -> bool:
        method = optuna.storages.RDBStorage.set_trial_state_values
        lost = False  # the attempt before lost its connection: its commit may have gone through

        def once() -> bool:
            nonlocal lost
            try:
                return method(self, trial_id, state, values)
            except optuna.exceptions.UpdateFinishedTrialError:
                # our own commit, or another writer's? Only values tell them apart: a FAIL or
                # PRUNED without values stays an error (another run may have closed the trial)
                if lost and values is not None and state.is_finished() and _landed(
                        optuna.storages.RDBStorage.get_trial(self, trial_id), state, values):
                    return True
                raise
            except _ERRORS as e:
                lost = is_connection_lost(e)
                raise

        return call_retrying(once, _ERRORS, patient=True)


for _name in _CALLS:
    if hasattr(optuna.storages.RDBStorage, _name) and _name not in _RetryingRDBStorage.__dict__:
        setattr(_RetryingRDBStorage, _name, _retried(_name))


def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's storage for ``url`` (normalised as db.Store's), pre-pinging and retrying."""
    url = normalize_url(url)
    kwargs = {} if url.startswith("sqlite") else {"engine_kwargs": {
        "pool_pre_ping": True, "connect_args": server_connect_args(url)}}
    return _RetryingRDBStorage(url, **kwargs)
