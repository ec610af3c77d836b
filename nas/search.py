"""Search orchestration: Optuna proposes, Ray Tune places trials, the driver records them.

Data flow: the space's define-by-run sampler runs on Optuna's ask/tell API inside our Ray Tune
``Searcher`` (in the driver, ``nas/_searcher.py``); each proposal is compiled to an ``ArchSpec``,
checked against the space's constraints with the analytic cost model and de-duplicated by hash
*before* anything is built; skipped proposals are recorded as INFEASIBLE or DUPLICATE. Accepted
proposals run as Ray trials (``nas/_trainable.py``, one per CPU core or per GPU), which count the
full model's cost on the meta device and train the reduced proxy from the FFCV loader. A Tune
callback in the driver (``nas/_recorder.py``) and the searcher are the only writers of the
database, both in the driver process, so SQLite never sees concurrent writers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas._preflight import (
    STUDY_NAME_RULE,
    check_resume,
    check_settings,
    check_study_name,
    inherit_settings,
    may_hold_studies,
    ray_endpoint,
)
from nas._samplers import SAMPLERS, make_sampler
from nas.errors import ConfigError, SearchInterrupted, SpaceError, StorageError, did_you_mean
from nas.results import (
    DEFAULT_OBJECTIVES,
    Objective,
    epoch_text,
    objective_names,
    parse_search_objectives,
    parse_zero_cost,
    zero_cost_implied,
)

if TYPE_CHECKING:
    from search_spaces import Space

__all__ = ["SearchConfig", "SearchSummary", "run_search", "parse_prescreen", "SAMPLERS"]


@dataclass(frozen=True)
class SearchConfig:
    """Everything a search run needs; saved with the study so a run can be reproduced."""

    space: str  # shipped space name or path to a YAML file
    budget: int = 20  # completed trials wanted in the study
    db_url: str | None = None  # SQLAlchemy URL; default sqlite:///<runs_dir>/nas.db
    study: str | None = None  # study name; default: the space's name
    seed: int = 0  # sampler and training seed
    epochs: int = 3  # proxy training epochs
    batch_size: int = 64  # proxy training batch size
    lr: float = 2e-3  # proxy AdamW peak learning rate
    repeats: int = 1  # proxy trainings per architecture (independent seeds); mean is the score
    compile: bool = False  # torch.compile each proxy model before training (pays off on GPUs)
    sampler: str = "nsga2"  # nsga2 | tpe | random
    dataset: str = "clutter"  # proxies dataset registry name
    data_path: str | None = None  # input folder/file of a user dataset (cifar10, npz, ...)
    runs_dir: str = "runs"  # where the database, Ray's logs and the dataset cache go
    max_concurrent: int | None = None  # trials at once; default one per CPU core or per GPU
    cpus_per_trial: float | None = None  # Ray CPUs per trial; default 1, or CPUs / GPUs on GPUs
    gpus_per_trial: float | None = None  # Ray GPUs per trial (fractions share a GPU); default 1
    #                                      when the cluster has GPUs, else 0
    ray_address: str | None = None  # join this Ray cluster ("host:port"); default: start Ray
    executor: str = "ray"  # ray | local (trials one by one in this process, for debugging)
    reuse_workers: bool = True  # a Ray worker runs trial after trial (imports and FFCV's JIT
    #                             paid once per worker, not per trial); False: one per trial
    retrain_twins: bool = False  # train a proposal whose proxy a completed trial already
    #                              trained with this run's settings (default: record it with
    #                              that trial's proxy result and its own costs; nas/_twins.py)
    max_failures: int | None = None  # give up after this many failed trials; default = budget
    objectives: str | None = None  # "accuracy:max,macs:min"; default: the study's, else that
    zero_cost: tuple[str, ...] = ()  # zero-cost proxies each trial scores at initialisation
    prescreen: str | None = None  # "synflow:K": train the best of K candidates per trial slot
    allow_change: bool = False  # resume a study with settings that change what a trial measures
    scheduler: str = "fifo"  # fifo (every trial trains in full) | asha (multi-objective ASHA
    #                          stops trials at rungs; nas/_scheduler.py)
    asha_eta: int = 3  # ASHA reduction factor: the top 1/eta at a rung continue
    asha_min_epochs: float = 1 / 3  # ASHA's first rung, in epochs (a fraction is judged mid-epoch:
    #                                 1/3 of epoch 1's steps); rungs at asha_min_epochs * eta**k
    #                                 below epochs (1/3 and 1 of 3; benchmarks/bench_asha.py)
    #                                 plus the late rung below
    asha_metric: str = "val_loss"  # what a rung ranks learning on: val_loss | val_accuracy
    asha_late_rung: bool = True  # also a rung one epoch before the last (2 of 3), when the
    #                              ladder stops below it (nas._scheduler.rungs)
    trial_checkpoints: bool = True  # save each trial's training state after every epoch (under
    #                                 runs_dir/checkpoints), so a trial run again after Ctrl-C,
    #                                 a kill or a lost worker resumes after its last epoch
    progress_every: float = 30.0  # seconds between "[progress]" lines when the output is not a
    #                               terminal (a terminal gets a live status line); 0: at the end
    inherit: tuple[str, ...] = ()  # fields of nas._preflight.INHERITABLE that an existing
    #                                study's earlier runs set instead (the CLI: the options left
    #                                off the command line); not stored: the resolved values are


@dataclass(frozen=True)
class SearchSummary:
    study: str
    db_url: str
    completed: int  # COMPLETE trials in the study after the run
    failed: int  # trials that failed in this run
    duplicates: int  # proposals skipped because the same architecture was already evaluated
    infeasible: int  # proposals rejected by the space's constraints (never trained)
    seconds: float  # wall time of the run
    objectives: tuple[Objective, ...] = DEFAULT_OBJECTIVES  # the study's
    screened: int = 0  # candidates the pre-screen did not train (stored as FAIL, told PRUNED)
    interrupted: int = 0  # running trials a stop (Ctrl-C, SIGTERM, an error) marked INTERRUPTED
    pruned: int = 0  # trials the ASHA scheduler stopped at a rung in this run (stored PRUNED)
    evaluated: int | None = None  # trials the budget counts in the study after the run: COMPLETE,
    #                               plus PRUNED under --scheduler asha (None: = completed)
    nodes: tuple[tuple[str, int], ...] = ()  # (worker node, trials of this run recorded there)
    exhausted: bool = False  # the run stopped because the sampler's proposals were all
    #                          duplicates or infeasible (nas._searcher.PROPOSALS_PER_SLOT in a row)
    config: SearchConfig | None = None  # the settings the run used (with what it inherited)
    reused: int = 0  # proposals of this run recorded with a proxy twin's result, not trained

    @property
    def budget_used(self) -> int:
        return self.completed if self.evaluated is None else self.evaluated


# --------------------------------------------------------------------------- driver side


def _make_sampler(name: str, seed: int):
    return make_sampler(name, seed)


def parse_prescreen(spec: str | None) -> tuple[str, int] | None:
    """``"synflow:3"`` as (proxy, K >= 2), the proxy checked against the registry (or
    ``surrogate``, the learned screen of ``nas/_surrogate.py``); None: off."""
    if spec is None:
        return None
    name, sep, k = str(spec).strip().partition(":")
    if not sep or not re.fullmatch(r"[0-9]{1,9}", k.strip()) or int(k) < 2:  # (not "²")
        raise ConfigError(f"--prescreen must be <zero-cost proxy or surrogate>:K with an "
                          f"integer K >= 2; got {spec!r}")
    name = name.strip()
    if name == SURROGATE:
        return SURROGATE, int(k)
    from proxies.zero_cost import list_zero_cost  # lazy: imports torch

    known = list_zero_cost()
    if name not in known:
        raise ConfigError(f"--prescreen: unknown screen {name!r}; known: {SURROGATE} (learned "
                          f"from the study's results) or a zero-cost proxy: {', '.join(known)}"
                          f"{did_you_mean(name, [SURROGATE, *known])}")
    return name, int(k)


SURROGATE = "surrogate"  # --prescreen's learned screen (nas/_surrogate.py), not a zero-cost proxy
CONNECT_TIMEOUT_S = 5.0  # --ray-address: how long the head may take to accept a connection
GCS_CALL_TIMEOUT_S = 15.0  # ... and to answer its first call (a busy head is slower)


def _prescreen_fn(dataset, batch_size: int, seed: int, name: str, space, num_classes: int):
    """Scores a candidate's proxy model with ``name`` on one train batch fixed for the run."""
    from nas._trainable import zero_cost_at_init
    from proxies.zero_cost import first_batch

    images, labels = first_batch(dataset, batch_size=batch_size, seed=seed)

    def screen(arch) -> float:
        proxy = space.proxy(arch, num_classes)
        return zero_cost_at_init(proxy, [name], images, labels, seed)[name]

    return screen


