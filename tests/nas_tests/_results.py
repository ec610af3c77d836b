"""Test helpers: a complete TrialResult with any field overridden; a study in both tables; one
searcher slot run."""

from __future__ import annotations

import optuna

from db import Store
from nas.models import from_dict
from nas.results import DEFAULT_OBJECTIVES, TrialResult, objective_names
from search_spaces import load_space


def study_setup(tmp_path):
    """(space ``tiny``, a Store in ``tmp_path``, its study ``s``, a seeded in-memory Optuna
    study with the default objectives)."""
    space = load_space("tiny")
    store = Store(f"sqlite:///{tmp_path}/nas.db", decode_arch=from_dict)
    study = store.get_or_create_study("s", space=space.name, space_hash=space.hash,
                                      objectives=objective_names(DEFAULT_OBJECTIVES), config={})
    ot = optuna.create_study(directions=[o.optuna_direction for o in DEFAULT_OBJECTIVES],
                             sampler=optuna.samplers.RandomSampler(seed=0))
    return space, store, study, ot


def result(**kw) -> TrialResult:
    base = dict(accuracy=0.8, accuracy_se=0.01, test_accuracy=0.79, macs=10**9, params=10**6,
                acts=10**5, proxy_macs=10**7, proxy_params=10**4, accuracy_std=None,
                binomial_se=0.01, test_accuracy_se=0.011, accuracies=(0.8,),
                test_accuracies=(0.79,), repeats=1, val_loss=0.5, num_val=2000, num_test=2000,
                final_train_loss=0.6, train_loss_sum=1.2, steps=100, train_seconds=3.0,
                eval_seconds=0.5, count_seconds=0.2, images_per_second=2000.0,
                total_seconds=4.0, device="cpu", curve=[[{"epoch": 1}]])
    return TrialResult(**{**base, **kw})


def complete_slot(searcher, store, study_id: int, i: int) -> dict:
    """Ask `searcher` for trial ``t{i}``, record it COMPLETE in `store`, report it back."""
    cfg = searcher.suggest(f"t{i}")
    assert isinstance(cfg, dict), f"slot {i}: expected a config, got {cfg!r}"
    rec = store.start_trial(study_id, key=f"run:t{i}", arch_hash=cfg["arch_hash"],
                            arch=cfg["arch"], params=cfg["params"])
    r = result(accuracy=0.5 + i / 100, macs=1000 + i)
    store.finish_trial(rec.id, state="COMPLETE", metrics=r.metrics(), **r.columns())
    searcher.on_trial_complete(f"t{i}", r.report())
    searcher.settle(f"t{i}")  # Optuna is told once the row is written (the recorder's call)
    return cfg


def twin_pairs(space) -> list[tuple[dict, dict]]:
    """The feasible pairs of parameters that train one proxy (proxy twins), one pair per
    proxy, each ordered by ``depth/total`` (in ``tiny``: 4, then 6)."""
    from nas._twins import proxy_key
    from search_spaces._sampling import every_choice

    groups: dict[str, list[dict]] = {}
    for arch, params in every_choice(space.sample):
        if not space.violations(arch):
            groups.setdefault(proxy_key(space.proxy(arch, 10)), []).append(dict(params))
    return [tuple(sorted(g, key=lambda p: p["depth/total"])) for g in groups.values()
            if len(g) == 2]
