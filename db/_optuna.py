"""Optuna's RDBStorage over our database, as robust to a server restart as db.Store (private).

Optuna's study lives in the same database as our tables (optuna-dashboard opens it as it is).
Its storage gets the Store's connection handling: pooled PostgreSQL connections are pre-pinged
(a restart closed them: a new one is opened at checkout instead of failing the next call), and
each storage call is retried like a Store transaction, a lost connection for up to
:data:`db._retry.OUTAGE_S` seconds, on the same outage clock as the Store's for that URL. Each
call is one transaction, rolled back when it fails, so running it again is safe, except in the
narrow case of a connection lost while its COMMIT went through. A ``tell`` of values
(``set_trial_state_values`` to a finished state) run again after a lost connection then finds
its trial finished: when the stored state and values are the ones it was setting, that is its
own commit, and it returns as the first attempt would have. A FAIL or PRUNED without values
cannot be told from another run's and still raises. A new trial carries a nonce in its system
attrs (:data:`CREATED_ATTR`), so a creation run again after a lost connection first looks for
the trial its first attempt may have committed, and returns that one instead of making a
second. A WAITING trial set RUNNING again after a lost connection finds it RUNNING, started
since the call began: that is its own commit (only the study's one run asks, so nothing else
pops the queue), and it returns True as the first attempt would have; before, it returned
False, and Optuna left that trial RUNNING and asked for another, dropping the enqueued
parameters. Attributes, parameters and intermediate values are upserts. Called inside another
retried call (not done by Optuna's storage), the outer one retries and these checks do not run.

A study reaches its storage through Optuna's ``_CachedStorage``, which calls some of the
storage's private methods (``_create_new_trial`` for every ``ask``, ``_set_trial_param`` for
every ``suggest_*``, ``_get_trials`` ...): they are retried too (:data:`_CALLS`), or an ask
during a restart would fail at once while the tells around it waited.
"""

from __future__ import annotations

import copy
import datetime
import functools
import math
import uuid
from collections.abc import Sequence
from typing import Any

import optuna
from sqlalchemy.exc import SQLAlchemyError

from db._engine import normalize_url, server_connect_args
from db._retry import call_retrying, is_connection_lost

__all__ = ["CREATED_ATTR", "optuna_storage"]

#: the storage calls a study makes; each opens and commits (or rolls back) one session
_CALLS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_trial_user_attrs",
    "get_trial_system_attrs", "get_all_studies", "create_new_trial", "set_trial_param",
    "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial_id_from_study_id_trial_number",
    "get_trial", "get_all_trials", "get_best_trial", "get_n_trials", "record_heartbeat",
    # what optuna.storages._CachedStorage (every study's wrapper) calls instead of the above
    "_set_trial_param", "_get_trials", "_get_best_trial_id", "_get_stale_trial_ids",
)
#: a new trial's system attr holding its creation's nonce (a hex uuid)
CREATED_ATTR = "nas:created"
_ERRORS = (optuna.exceptions.StorageInternalError, SQLAlchemyError)


def _retried(name: str):
    method = getattr(optuna.storages.RDBStorage, name)

    @functools.wraps(method)
    def call(self, *args: Any, **kwargs: Any) -> Any:
        return call_retrying(lambda: method(self, *args, **kwargs), _ERRORS, patient=True,
                             key=self.url)

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


def _with_nonce(template: optuna.trial.FrozenTrial | None,
                nonce: str) -> optuna.trial.FrozenTrial:
    """``template`` (what Optuna creates without one: a RUNNING trial started now) with
    :data:`CREATED_ATTR` set to ``nonce`` among its system attrs."""
    if template is None:
        return optuna.trial.FrozenTrial(
            number=-1, state=optuna.trial.TrialState.RUNNING, value=None,
            datetime_start=datetime.datetime.now(), datetime_complete=None, params={},
            distributions={}, user_attrs={}, system_attrs={CREATED_ATTR: nonce},
            intermediate_values={}, trial_id=-1)
    marked = copy.copy(template)
    marked.system_attrs = {**template.system_attrs, CREATED_ATTR: nonce}
    return marked


class _RetryingRDBStorage(optuna.storages.RDBStorage):
    def _create_new_trial(self, study_id: int, template_trial: optuna.trial.FrozenTrial |
                          None = None) -> optuna.trial.FrozenTrial:
        method = optuna.storages.RDBStorage._create_new_trial
        nonce = uuid.uuid4().hex
        template = _with_nonce(template_trial, nonce)
        lost = False  # the attempt before lost its connection: its commit may have gone through

        def once() -> optuna.trial.FrozenTrial:
            nonlocal lost
            if lost:  # made already? (found by the nonce: only this call knows it)
                made = next((t for t in optuna.storages.RDBStorage.get_all_trials(
                    self, study_id, deepcopy=False) if t.system_attrs.get(CREATED_ATTR) ==
                    nonce), None)
                if made is not None:
                    return copy.deepcopy(made)
            try:
                return method(self, study_id, template)
            except _ERRORS as e:
                lost = is_connection_lost(e)
                raise

        return call_retrying(once, _ERRORS, patient=True, key=self.url)

    def set_trial_state_values(self, trial_id: int, state: optuna.trial.TrialState,
                               values: Sequence[float] | None = None) -> bool:
        method = optuna.storages.RDBStorage.set_trial_state_values
        lost = False  # the attempt before lost its connection: its commit may have gone through
        began = datetime.datetime.now()  # Optuna stamps a trial it starts with its own now()

        def once() -> bool:
            nonlocal lost
            try:
                started = method(self, trial_id, state, values)
                if not started and lost and state == optuna.trial.TrialState.RUNNING:
                    # a WAITING trial set RUNNING since this call began: our lost commit (only
                    # the study's one run asks, so no other process pops its queue meanwhile)
                    trial = optuna.storages.RDBStorage.get_trial(self, trial_id)
                    return trial.state == state and trial.datetime_start is not None and \
                        trial.datetime_start >= began
                return started
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

        return call_retrying(once, _ERRORS, patient=True, key=self.url)


for _name in _CALLS:
    if hasattr(optuna.storages.RDBStorage, _name) and _name not in _RetryingRDBStorage.__dict__:
        setattr(_RetryingRDBStorage, _name, _retried(_name))


def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's storage for ``url`` (normalised as db.Store's), pre-pinging and retrying."""
    url = normalize_url(url)
    kwargs = {} if url.startswith("sqlite") else {"engine_kwargs": {
        "pool_pre_ping": True, "connect_args": server_connect_args(url)}}
    return _RetryingRDBStorage(url, **kwargs)