def _sampler_seed(seed: int, n_trials: int) -> int:
    """The sampler's seed for a study holding ``n_trials`` Optuna trials.

    A new study uses ``seed`` itself (same seed, same search); a resumed one a seed derived
    from how far it got, so the sampler continues instead of replaying its first proposals.
    """
    import numpy as np

    if n_trials == 0:
        return seed
    return int(np.random.SeedSequence([seed, n_trials]).generate_state(1)[0])


def _optuna_study(url: str, name: str, sampler: str, seed: int,
                  objectives: tuple[Objective, ...], *, check_only: bool = False):
    """Optuna's own tables live in the same database as ours (one file to back up or resume).

    Returns the study and its storage; the sampler is seeded by :func:`_sampler_seed`. A study
    that was never searched but has other directions is made again with ``objectives``; one
    searched is a StorageError, as is a database whose Optuna tables cannot be used.
    ``check_only``: only those refusals, creating and changing nothing (the study returned is
    None), for a run that has not taken its study's lease yet: a run started at the same moment
    may be making the study for its own objectives.
    """
    import optuna

    from db import is_connection_lost, mask_url, normalize_url, outage_s

    directions = [o.optuna_direction for o in objectives]
    study = None
    try:
        storage = _rdb_storage(normalize_url(url))
        try:
            study_id = storage.get_study_id_from_name(name)
            n_trials = storage.get_n_trials(study_id)
        except KeyError:  # no such study yet
            study_id, n_trials = None, 0
        if check_only:  # only a searched study is held to its directions
            stored = ([d.name.lower() for d in storage.get_study_directions(study_id)]
                      if n_trials else [d.lower() for d in directions])
        else:
            study = optuna.create_study(
                storage=storage, study_name=name, load_if_exists=True, directions=directions,
                sampler=_make_sampler(sampler, _sampler_seed(seed, n_trials)))
            stored = [d.name.lower() for d in study.directions]
            if stored != [d.lower() for d in directions] and n_trials == 0:
                # never searched (its first run stopped before any trial): made again with the
                # objectives our study took (Store.get_or_create_study), as nothing is lost
                optuna.delete_study(study_name=name, storage=storage)
                study = optuna.create_study(
                    storage=storage, study_name=name, directions=directions,
                    sampler=_make_sampler(sampler, _sampler_seed(seed, 0)))
                stored = [d.name.lower() for d in study.directions]
    except Exception as e:  # noqa: BLE001 - any failure here is the database's, said in one line
        if is_connection_lost(e):  # waited for already: the server did not come back
            text = " ".join(str(_driver_error(e)).split())
            raise StorageError(f"lost the database {mask_url(url)} (no answer for "
                               f"{outage_s():g} s: {text}) while opening Optuna's study "
                               f"'{name}'; no trial of this run started: re-run the same "
                               f"command once the database answers") from e
        # Optuna's StorageInternalError guesses ("invalid data"): the driver's words instead
        cause = _driver_error(e) if type(e).__name__ == "StorageInternalError" else e
        lines = [ln for ln in str(cause).strip().splitlines() if ln.strip()]
        raise StorageError(f"Optuna's tables in {mask_url(url)} cannot be used for study "
                           f"'{name}': {type(cause).__name__}: {lines[0] if lines else ''}"
                           ) from e
    if stored != [d.lower() for d in directions]:
        raise StorageError(f"Optuna's study '{name}' in {mask_url(url)} has directions "
                           f"{stored}, not {[d.lower() for d in directions]}; use another --study")
    return study, storage


def _rdb_storage(url: str, tries: int = 5):
    """Optuna's RDBStorage; two processes creating Optuna's tables in a new database at once
    race on its schema version row (IntegrityError, or SQLite's lock): the loser tries again.
    A lost connection (a server restarting since the Store reached it) is waited for, up to
    ``$NAS_DB_OUTAGE_S`` on the database's outage clock, as every later storage call is."""
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import IntegrityError, OperationalError

    from db import call_retrying, is_connection_lost, optuna_storage

    lost = (OperationalError, StorageInternalError)  # (its version check wraps the driver's)
    for attempt in range(tries):
        try:  # (its calls are pre-pinged and retried as db.Store's; its making is not)
            return call_retrying(lambda: optuna_storage(url), lost, patient=True, key=url)
        except (IntegrityError, *lost) as e:
            if attempt == tries - 1 or is_connection_lost(e):
                raise
            time.sleep(0.2 * (attempt + 1))


def _done(completed, objectives) -> dict[str, list[float]]:
    """Arch hash -> objective values of the completed trials that have every objective (what
    Optuna is told for a duplicate, or a stale trial, of that architecture)."""
    known = {t.arch_hash: [o.of(t) for o in objectives] for t in completed}
    return {h: v for h, v in known.items() if None not in v}


def _closed_rows(store, study_id: int) -> dict[int, Any]:
    """Optuna trial number -> our row that was finished PRUNED, FAIL or INTERRUPTED for it (the
    recorder keeps the number in ``metrics["optuna_trial"]``)."""
    rows = store.trials(study_id, states=["PRUNED", "FAIL", "INTERRUPTED"])
    return {t.metrics["optuna_trial"]: t for t in rows
            if isinstance(t.metrics.get("optuna_trial"), int)}


def _retries(store, study_id: int) -> list[tuple[str, dict]]:
    """(hash, params) of interrupted architectures that never completed nor failed since."""
    trials = store.trials(study_id)
    settled = {t.arch_hash for t in trials if t.state == "COMPLETE"
               or (t.state == "FAIL" and not t.metrics.get("screened_out"))}
    retry: dict[str, dict] = {}
    for t in trials:
        if t.state == "INTERRUPTED" and t.arch_hash not in settled and t.params:
            retry.setdefault(t.arch_hash, t.params)
    return list(retry.items())


