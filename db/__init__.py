"""Results database of the NAS engine: studies and trials in SQLite or PostgreSQL.

Typical use::

    store = Store(default_url("runs"))
    study = store.get_or_create_study("s1", space="metaformer-v1", space_hash=h,
                                      objectives=("accuracy:max", "macs:min"), config=cfg)
    trial = store.start_trial(study.id, key=ray_trial_id, arch_hash=ah, arch=arch, params=p)
    store.finish_trial(trial.id, state="COMPLETE", accuracy=0.71, macs=1.2e9, metrics={...})
    front = pareto_front(store.trials("s1"))
"""

from __future__ import annotations

from db._engine import normalize_url
from db.analysis import pareto_front
from db.errors import StorageError
from db.records import TERMINAL_STATES, TRIAL_STATES, StudyRecord, TrialRecord
from db.store import Store, default_url

__all__ = [
    "TERMINAL_STATES",
    "TRIAL_STATES",
    "StorageError",
    "Store",
    "StudyRecord",
    "TrialRecord",
    "default_url",
    "normalize_url",
    "pareto_front",
]