def _study_objectives(store, name: str, wanted: str | None) -> tuple[Objective, ...]:
    """``wanted`` if given, else the objectives stored with the study, else the defaults."""
    if wanted is not None:
        return parse_search_objectives(wanted)
    try:
        stored = store.get_study(name).objectives
    except StorageError:  # no such study yet
        return DEFAULT_OBJECTIVES
    try:
        return parse_search_objectives(stored)
    except ConfigError as e:  # a study made before the test split was refused as an objective
        raise ConfigError(f"study '{name}' was created with objectives {', '.join(stored)}: "
                          f"{str(e).removeprefix('--objectives: ')}; start a new --study"
                          ) from None


def _versions() -> dict[str, str]:
    import optuna
    import ray
    import timm
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "timm": timm.__version__, "optuna": optuna.__version__, "ray": ray.__version__}


def _check_budget(cfg: SearchConfig, space: Space) -> None:
    """Refuse a --budget the space (or its constraints) cannot fill, and constraints that admit
    nothing: one line, exit 2, before a study exists rather than after PROPOSALS_PER_SLOT
    skipped proposals recorded in it."""
    if cfg.budget > space.size():
        raise ConfigError(f"--budget {cfg.budget} exceeds the {space.size():,} configurations "
                          f"of space '{space.name}' (before its constraints); lower --budget or "
                          "give the space more choices")
    # counted where the space is small (about 1 s at most), else judged on 1,000 seeded draws
    # and a local search (about 0.2 s on hybrid_conv_attn when nothing is feasible)
    feasible = space.feasible_size()
    if feasible is None:
        space.sample_random(cfg.seed)  # SpaceError naming what each constraint rejected
    elif feasible == 0:
        raise SpaceError(f"{space.source}: constraints: none of the {space.size():,} "
                         "configurations meets them; loosen the constraints (`python -m nas "
                         "spaces show SPACE` gives its cost ranges)")
    elif cfg.budget > feasible:
        which = ("the one distinct architecture", "meets") if feasible == 1 else \
            (f"the {feasible:,} distinct architectures", "meet")
        raise ConfigError(f"--budget {cfg.budget} exceeds {which[0]} of space '{space.name}' "
                          f"that {which[1]} its constraints ({space.size():,} configurations "
                          "before them); lower --budget or loosen the constraints")
    _check_prescreen(cfg, space, feasible)


def _check_prescreen(cfg: SearchConfig, space: Space, feasible: int | None) -> None:
    """Refuse a --prescreen K that the space cannot fill: a slot would go on drawing
    candidates that do not exist, recording each attempt (``feasible``: as
    :meth:`Space.feasible_size` counts them)."""
    k = parse_prescreen(cfg.prescreen)[1] if cfg.prescreen else 0
    if feasible is not None and k > feasible:
        raise ConfigError(f"--prescreen {cfg.prescreen}: K={k:,} exceeds the {feasible:,} "
                          f"distinct architectures of space '{space.name}'"
                          + (" that meet its constraints" if space.constraints.names else "")
                          + f"; give K <= {feasible:,} (candidates screened per trial)")
    if k > space.size():
        raise ConfigError(f"--prescreen {cfg.prescreen}: K={k:,} exceeds the "
                          f"{space.size():,} configurations of space '{space.name}' (before "
                          f"its constraints); give K <= {space.size():,} (candidates screened "
                          "per trial)")


def run_search(cfg: SearchConfig, *, log: Callable[[str], None] = print) -> SearchSummary:
    """Run (or continue) a study until it holds ``cfg.budget`` completed trials."""
    from db import resume_waits

    resume_waits()  # a stop signal of an earlier run of this process gave waiting up
    try:
        return _run_search(cfg, log)
    finally:
        resume_waits()  # (after the run's close-out, which a stop signal keeps from waiting)


def _run_search(cfg: SearchConfig, log: Callable[[str], None]) -> SearchSummary:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our progress lines replace Tune's tables
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # per-epoch results carry no objectives yet; the final result of each trial does
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    if cfg.ray_address:
        _cluster_auth_env()
    import optuna
    import ray

    from db import Store, default_url, mask_url
    from nas._interrupt import (
        ClusterLostGuard,
        RayLostGuard,
        StopRequest,
        catch_stop_signals,
        ray_outside_our_group,
        reinstall,
    )
    from nas._reaper import start_reaper, stop_reaper
    from nas._run import lease_timing, run_lease
    from nas._searcher import close_stale_trials, enqueue_retries
    from nas.models import from_dict
    from proxies import dataset_kinds, default_cache_dir, prepare_dataset
    from search_spaces import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t_start = time.perf_counter()
    check_settings(cfg)
    _make_sampler(cfg.sampler, cfg.seed)  # validates the name before anything starts
    zero_cost = parse_zero_cost(cfg.zero_cost)
    prescreen = parse_prescreen(cfg.prescreen)
    space = load_space(cfg.space)
    lease_timing()  # a bad $NAS_LEASE_STALE_S is refused before the study is created
    _check_outage_env()  # and a bad $NAS_DB_OUTAGE_S
    if cfg.ray_address and cfg.executor != "local" and not ray.is_initialized():
        _probe_head(cfg.ray_address)  # likewise an address where no Ray head answers
    if cfg.study is None:  # the space's name is the study's: say so if it cannot be one
        try:
            check_study_name(space.name)
        except ConfigError:
            raise ConfigError(f"the study is named after the space, and space name "
                              f"{space.name!r} is not a valid study name; pass --study NAME "
                              f"(must be {STUDY_NAME_RULE})") from None
    study_name = check_study_name(cfg.study or space.name)
    runs = Path(cfg.runs_dir).resolve()
    url = cfg.db_url or default_url(runs, create=False)  # (the folder is made once all is checked)
    _refuse_memory_database(url)
    # typed (not taken from the study's runs), the budget is judged before a database opens,
    # so of a bad --budget and an unreachable database the cheaper mistake is named first
    budget_checked = not {"budget", "seed"} & set(cfg.inherit)
    if budget_checked:
        _check_budget(cfg, space)
    store, taken, typed_prescreen = None, (), cfg.prescreen
    if cfg.inherit and may_hold_studies(url):  # a resume takes what it is not told
        store = Store(url, decode_arch=from_dict)  # reachable, and its schema current
        cfg, taken = inherit_settings(cfg, store, study_name, space.hashes)
        if taken:  # (said once the run holds the study: a refused run continues nothing)
            _make_sampler(cfg.sampler, cfg.seed)
            zero_cost = parse_zero_cost(cfg.zero_cost)
            prescreen = parse_prescreen(cfg.prescreen)
    check_settings(cfg, resolved=True)  # (what depends on what the study decided, too)
    _check_placement_here(cfg)  # (a study whose budget is met would say "nothing to run")
    if not budget_checked:
        _check_budget(cfg, space)
    elif cfg.prescreen != typed_prescreen:  # taken from the study's runs
        _check_prescreen(cfg, space, space.feasible_size())
    if cfg.dataset not in dataset_kinds():  # before the database is created for nothing
        from proxies.registry import get_builder

        get_builder(cfg.dataset)  # DatasetError listing the known names
    # the dataset before the database: bad input there (a missing --data-path, a corrupt file)
    # is refused without creating a database for nothing
    dataset = prepare_dataset(cfg.dataset, default_cache_dir(runs / "cache"),
                              resolution=space.proxy_spec.resolution, data_path=cfg.data_path)
    if cfg.batch_size > dataset.num_train:
        raise ConfigError(f"--batch-size {cfg.batch_size} exceeds the {dataset.num_train} "
                          f"training images of dataset {dataset.name!r}")
    if store is None:
        url = cfg.db_url or default_url(runs)
        store = Store(url, decode_arch=from_dict)  # reachable, and its schema current
    masked = mask_url(url)
    objectives = _study_objectives(store, study_name, cfg.objectives)
    # every trial records its --zero-cost scores, those objectives name, and the pre-screen's
    zero_cost = zero_cost_implied([*zero_cost, *prescreen[:1]]
                                  if prescreen and prescreen[0] != SURROGATE else zero_cost,
                                  objectives)
    resolved = {**{k: v for k, v in dataclasses.asdict(cfg).items() if k != "inherit"},
                "db_url": masked, "study": study_name,
                # absolute, so a study continued from another folder finds its input again
                "data_path": (str(Path(cfg.data_path).expanduser().resolve())
                              if cfg.data_path else None),
                "space_source": space.source, "proxy": {
                    **dataclasses.asdict(space.proxy_spec),
                    # where widths may shrink, a step down stays one in the proxy (before
                    # 88afa66 it was raised): recorded, so a study from then is a change
                    **({} if space.constraints.nondecreasing_widths
                       else {"widths": "each step the way the full widths go"})},
                "dataset_fingerprint": dataset.fingerprint,
                "dataset_resolution": dataset.resolution, "dataset_hash": dataset.data_hash,
                "dataset_sizes": [dataset.num_train, dataset.num_val, dataset.num_test],
                "objectives": list(objective_names(objectives)),
                "zero_cost_computed": list(zero_cost),
                "prescreen_resolved": ({"proxy": prescreen[0], "k": prescreen[1],
                                        "batch_size": cfg.batch_size, "seed": cfg.seed,
                                        "optuna_state": "PRUNED", "our_state": "FAIL"}
                                       if prescreen else None),
                "versions": _versions()}
    study = store.get_or_create_study(study_name, space=space.name, space_hash=space.hash,
                                      former_hashes=space.hashes[1:],
                                      objectives=objective_names(objectives),
                                      config=resolved)
    changes = check_resume(study_name, study.config, resolved, cfg.allow_change,
                           inherits=bool(cfg.inherit))
    if changes:
        log(f"warning: --allow-change: study '{study_name}' now mixes trials measured with "
            f"other settings ({'; '.join(changes)})")
    # a run starting at the same moment may have given the still empty study its own space,
    # objectives or settings since: then Optuna's study is that run's to touch, not this one's
    # (the lease checks it again, atomically)
    store.check_study_as(study)
    # refused here, before the lease, if Optuna's study was searched for other directions or
    # its tables are damaged; made (or made again, if never searched) only under the lease
    _, checked = _optuna_study(url, study_name, cfg.sampler, cfg.seed, objectives,
                               check_only=True)
    checked.engine.dispose()
    request = StopRequest()
    # the study's lease: a second run of it is refused here, before it touches any trial
    with run_lease(store, study.id, resolved, resolved["versions"],
                   on_lost=request.taken_over, study_as=study) as run:
        ot_study, ot_storage = _optuna_study(url, study_name, cfg.sampler, cfg.seed, objectives)
        if taken:
            log(f"study '{study_name}' continues with its earlier runs' settings: "
                f"{' '.join(taken)} (options given on the command line replace them)")
        killed = "interrupted: still RUNNING when a new run of this study started (the " \
                 "previous run was killed)"
        marked = store.interrupt_running(study.id, killed)
        completed = store.trials(study.id, states=["COMPLETE"])
        close_stale_trials(ot_study, ot_storage, space, store, study.id,
                           {t.arch_hash for t in marked}, killed, run.id,
                           done=_done(completed, objectives),
                           closed=_closed_rows(store, study.id))
        retries = _retries(store, study.id)
        enqueue_retries(ot_study, retries)  # asked before any new proposal
        used = _budget_used(store, study.id, cfg)
        if used >= cfg.budget:
            log(f"study '{study_name}' already has {used} {_BUDGET_UNIT[cfg.scheduler]} trials "
                f"(budget {cfg.budget}); nothing to run")
            run.outcome = "completed"
            return SearchSummary(study_name, store.url, len(completed), 0, 0, 0,
                                 time.perf_counter() - t_start, objectives, evaluated=used,
                                 config=cfg)
        earlier = _exhausted_before(store, study.id, run.id, resolved)
        if earlier is not None and not retries:  # (a retry would still train)
            # asking the sampler again would only add skipped proposals to the study
            log(f"study '{study_name}': its run {earlier} already found no new feasible "
                f"configuration with --sampler {cfg.sampler} --seed {cfg.seed}; "
                "not asking the sampler again (another --sampler or --seed would)")
            run.outcome, run.message = "failed", EXHAUSTED_MESSAGE
            return SearchSummary(study_name, store.url, len(completed), 0, 0, 0,
                                 time.perf_counter() - t_start, objectives, evaluated=used,
                                 exhausted=True, config=cfg)
        if prescreen and prescreen[0] == SURROGATE:  # learns from this study's results
            from nas._surrogate import SurrogateScreen

            screen = SurrogateScreen(objectives, cfg.seed, space=space)
            screen.observe_all((t.arch, [o.of(t) for o in objectives]) for t in completed)
        else:
            screen = (_prescreen_fn(dataset, cfg.batch_size, cfg.seed, prescreen[0], space,
                                    dataset.num_classes) if prescreen else None)

        searcher, recorder = None, None
        started_ray, reaper, guard, error, interrupted = False, None, None, None, 0

        def close_lost() -> str:  # RayLostGuard: a stop signal also ended our Ray
            n = _close_running(store, study.id, searcher, recorder, request, None, run.id)
            store.end_run(run.id, "interrupted", request.reason)
            return _interrupted_line(request, store.count(study.id, "COMPLETE"), n)

        def close_cluster_lost() -> str:  # ClusterLostGuard: the joined cluster went away
            what = f"the Ray cluster at --ray-address {cfg.ray_address} stopped answering"
            n = _close_running(store, study.id, searcher, recorder, request,
                               RuntimeError(what), run.id)
            store.end_run(run.id, "failed", what)
            return (f"error: {what}: {store.count(study.id, 'COMPLETE')} completed trials "
                    f"kept, {n} running trials marked INTERRUPTED; restart the cluster and "
                    "re-run the same command to resume")

        with catch_stop_signals(request):  # Ctrl-C / SIGTERM: stop the trials, keep the record
            try:
                if cfg.executor == "local":
                    pass  # no Ray: the trials run in this process
                elif not ray.is_initialized() and cfg.ray_address:
                    _join_cluster(cfg.ray_address)
                    reinstall(request)
                    started_ray = True  # connected: disconnect at the end, never reap a cluster
                    head = _gcs_endpoint()
                    if head is not None:  # Ray would wait a minute, then end us its own way
                        guard = ClusterLostGuard(head, close_cluster_lost,
                                                 _EXIT_FAILED).start()
                elif not ray.is_initialized():
                    with ray_outside_our_group():  # a SIGTERM to our group: the driver's
                        ray_ctx = ray.init(include_dashboard=False, logging_level=logging.ERROR,
                                           log_to_driver=False, configure_logging=True)
                    started_ray = True
                    reinstall(request)  # ray.init replaced our SIGTERM handler
                    # ends this session's processes when the driver ends, even by kill -9
                    reaper = start_reaper(ray_ctx.address_info["session_dir"])
                    guard = RayLostGuard(request, _ray_children, close_lost).start()
                searcher, recorder, run_trials = _build_tuner(
                    cfg, space, dataset, store, study, ot_study, completed, objectives,
                    zero_cost, prescreen, screen, runs, request, log, masked, run.id,
                    run.fence)
                if not request.requested:  # a signal during start-up: nothing was started
                    with _quiet_tune():
                        run_trials()
            except KeyboardInterrupt as e:  # a second signal forces the stop: close the trials
                if not request.requested:
                    error = e
                    e.after_start = True  # (cli.main: trials may have finished)
                    raise
            except BaseException as e:
                if not request.requested:
                    error = e
                    with contextlib.suppress(AttributeError):  # (an exception without a
                        e.after_start = True  # __dict__) an OSError here is no bad input
                    raise
                # stopping: Ray may fail under Tune (a SIGTERM to every process ends it too);
                # the run is still an interrupted one, closed below
                text = [ln for ln in str(e).splitlines() if ln.strip()]
                log(f"while stopping: {type(e).__name__}: {text[0] if text else ''}"[:300])
            finally:
                with guard.lock if guard is not None else contextlib.nullcontext():
                    try:
                        interrupted = _close_running(store, study.id, searcher, recorder,
                                                     request, error, run.id)
                        # recorded now: Ray's own exit may still end us
                        if request.requested and request.database is None:
                            with contextlib.suppress(Exception):  # run_lease ends it otherwise
                                store.end_run(run.id, "interrupted", request.reason)
                    finally:
                        if guard is not None:
                            guard.closed = True
                if started_ray and not (guard is not None and guard.ray_gone()):
                    ray.shutdown()  # (with Ray's processes gone it could hang: the reaper ends
                    #                the rest when this process exits)
                stop_reaper(reaper)
        if request.database is not None:  # nothing more can be read or written here
            raise _lost_database(request, cfg, store, study_name, objectives, searcher,
                                 recorder, run, time.perf_counter() - t_start)
        total = store.count(study.id, "COMPLETE")
        used = _budget_used(store, study.id, cfg)
        if not request.requested and error is None and interrupted == 0:
            # nothing left to resume: what stopped trials left behind goes too
            from nas._checkpoints import checkpoint_dir

            shutil.rmtree(checkpoint_dir(runs, masked, study_name), ignore_errors=True)
        summary = SearchSummary(study_name, store.url, total, _n(searcher, "failed"),
                                _n(searcher, "duplicates"), _n(searcher, "infeasible"),
                                time.perf_counter() - t_start, objectives,
                                _n(searcher, "screened"), interrupted, _n(searcher, "pruned"),
                                evaluated=used, nodes=tuple(sorted(
                                    recorder.nodes.items())) if recorder is not None else (),
                                exhausted=bool(getattr(searcher, "exhausted", False)),
                                config=cfg, reused=_n(searcher, "reused"))
        run.outcome = "completed" if used >= cfg.budget else "failed"
        if summary.exhausted and used < cfg.budget:  # a rerun with these settings is refused
            run.message = EXHAUSTED_MESSAGE
        if request.requested:
            run.outcome, run.message = "interrupted", request.reason
            raise SearchInterrupted(_interrupted_line(request, total, interrupted), summary,
                                    request.exit_code)
        return summary


def _lost_database(request, cfg: SearchConfig, store, study_name: str, objectives, searcher,
                   recorder, run, seconds: float) -> SearchInterrupted:
    """The stop of a run whose database is out of reach: exit 1 and one line that says what
    was recorded (counted here, in memory: the database cannot be asked) and how to resume."""
    from db import mask_url

    written = recorder.written if recorder is not None else 0
    open_now = len(recorder.ids) - written if recorder is not None else 0  # rows started
    written += _n(searcher, "reused")  # rows the searcher wrote with a twin's result
    url = mask_url(store.url)
    what = (f"the database {url} refused a write ({request.database})"
            if request.database_refused else f"lost the database {url} ({request.database})")
    run.outcome, run.message = "failed", what[:1000]  # stored if it answers again in time
    summary = SearchSummary(study_name, store.url, 0, _n(searcher, "failed"),
                            _n(searcher, "duplicates"), _n(searcher, "infeasible"), seconds,
                            objectives, _n(searcher, "screened"), 0, _n(searcher, "pruned"),
                            config=cfg)
    head = "error: " if request.database_stop else f"interrupted ({request.short}): "
    if request.database_gone == "tables":
        return SearchInterrupted(
            f"{head}{what}; the search stopped ({written} trial(s) of this run had been "
            "recorded in it): what was dropped took its results with it; once the database "
            "is restored from a backup, re-run the same command to resume",
            summary, request.exit_code)
    if request.database_gone:
        return SearchInterrupted(
            f"{head}{what}; the search stopped ({written} trial(s) of this run were recorded "
            "in that file): if it was moved, put it back and re-run the same command to "
            "resume; a deleted file took its results with it",
            summary, request.exit_code)
    left = (f", {open_now} left RUNNING (the next run of this study closes them as INTERRUPTED "
            "and trains them again)") if open_now else ""
    when = ("it takes writes again (free disk space, or make it writable)"
            if request.database_refused else "the database answers")
    return SearchInterrupted(
        f"{head}{what}; the search stopped: {written} trial(s) of this run recorded before "
        f"it{left}; re-run the same command once {when}, to resume",
        summary, request.exit_code)


def _interrupted_line(request, completed: int, interrupted: int) -> str:
    return (f"interrupted ({request.short}): {completed} completed trials kept, {interrupted} "
            f"running trials marked INTERRUPTED; re-run the same command to resume")


@contextlib.contextmanager
def _quiet_tune() -> Iterator[None]:
    """A failed trial is one line from our recorder, its traceback in a log file: Tune's
    traceback per failure and its final "Trials did not complete: [...]" are off, for this run.
    """
    logger = logging.getLogger("ray.tune.tune")
    level, env = logger.level, os.environ.get("TUNE_PRINT_ALL_TRIAL_ERRORS")
    logger.setLevel(logging.CRITICAL)
    if env is None:  # a user's explicit setting wins
        os.environ["TUNE_PRINT_ALL_TRIAL_ERRORS"] = "0"
    try:
        yield
    finally:
        logger.setLevel(level)
        if env is None:
            os.environ.pop("TUNE_PRINT_ALL_TRIAL_ERRORS", None)


def _cluster_auth_env() -> None:
    """Authenticate to a cluster as ``ray start`` does: with the token when one exists. Must run
    before Ray is imported (Ray reads its configuration once)."""
    token = Path.home() / ".ray" / "auth_token"
    if "RAY_AUTH_MODE" not in os.environ and (os.environ.get("RAY_AUTH_TOKEN") or
                                              os.environ.get("RAY_AUTH_TOKEN_PATH") or
                                              token.exists()):
        os.environ["RAY_AUTH_MODE"] = "token"


def _refuse_memory_database(url: str) -> None:
    """ConfigError for an in-memory SQLite URL: each connection would see its own empty
    database, and every result would be gone when the run ends."""
    from db import is_memory_sqlite, mask_url

    if is_memory_sqlite(url):
        raise ConfigError(f"--db {mask_url(url)} is an in-memory SQLite database: every result "
                          "would be lost when the run ends; give a file "
                          "(sqlite:///path/nas.db) or a server URL")


def _probe_head(address: str) -> None:
    """ConfigError (one line) unless a Ray head may answer at ``address``: a TCP connection, a
    gRPC opening (:func:`_grpc_answer`) and one call to its GCS (:func:`_gcs_answer`).
    ``ray.init`` retries an address where nothing, or
    something other than a Ray head, answers for minutes, logging as it goes, and does not
    return on Ctrl-C; so this runs before the study is created or anything recorded."""
    import socket

    endpoint = ray_endpoint(address)
    if endpoint is None:  # "auto": where `ray start` on this machine (or $RAY_ADDRESS) points
        endpoint = _auto_endpoint()
    if endpoint is not None:
        where = f"{endpoint[0]} port {endpoint[1]}"
        try:
            with socket.create_connection(endpoint, timeout=CONNECT_TIMEOUT_S) as conn:
                answer = _grpc_answer(conn)
            answer = f"no gRPC reply: {answer}" if answer is not None else None
        except OSError as e:
            why = e.strerror or str(e) or type(e).__name__
            raise ConfigError(f"cannot join the Ray cluster at --ray-address {address}: nothing "
                              f"answers at {where} ({why}); start it "
                              f"with `ray start --head --port {endpoint[1]}` or check the "
                              f"address") from e
        if answer is None and not address.startswith("ray://"):  # Ray Client serves no GCS
            answer = _gcs_answer(endpoint, address)
        if answer is not None:
            raise ConfigError(f"cannot join the Ray cluster at --ray-address {address}: "
                              f"{where} answers, but not as a Ray head ({answer}); give the "
                              f"head's port (`ray status` on it)")


def _auto_endpoint() -> tuple[str, int] | None:
    """(host, port) of the cluster ``--ray-address auto`` would join, found as ``ray.init`` finds
    it ($RAY_ADDRESS, the last ``ray start`` on this machine, a running GCS process); a
    ConfigError when there is none, which ``ray.init`` would say only after the study had been
    created. None when Ray's lookup is not where this Ray version keeps it (ray.init decides)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address_or_die
    except ImportError:
        return None
    try:
        found = canonicalize_bootstrap_address_or_die("auto")
    except (ConnectionError, ValueError) as e:
        said = " ".join(str(e).split()).split(". ")[0]
        raise ConfigError(f"cannot join the Ray cluster at --ray-address auto: {said} on this "
                          "machine ($RAY_ADDRESS unset, no `ray start` recorded, no Ray GCS "
                          "process); start one with `ray start --head`, or give its "
                          "HOST:PORT") from None
    try:
        return ray_endpoint(found)
    except ConfigError:
        return None


_EXIT_FAILED = 1  # nas.cli.EXIT_FAILED: the run itself failed


def _gcs_endpoint() -> tuple[str, int] | None:
    """(host, port) of the joined cluster's head (its GCS); None for Ray Client (ray://), whose
    driver runs on the cluster, or when Ray does not say."""
    import ray

    try:
        address = ray.get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001 - Ray Client has no GCS address here
        return None
    try:
        return ray_endpoint(address)  # None for "auto", which Ray never reports here
    except ConfigError:  # not HOST:PORT (None, or something Ray may report one day)
        return None


def _join_cluster(address: str) -> None:
    """``ray.init(address=...)``, as ``ray start`` would authenticate; one line if it fails.
    The caller probed the head first (:func:`_probe_head`)."""
    import ray

    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False,
                 configure_logging=True)
    except Exception as e:  # noqa: BLE001 - Ray's errors are pages long; say it in one line
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise ConfigError(f"cannot join the Ray cluster at --ray-address {address}: "
                          f"{(lines[-1] if lines else type(e).__name__)[:300]}") from e


#: an HTTP/2 client's opening (the preface, then an empty SETTINGS frame), which gRPC speaks
_H2_OPENING = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _grpc_answer(conn) -> str | None:
    """None if the server on ``conn`` answers an HTTP/2 opening with a SETTINGS frame, as a
    Ray head's gRPC server does; else what it answered, for the error. ``ray.init`` would wait
    minutes on a server of another kind. Not checked (None) under TLS (``RAY_USE_TLS``)."""
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return None
    conn.sendall(_H2_OPENING)
    data = b""
    try:
        while len(data) < 9:
            chunk = conn.recv(9 - len(data))
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        return "nothing within the timeout" if not data else repr(data)
    if len(data) == 9 and data[3] == 4:  # an HTTP/2 frame of type SETTINGS
        return None
    return repr(data) if data else "it closed the connection"


def _gcs_answer(endpoint: tuple[str, int], address: str) -> str | None:
    """None if a Ray head's GCS answers one real call at ``endpoint`` (its cluster id, what
    ``ray.init`` asks first, through Ray's own client with its TLS and token settings) or if
    that cannot be told; else why not, for the error. A gRPC server of another kind passes
    :func:`_grpc_answer` and fails here with Ray's ``RpcError`` (UNIMPLEMENTED, or no answer
    within :data:`GCS_CALL_TIMEOUT_S`). A head that refuses our token is a ConfigError of its
    own (``ray.init`` would log a line a second for 20 s, then say only that it could not
    connect). Any other failure of Ray's private client is left to ``ray.init``."""
    try:
        from ray._raylet import InnerGcsClient
        from ray.exceptions import RpcError
    except ImportError:  # Ray moved its private API: the gRPC opening check stands alone
        return None
    import ray.exceptions

    refused_token = getattr(ray.exceptions, "AuthenticationError", ())  # () catches nothing
    host, port = endpoint
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        with _stderr_silenced():  # Ray's C++ client logs its failure there; our line says it
            InnerGcsClient.standalone(target, None, int(GCS_CALL_TIMEOUT_S * 1000))
    except refused_token as e:
        raise _token_refused(address) from e
    except RpcError as e:
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        return f"no answer to Ray's GCS call: {' '.join(first.split())[:160]}"
    except Exception as e:  # noqa: BLE001 - not an answer from the server: cannot tell
        logging.getLogger(__name__).debug("GCS probe of %s inconclusive: %r", target, e)
        return None
    return None


def _token_refused(address: str) -> ConfigError:
    return ConfigError(
        f"cannot join the Ray cluster at --ray-address {address}: its head refused this "
        "machine's authentication token (token authentication is on there); give it the "
        "cluster's token as `ray start --address` needs it: $RAY_AUTH_TOKEN, "
        "$RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token")


@contextlib.contextmanager
def _stderr_silenced():
    """File descriptor 2 on /dev/null for the block (what C++ code writes there too); left
    as it is when it cannot be redirected (closed, say)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _machine_resources() -> dict[str, float]:
    import torch

    return {"CPU": float(os.cpu_count() or 1),
            "GPU": float(torch.cuda.device_count()) if torch.cuda.is_available() else 0.0}


def _local_placement(cfg: SearchConfig) -> tuple[dict[str, float], int, str]:
    """``--executor local``: one trial at a time, with all of this machine's cores."""
    resources = _machine_resources()
    return placement(resources, cfg.cpus_per_trial or resources["CPU"],
                     cfg.gpus_per_trial or 0.0, 1, what="this machine")


def _check_placement_here(cfg: SearchConfig) -> None:
    """Refuse CPUs or GPUs per trial this machine does not have, before anything opens; a
    joined cluster's (``--ray-address``) are known once joined."""
    if cfg.executor == "local":
        _local_placement(cfg)
    elif not cfg.ray_address:  # (Ray's own count, checked again once it runs, may be lower)
        placement(_machine_resources(), cfg.cpus_per_trial, cfg.gpus_per_trial,
                  cfg.max_concurrent, what="this machine")


def placement(resources: dict, cpus_per_trial: float | None, gpus_per_trial: float | None,
              max_concurrent: int | None,
              what: str = "the Ray cluster") -> tuple[dict[str, float], int, str]:
    """Ray resources per trial, trials at once, and a description, for a cluster's resources.

    Default: one GPU per trial (and the CPUs shared out per GPU) when the cluster has GPUs, else
    one CPU per trial. A fraction of a GPU (``0.5``) runs two trials on each GPU.
    """
    import math

    cpus, gpus = float(resources.get("CPU", 1)), float(resources.get("GPU", 0))
    gpu = (1.0 if gpus else 0.0) if gpus_per_trial is None else float(gpus_per_trial)
    if gpu > gpus:
        allowed = "0 or a fraction up to the GPU count" if gpus else \
            "0, or leave it out: trials then train on CPU"
        raise ConfigError(f"--gpus-per-trial {gpu:g} but {what} has {gpus:g} GPU(s); "
                          f"allowed: {allowed}")
    cpu = float(cpus_per_trial) if cpus_per_trial is not None else (
        max(1.0, math.floor(cpus / math.ceil(gpus / gpu))) if gpu else 1.0)
    if cpu > cpus:
        raise ConfigError(f"--cpus-per-trial {cpu:g} but {what} has {cpus:g} CPU(s)")
    slots = math.floor(min(cpus / cpu, gpus / gpu if gpu else math.inf) + 1e-9)
    slots = max(1, min(slots, max_concurrent or slots))
    where = f"{cpu:g} CPU" + (f" + {gpu:g} GPU" if gpu else "")
    return {"cpu": cpu, "gpu": gpu}, slots, where


def placement_hint(gpus_per_trial: float | None, per_trial: dict[str, float]) -> str | None:
    """A line for a search that took the default of one whole GPU per trial, else None."""
    if gpus_per_trial is not None or per_trial.get("gpu", 0.0) < 1.0:
        return None
    return ("hint: a whole GPU per trial (the default) leaves it mostly idle with proxies this "
            "small; on one H200 with 16 CPU cores, --gpus-per-trial 0.0625 (16 trials on it at "
            "once) completed 9x as many trials per second (README, 'GPUs and clusters')")


#: what --budget counts, per scheduler: with ASHA a pruned trial is an evaluated one (as Optuna's
#: n_trials and Tune's num_samples count them), so early stopping saves compute
_BUDGET_UNIT = {"fifo": "completed", "asha": "evaluated (completed or pruned)"}


EXHAUSTED_MESSAGE = "exhausted: the sampler proposed no new feasible configuration"


def _exhausted_before(store, study_id: int, run_id: int, resolved: Mapping[str, Any]
                      ) -> int | None:
    """The id of the study's previous run if it ended with the space exhausted for the same
    sampler and seed as ``resolved`` (a study keeps its space, and trials are only added by
    runs, so the sampler would see what it saw then); else None."""
    ended = [r for r in store.runs(study_id) if r.id != run_id and r.outcome != "running"]
    last = next((r for r in reversed(ended) if r.outcome != "abandoned"), None)
    if last is None or last.outcome != "failed" or last.message != EXHAUSTED_MESSAGE:
        return None
    same = all(last.config.get(key) == resolved.get(key)
               for key in ("sampler", "seed"))
    return last.id if same else None


def _budget_used(store, study_id: int, cfg: SearchConfig) -> int:
    """Trials of the study that count against --budget."""
    n = store.count(study_id, "COMPLETE")
    return n + store.count(study_id, "PRUNED") if cfg.scheduler == "asha" else n


def _n(searcher, what: str) -> int:
    return 0 if searcher is None else getattr(searcher, what)


def _close_running(store, study_id: int, searcher, recorder, request, error,
                   run_id: int | None = None) -> int:
    """Close the trials a stop left running, in both tables; returns how many were marked.

    Only this run's (``run_id``) and only those still open: after a takeover the new run closed
    the ones that were open when it started, and this run closes those it opened later (a run
    frozen between its lease check and Optuna's ``ask``). Best effort when the run is already
    failing: the original error is the one to report.
    """
    if request.database is not None:
        return 0  # nothing can be written: the next run closes both tables' open trials
    if request.requested:
        reason = request.reason
    elif error is not None:
        last = [ln for ln in str(error).splitlines() if ln.strip()]
        reason = f"interrupted: the run stopped on {type(error).__name__}" + \
            (f" ({last[-1].strip()})" if last else "")
        reason = reason[:500]
    else:
        reason = "interrupted: still RUNNING when the run ended"
    from db import stops_recording

    def failed(e: Exception) -> None:
        if stops_recording(e):  # (e.g. a Ctrl-C came first): the line says so, and nothing
            _database_lost(store, request, e)  # more is tried
        elif error is None and not request.requested:
            raise e

    n = 0
    try:  # Optuna's table, then ours: one failing does not keep the other from closing
        if searcher is not None:
            recorded = set(recorder.ids) if recorder is not None else set()
            n += searcher.interrupt(reason, recorded)
    except Exception as e:
        failed(e)
    if request.database is not None:
        return 0
    where = {} if recorder is None else {  # where each trial was running, if it had reported
        recorder.ids[t]: {"worker": w} for t, w in recorder.where.items() if t in recorder.ids}
    try:
        n += len(store.interrupt_running(study_id, reason, run_id=run_id, metrics=where))
    except Exception as e:
        failed(e)
    return 0 if request.database is not None else n


def _ray_children() -> list:
    """The driver's child processes (``ray.init`` starts the GCS and the raylet as such)."""
    import psutil

    return psutil.Process().children(recursive=True)


def _build_tuner(cfg: SearchConfig, space, dataset, store, study, ot_study, completed,
                 objectives, zero_cost, prescreen, screen, runs: Path, request, log,
                 masked_url: str, run_id: int, fence=None):
    """The searcher, the recorder and what runs the trials: a Tuner's ``fit`` (stopped by
    ``request``), or the in-process loop of ``--executor local``."""
    import ray
    from ray import tune

    from nas._checkpoints import checkpoint_dir
    from nas._interrupt import StopOnSignal
    from nas._progress import Progress
    from nas._recorder import Recorder
    from nas._scheduler import Fifo
    from nas._searcher import BudgetedSearcher
    from nas._trainable import TrialContext, trainable
    from nas._twins import reusable, twin_sources

    study_name = study.name
    if cfg.executor == "local":  # one trial at a time, with all of this machine's cores
        per_trial, slots, where = _local_placement(cfg)
        where += " in this process (--executor local)"
    else:
        per_trial, slots, where = placement(ray.cluster_resources(), cfg.cpus_per_trial,
                                            cfg.gpus_per_trial, cfg.max_concurrent)
    used = _budget_used(store, study.id, cfg)
    counted = f" ({used} evaluated: completed or pruned)" if cfg.scheduler == "asha" else ""
    log(f"study '{study_name}' in {masked_url}: {len(completed)} completed{counted}, "
        f"budget {cfg.budget}; space '{space.name}' ({space.size():,} configurations); "
        f"{slots} trial(s) at a time, each {where}; "
        f"dataset {dataset.name} at {dataset.resolution} px ({dataset.num_train} train / "
        f"{dataset.num_val} val / {dataset.num_test} test); proxy: {cfg.epochs} epoch(s) "
        f"x {cfg.repeats} repeat(s)")
    hint = placement_hint(cfg.gpus_per_trial, per_trial) if cfg.executor != "local" else None
    if hint:
        log(hint)
    twins = space.proxy_resolution(draws=500, pair_draws=40, seed=cfg.seed)  # 0.4 s on hca
    if twins.worth_a_note:
        for i, line in enumerate(twins.lines(limit=3)):
            log(("note: " if i == 0 else "      ") + line.strip())
    done = _done(completed, objectives)
    remaining = cfg.budget - used
    max_failures = cfg.max_failures if cfg.max_failures is not None else cfg.budget
    run_name = f"{study_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    scheduler, stopped, pruned_hashes = None, None, None
    lost_notes = Fifo()  # Tune's scheduler without --scheduler asha: notes lost workers
    if cfg.scheduler == "asha":
        pruned = store.trials(study.id, states=["PRUNED"])
        pruned_hashes = {t.arch_hash: t.number for t in pruned}
        from nas._scheduler import MultiObjectiveASHA, validation_points

        scheduler = MultiObjectiveASHA(objectives, cfg.epochs, cfg.asha_min_epochs, cfg.asha_eta,
                                       metric=cfg.asha_metric, late=cfg.asha_late_rung)
        stopped = scheduler.stopped
        lost_notes = scheduler
        log(f"scheduler: multi-objective ASHA, rungs at epoch(s) "
            f"{', '.join(map(epoch_text, scheduler.rungs))} of {cfg.epochs}, eta {cfg.asha_eta}, "
            f"ranked on {cfg.asha_metric.replace('_', ' ')} and "
            f"{', '.join(str(o) for o in scheduler.costs) or 'nothing else'}")
        earlier = scheduler.seed_rungs([*completed, *pruned])
        if earlier:
            log(f"scheduler: {earlier} rung value(s) of earlier runs' trials join the rungs")
    twins = None
    if not cfg.retrain_twins and reusable(objectives, cfg.scheduler):
        import torch

        # where the trials train: in this process, or on Ray workers with or without GPUs (a
        # worker given none sees none); a GPU trains in bf16, so its results are not the CPU's
        local_gpu = cfg.executor == "local" and torch.cuda.is_available()
        device = "cuda" if local_gpu or (cfg.executor != "local" and per_trial.get(
            "gpu", 0.0) > 0) else "cpu"
        runs_config = {r.id: r.config for r in store.runs(study.id)}
        twins = twin_sources(completed, runs_config, runs_config.get(run_id, {}), zero_cost,
                             device)

    def db_lost(error: BaseException) -> None:  # the searcher's and the recorder's
        _database_lost(store, request, error)

    searcher = BudgetedSearcher(space, ot_study, objectives, store, study.id, run_name,
                                remaining, done, remaining + max_failures,
                                dataset.num_classes, screen=screen,
                                screen_k=prescreen[1] if prescreen else 1,
                                screen_name=prescreen[0] if prescreen else "",
                                run_id=run_id, fence=fence, stopped=stopped,
                                count_pruned=cfg.scheduler == "asha",
                                pruned_hashes=pruned_hashes, lost=lost_notes.lost,
                                stopping=lambda: request.requested, on_db_lost=db_lost,
                                twins=twins)
    ckpt_dir = (checkpoint_dir(runs, masked_url, study_name) if cfg.trial_checkpoints
                else None)
    ctx = TrialContext(dataset, cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed, cfg.repeats,
                       cfg.compile, threads=max(1, int(per_trial["cpu"])),
                       latency=any(o.name == "latency_ms" for o in objectives),
                       zero_cost=zero_cost,
                       zero_cost_required=zero_cost_implied((), objectives),
                       eval_at=(validation_points(scheduler.rungs, cfg.epochs)
                                if scheduler is not None else ()),
                       checkpoint_dir=ckpt_dir)
    asha = cfg.scheduler == "asha"
    progress = Progress(cfg.budget, objectives, completed, log=log, every=cfg.progress_every,
                        max_macs=space.constraints.max_macs, count_pruned=asha,
                        pruned_before=used - len(completed))
    recorder = Recorder(store, study.id, run_name, cfg.budget, used, progress.log,
                        log_dir=runs / "logs" / run_name, run_id=run_id, fence=fence,
                        stopped=stopped, progress=progress, count_pruned=asha,
                        retrying=searcher.retrying, checkpoint_dir=ckpt_dir,
                        settle=searcher.settle, on_db_lost=db_lost)
    searcher.on_reused = recorder.reused
    if cfg.executor == "local":
        from nas._local import run_local

        return searcher, recorder, _showing(progress, lambda: run_local(
            searcher, recorder, trainable, ctx, request, scheduler))
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, ctx=ctx), per_trial),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=lost_notes, num_samples=-1,
                                    max_concurrent_trials=slots,
                                    reuse_actors=cfg.reuse_workers),
        run_config=tune.RunConfig(name=run_name, storage_path=str(runs / "ray"), verbose=0,
                                  callbacks=[recorder], stop=StopOnSignal(request)),
    )
    return searcher, recorder, _showing(progress, tuner.fit)


def _check_outage_env() -> None:
    """ConfigError (one line) unless ``$NAS_DB_OUTAGE_S`` is unset or a number of seconds >= 0
    (elsewhere a malformed value falls back to the default wait)."""
    from db import OUTAGE_ENV, parse_outage

    raw = os.environ.get(OUTAGE_ENV)
    if raw is not None and parse_outage(raw) is None:
        raise ConfigError(f"${OUTAGE_ENV} must be a number of seconds >= 0 (how long a lost "
                          f"database server is waited for; default 30); got {raw!r}")


def _driver_error(error: BaseException) -> BaseException:
    """The database driver's own error behind ours or Optuna's wrapper (SQLAlchemy's error is
    the wrapper's cause, and its ``.orig`` holds the driver's words), else the nearest one."""
    cause = error.__cause__ or error
    return getattr(cause, "orig", None) or cause


def _database_lost(store, request, error: BaseException) -> None:
    """The database is out of reach (no answer after the outage wait, or its SQLite file was
    deleted or replaced) or refuses writes (disk full, read-only): the run stops (exit 1),
    writes nothing more, and waits for the database no more (its close-out fails fast)."""
    from db import DatabaseGoneError, outage_s, refuses_writes, tables_gone, waits_given_up

    refused, gone = refuses_writes(error), None
    if isinstance(error, DatabaseGoneError):
        why, gone = str(error).splitlines()[0], "file"
    else:
        cause = _driver_error(error)
        text = " ".join(str(cause).split()) or type(cause).__name__
        why = text if refused else f"no answer for {outage_s():g} s: {text}"
        if tables_gone(error):  # dropped (and made again?) under the run
            first = next((ln.strip() for ln in str(cause).splitlines() if ln.strip()), text)
            why, gone = f"its tables are gone: {first}", "tables"
        elif not refused and waits_given_up() and request.requested and not request.lost_lease:
            why = f"no answer, not waited for after {request.short}: {text}"  # (give_up_waits)
    store.stop_waiting()
    request.lost_database(why[:300], gone=gone, refused=refused)


def _showing(progress, run: Callable[[], Any]) -> Callable[[], Any]:
    """``run`` with the live progress view shown while it runs (its final line after)."""
    def run_showing():
        progress.start()
        try:
            return run()
        finally:
            progress.close()
    return run_showing
