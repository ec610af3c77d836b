"""A Ray Tune ``Searcher`` on Optuna's public ask/tell API (imported lazily: Ray is heavy).

Optuna proposes (``study.ask()``, the space's define-by-run sampler), the searcher checks each
proposal against the space's constraints and de-duplicates it by hash *before* anything is
built. A skipped proposal is told to Optuna and written to our table at once, as INFEASIBLE
(with the violated rules) or DUPLICATE (naming the trial it repeats), so both tables count the
same proposals. The searcher stops at a number of *completed* trials.

With a pre-screen (``--prescreen synflow:K``) each trial slot gathers up to K feasible, new
candidates, scores each with a zero-cost proxy (``screen``, in the driver) and launches only
the best; the others are told to Optuna as PRUNED and written to our table as FAIL with the
reason (see :meth:`BudgetedSearcher._screen`).

A proposal whose proxy a completed trial already trained (a proxy twin, ``nas._twins``) is
not trained again: it is recorded COMPLETE at once with that trial's proxy results and its own
costs, told to Optuna, and counted against the budget (``twins``; ``--retrain-twins`` turns it
off).

With ``--scheduler asha`` a trial stopped at a rung (``stopped``, the scheduler's record) is
told to Optuna as PRUNED. It counts against the budget (``count_pruned``: the budget is of
evaluated trials, as Optuna's ``n_trials`` and Tune's ``num_samples``, so that stopping early saves
compute), and does not use up ``max_attempts``.

A trial that ran is told to Optuna only once its row is written (:meth:`BudgetedSearcher.settle`,
called by the recorder): our table is the record, and a database lost between the two leaves
Optuna's trial RUNNING, which the next run tells from our row (:func:`close_stale_trials`), never
a result Optuna has and our table lacks.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from ray.tune.search import Searcher

from nas._twins import TwinSource, proxy_key, reused_result
from nas.models import ArchSpec, arch_hash, to_dict
from nas.results import Objective, TrialPruned, TrialResult, final_result

__all__ = ["BudgetedSearcher", "close_stale_trials", "enqueue_retries"]

PROPOSALS_PER_SLOT = 200  # skipped proposals in a row before random draws are tried
FALLBACK_DRAWS = 20_000  # random draws then for a new feasible one (3.2 s on hybrid_conv_attn)
REUSED = object()  # what _propose returns for a proposal recorded with its twin's result


def _ref(number: int | None) -> str:
    """``#7``, as every command names a trial (``?`` if its row was not found)."""
    return "?" if number is None else f"#{number}"


class BudgetedSearcher(Searcher):
    """Proposes architectures until ``budget`` trials are done or ``max_attempts`` started.

    Args:
        space: the parsed search space (``sample``, ``violations``, ``proxy``).
        study: the Optuna study (directions from ``objectives``), in the same database.
        objectives: the study's objective list.
        store, study_id, run_name: where skipped proposals are recorded (driver side).
        budget: completed trials wanted from this run (evaluated ones with ``count_pruned``).
        done: arch hash -> objective values of completed trials.
        max_attempts: trials started at most (completed + failed; pruned ones not counted).
        num_classes: of the proxy dataset.
        screen: scores a candidate (higher is better) for the pre-screen; None: no pre-screen.
        screen_k: candidates per trial slot when ``screen`` is given (>= 2).
        screen_name: the proxy ``screen`` computes (recorded as ``zc_<name>``).
        stopped: Ray trial id -> why a scheduler stopped it (read when the trial ends).
        count_pruned: ``budget`` counts trials stopped by the scheduler as well as completed ones.
        pruned_hashes: arch hash -> our trial number of architectures already pruned: a new
            proposal of one is skipped as DUPLICATE (Optuna: PRUNED), not trained again; None
            when no scheduler prunes.
        lost: Ray trial id -> why its worker or node went away (the scheduler's notes, read when
            the trial ends): its architecture is asked again, once per run; ``retrying`` then
            holds the trial (the recorder stores it as INTERRUPTED, not FAIL).
        stopping: True once the run is stopping (a signal, a lost database): nothing more is
            asked of Optuna.
        on_db_lost: called with the error when the database stops answering (after the
            outage wait) or refuses writes during a proposal: the run stops, and no proposal
            is made.
        twins: proxy hash -> the completed trial that trained that proxy with this run's
            settings (``nas._twins.twin_sources``); this run's completed trials join it. A
            proposal found there is recorded COMPLETE with that result, not trained. None: off.
        on_reused: called with (our row's number, its result, its architecture, the number of
            the trial it reused) after each such row is written (the progress lines).
    """

    def __init__(self, space, study: optuna.Study, objectives: Sequence[Objective], store,
                 study_id: int, run_name: str, budget: int,
                 done: dict[str, list[float]], max_attempts: int,
                 num_classes: int, screen: Callable[[ArchSpec], float] | None = None,
                 screen_k: int = 1, screen_name: str = "", run_id: int | None = None,
                 fence: Callable[[], bool] | None = None,
                 stopped: Mapping[str, TrialPruned] | None = None,
                 count_pruned: bool = False,
                 pruned_hashes: dict[str, int | None] | None = None,
                 lost: Mapping[str, str] | None = None,
                 stopping: Callable[[], bool] | None = None,
                 on_db_lost: Callable[[BaseException], None] | None = None,
                 twins: dict[str, TwinSource] | None = None,
                 on_reused: Callable[[int, TrialResult, ArchSpec, int | None], None] | None
                 = None) -> None:
        super().__init__()
        self.twins, self.on_reused, self.reused = twins, on_reused, 0  # proxy twins reused
        self.on_db_lost = on_db_lost
        self.stopping = stopping or (lambda: False)
        self.fence = fence or (lambda: True)  # False once another run took the study over
        self.run_id = run_id  # the nas_runs row the skipped proposals point to
        self.space, self.num_classes = space, num_classes  # what is proposed, and its proxy
        self.study, self.objectives = study, tuple(objectives)  # Optuna's side
        self.store, self.study_id, self.run_name = store, study_id, run_name  # ours
        self.budget, self.max_attempts = budget, max_attempts
        self.done = done
        self.screen, self.screen_name = screen, screen_name  # the pre-screen, if any
        self.screen_k = screen_k if screen is not None else 1
        # Ray trial id -> (hash, Optuna trial, architecture) of each trial started, not finished
        self.live: dict[str, tuple[str, optuna.trial.Trial, ArchSpec]] = {}
        # Ray trial id -> (its live entry, what Optuna is told) of each trial that ended and
        # whose row the recorder has not written yet (settle)
        self.pending: dict[str, tuple[tuple[str, optuna.trial.Trial, ArchSpec],
                                      Callable[[], None]]] = {}
        self.completed = self.failed = self.duplicates = self.infeasible = self.started = 0
        self.exhausted = False  # PROPOSALS_PER_SLOT proposals in a row were all skipped
        self.screened = 0  # candidates screened out (never trained)
        self.stopped = {} if stopped is None else stopped  # the scheduler's decisions
        self.count_pruned, self.pruned = count_pruned, 0  # trials it stopped at a rung
        self.pruned_hashes = pruned_hashes  # arch hash -> our number of a pruned trial
        self.lost = {} if lost is None else lost  # Ray trial id -> why its worker went away
        self.retrying: dict[str, str] = {}  # Ray trial id -> that reason, its arch asked again
        self.retried: set[str] = set()  # arch hashes asked again in this run (once each)

    def __getstate__(self) -> dict:
        return {}  # Tune may pickle searchers for its own restore, which we do not use

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the database is the record (a later run resumes from it)."""

    @property
    def used(self) -> int:
        """Trials of this run the budget counts: completed (and pruned, with ``count_pruned``)."""
        return self.completed + (self.pruned if self.count_pruned else 0)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        from db import stops_recording

        try:
            return self._suggest(trial_id)
        except Exception as e:
            if self.on_db_lost is None or not stops_recording(e):
                raise
            self.on_db_lost(e)  # a proposal asked of Optuna meanwhile stays RUNNING there: the
            return Searcher.FINISHED  # next run closes it (close_stale_trials)

    def _suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.used >= self.budget or self.started - self.pruned >= self.max_attempts:
            return Searcher.FINISHED
        if not self.fence() or self.stopping():  # the study is another run's now, or the run
            return Searcher.FINISHED                # is stopping: ask Optuna nothing more
        if self.used + len(self.live) >= self.budget:
            return None  # wait: a running trial may still fail
        group: list[tuple[optuna.trial.Trial, ArchSpec, str]] = []  # feasible, new candidates
        k = self.screen_k if getattr(self.screen, "ready", True) else 1  # nothing learned yet
        skipped = 0
        while skipped < PROPOSALS_PER_SLOT:
            candidate = self._propose(group)
            if candidate is REUSED:  # a completed trial more: the budget may be reached (never
                # with a pre-screen group waiting: a reuse then leaves room for its winner)
                if self.used + len(self.live) >= self.budget:
                    return self._after_reuse()
                if not self.fence() or self.stopping():
                    if not group:
                        return Searcher.FINISHED
                    break  # the group's asked candidates: launched, then closed by the stop
            elif candidate is None:
                skipped += 1
            else:
                group.append(candidate)
                if len(group) >= k:
                    break
        while not group:  # a small feasible share, or a space used up: random draws tell which
            fallback = self._random_fallback()
            if fallback is None:
                break
            if fallback is not REUSED:
                group.append(fallback)
            elif self.used + len(self.live) >= self.budget or not self.fence() \
                    or self.stopping():
                return self._after_reuse()
        if not group:
            self.exhausted = True  # no new feasible architecture from the sampler or the draws
            return Searcher.FINISHED
        trial, arch, h = self._screen(group) if len(group) > 1 else group[0]
        self.live[trial_id] = (h, trial, arch)
        self.started += 1
        return {"arch": to_dict(arch), "arch_hash": h, "params": dict(trial.params),
                "proxy_arch": to_dict(self.space.proxy(arch, self.num_classes)),
                "optuna_trial": trial.number}  # (kept in its row: close_stale_trials)

    def _after_reuse(self) -> dict[str, Any] | None:
        """What ``suggest`` returns, with no candidate in hand, once a reused twin reached the
        budget (FINISHED, or None while running trials may still fail) or the run stopped or
        lost the study (FINISHED)."""
        if self.used >= self.budget or not self.fence() or self.stopping():
            return Searcher.FINISHED
        return None

    def _random_fallback(self) -> tuple[optuna.trial.Trial, ArchSpec, str] | object | None:
        """After PROPOSALS_PER_SLOT skipped proposals: a new feasible architecture from up to
        FALLBACK_DRAWS seeded uniform draws, else from the space's local search on its
        constraints, asked through Optuna (enqueued, so it is recorded and learned from like any
        proposal); None when neither finds one, REUSED when it was recorded with its twin's
        result.

        A space whose constraints admit ~0.1% of it makes a sampler's early, random generation
        propose hundreds of infeasible architectures in a row while feasible ones remain.
        """
        taken = {*self.done, *(h for h, _, _ in self.live.values()), *(self.pruned_hashes or ())}
        # seeded by this run's counts (deterministic; no read of the whole study)
        rng = random.Random(f"fallback:{self.started}:{self.infeasible}:{self.duplicates}"
                            + (f":{self.reused}" if self.reused else ""))  # (new draws after one)
        for _ in range(FALLBACK_DRAWS):
            arch, params = self.space.sample_random(rng, feasible=False)
            if arch_hash(arch) not in taken and not self.space.violations(arch):
                break
        else:  # a feasible share too small for the draws: descend on the constraints' excess
            arch, params, _ = self.space.local_search(rng, taken=taken)
            if arch is None:
                return None
        self.study.enqueue_trial(params, skip_if_exists=False)
        return self._propose([])

    def _propose(self, group) -> tuple[optuna.trial.Trial, ArchSpec, str] | object | None:
        """One Optuna proposal: the candidate, None when it was skipped (and recorded), or
        REUSED when it was recorded COMPLETE with its proxy twin's result."""
        trial = self.study.ask()
        arch = self.space.sample(trial)
        h = arch_hash(arch)
        for name, value in zip(self.space.constraints.names, self.space.constraint_values(arch)):
            trial.set_constraint(name, value)  # what Optuna's constrained samplers learn from
        violations = self.space.violations(arch)
        if violations:
            self.infeasible += 1
            trial.set_user_attr("infeasible", violations)
            # PRUNED, not FAIL: the samplers learn constraints from COMPLETE and PRUNED trials
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            self._skip(trial, arch, h, "INFEASIBLE", "; ".join(violations), {})
            return None
        running = [tid for tid, (lh, _, _) in self.live.items() if lh == h]
        grouped = [t.number for t, _, gh in group if gh == h]
        was_pruned = self.pruned_hashes is not None and h in self.pruned_hashes
        if h in self.done or running or grouped or was_pruned:
            self.duplicates += 1
            extra: dict[str, Any] = {}
            if was_pruned and h not in self.done:  # the rung decided already: not retrained
                self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                number = self.pruned_hashes[h]
                if number is None:
                    number = next((t.number for t in self.store.trials(
                        self.study_id, states=["PRUNED"]) if t.arch_hash == h), None)
                    self.pruned_hashes[h] = number
                what = "duplicate of pruned trial " + _ref(number)
            elif h in self.done:  # Optuna learns the known result without retraining
                self.study.tell(trial, self.done[h])
                first = self.store.find_completed(self.study_id, h)
                number = None if first is None else first.number
                what = "duplicate of completed trial " + _ref(number)
            else:
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                number = None  # (`duplicate_of` names the trial whose result Optuna was told)
                if running:  # its row exists once its worker started it (the recorder)
                    key = f"{self.run_name}:{running[0]}"
                    live = next((t.number for t in self.store.trials(
                        self.study_id, states=["RUNNING"]) if t.key == key), None)
                    optuna_number = self.live[running[0]][1].number
                    # not started: it has no row, so no number yet; its Optuna trial's number
                    # is what its row will hold (metrics["optuna_trial"])
                    what = ("duplicate of running trial " + _ref(live) if live is not None else
                            f"duplicate of a trial proposed just before it and not yet started "
                            f"(its row will have metrics optuna_trial {optuna_number})")
                    extra = {"duplicate_of_running": live, "duplicate_of_optuna": optuna_number}
                else:
                    what = f"duplicate of candidate optuna{grouped[0]} in its pre-screen group"
            self._skip(trial, arch, h, "DUPLICATE", what,
                       {"duplicate_of": number, "duplicate_of_hash": h, **extra})
            return None
        # a twin joins a pre-screen group (and may be trained) only when its row would use the
        # budget the group's winner is to have
        if self.twins is not None and (not group or self.used + len(self.live) + 1 < self.budget):
            proxy = self.space.proxy(arch, self.num_classes)
            source = self.twins.get(proxy_key(proxy))
            if source is not None:
                self._reuse(trial, arch, h, proxy, source)
                return REUSED
        return trial, arch, h

    def _reuse(self, trial, arch: ArchSpec, h: str, proxy: ArchSpec, source: TwinSource) -> None:
        """Record ``arch`` COMPLETE with the proxy results of ``source`` (its twin) and its own
        costs, then tell Optuna (our row first, as for a trained trial)."""
        t0 = time.perf_counter()
        number = source.number
        if number is None:  # a trial of this run: its row has the number
            first = self.store.find_completed(self.study_id, source.arch_hash)
            number = None if first is None else first.number
            self.twins[proxy_key(proxy)] = TwinSource(source.result, number, source.arch_hash)
        rec = self.store.start_trial(self.study_id, key=f"{self.run_name}:optuna{trial.number}",
                                     arch_hash=h, arch=to_dict(arch), params=dict(trial.params),
                                     run_id=self.run_id)
        res = reused_result(source, arch, time.perf_counter() - t0)
        values = [res.value(o.name) for o in self.objectives]
        self.store.finish_trial(rec.id, state="COMPLETE", **res.columns(), metrics={
            **res.metrics(), "proxy_arch": to_dict(proxy), "reused_from": number,
            "optuna_trial": trial.number})
        trial.set_user_attr("reused_from", number)
        self.study.tell(trial, values)
        self.done[h] = values
        self.completed += 1
        self.reused += 1
        observe = getattr(self.screen, "observe", None)  # a screen that learns
        if observe is not None:
            observe(arch, values)
        if self.on_reused is not None:
            self.on_reused(rec.number, res, arch, number)

    def _screen(self, group) -> tuple[optuna.trial.Trial, ArchSpec, str]:
        """The best-scored candidate of ``group``; the others are recorded as screened out.

        Optuna is told PRUNED for the losers: it is its state for "stopped early on a cheap
        signal, never finished" (FAIL would claim something broke). Multi-objective studies
        accept PRUNED without values; NSGA-II ignores such trials and TPE ranks them below the
        completed ones. Our table has no such state yet, so they are stored as FAIL with the
        reason and ``metrics["screened_out"]`` (a SCREENED state needs a schema migration).
        """
        from proxies.errors import ZeroCostError

        scores, errors = [], []
        for _, arch, _ in group:
            try:
                scores.append(self.screen(arch))
                errors.append(None)
            except ZeroCostError as e:  # no finite score: the candidate loses the screen
                scores.append(-math.inf)
                errors.append(str(e))
        best = max(range(len(group)), key=lambda i: (scores[i], -i))  # ties: the first asked
        key = ("surrogate_score" if self.screen_name == "surrogate"  # expected HV gain
               else f"zc_{self.screen_name}")
        winner, _, best_h = group[best]
        winner.set_user_attr("prescreen", {"proxy": self.screen_name, "score": scores[best],
                                           "group": [t.number for t, _, _ in group]})
        for i, (trial, arch, h) in enumerate(group):
            if i == best:
                continue
            self.screened += 1
            why = errors[i] or f"{self.screen_name} {scores[i]:.6g} < {scores[best]:.6g}"
            trial.set_user_attr("screened_out", why)
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            self._skip(trial, arch, h, "FAIL",
                       f"screened out by --prescreen {self.screen_name}:{self.screen_k}: {why} "
                       f"of optuna{winner.number}",
                       {"screened_out": True, key: None if errors[i] else scores[i],
                        "screened_for_hash": best_h, "screened_for_optuna": winner.number})
        return group[best]

    def _skip(self, trial, arch, h: str, state: str, reason: str, metrics: dict) -> None:
        rec = self.store.start_trial(self.study_id, key=f"{self.run_name}:optuna{trial.number}",
                                     arch_hash=h, arch=to_dict(arch), params=dict(trial.params),
                                     run_id=self.run_id)
        self.store.finish_trial(rec.id, state=state, error=reason, metrics=metrics)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        """Count the trial's outcome now; what Optuna is told waits for its row (settle)."""
        if not self.fence():
            return  # kept in `live`: the stop closes it where it is still open (interrupt)
        entry = self.live.pop(trial_id, None)
        h, trial, arch = entry or (None, None, None)
        res = None if error else final_result(result)
        pruned = self.stopped.get(trial_id) if res is None and not error else None
        tell: Callable[[], None] | None = None
        if pruned is not None:  # stopped at a rung: an extra proposal, never COMPLETE
            self.pruned += 1
            if self.pruned_hashes is not None and h is not None:
                self.pruned_hashes[h] = None  # its row is written after this (the recorder)
            if trial is not None:
                def tell() -> None:
                    # multi-objective studies refuse trial.report(): the rung goes in a user attr
                    trial.set_user_attr("pruned", {**pruned.metrics(), "reason": pruned.reason})
                    self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif isinstance(res, TrialResult):
            values = [res.value(o.name) for o in self.objectives]
            self.completed += 1
            if trial is not None:
                def tell() -> None:
                    self.study.tell(trial, values)
                    self.done[h] = values
                    if self.twins is not None:  # its proxy's result, for its twins to come
                        self.twins.setdefault(proxy_key(self.space.proxy(
                            arch, self.num_classes)), TwinSource(res, None, h))
                    observe = getattr(self.screen, "observe", None)  # a screen that learns
                    if observe is not None:
                        observe(arch, values)
        elif error and self.lost.get(trial_id) and h is not None and h not in self.retried:
            # its worker or node went away: nothing the architecture did; asked again next
            # (as a resume retries what a stop interrupted), not counted as a failure
            reason = self.lost[trial_id]
            self.retried.add(h)
            self.retrying[trial_id] = reason  # (the recorder reads it: INTERRUPTED, not FAIL)

            def tell() -> None:
                trial.set_user_attr("interrupted", f"lost its Ray worker: {reason}")
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                enqueue_retries(self.study, [(h, dict(trial.params))])
        else:  # failed (diverged, or raised): told to Optuna as FAIL, never COMPLETE
            self.failed += 1
            if trial is not None:
                def tell() -> None:
                    self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        if tell is not None:
            self.pending[trial_id] = (entry, tell)

    def settle(self, trial_id: str) -> None:
        """Tell Optuna how the trial ended, once the recorder wrote its row (no-op otherwise).

        A trial another run closed meanwhile (it took the study over) is left as that run
        closed it."""
        entry = self.pending.pop(trial_id, None)
        if entry is None:
            return
        try:
            entry[1]()
        except optuna.exceptions.UpdateFinishedTrialError:
            pass

    def interrupt(self, reason: str, recorded: set[str]) -> int:
        """Close the trials still running when the run stopped; returns the rows it wrote.

        Optuna has no interrupted state: each is told FAIL with a user attr ``interrupted``
        giving ``reason``. Trials Tune never started (not in ``recorded``, the Ray ids the
        recorder wrote) get their INTERRUPTED row here, so both tables count the same proposals.
        Trials no longer RUNNING in Optuna's table are left alone: after a takeover the new run
        closed those that existed then (and wrote their rows); this run closes the rest.
        """
        written = 0
        storage = self.study._storage  # noqa: SLF001 - the state as stored now, not as cached
        left = {**self.live, **{t: entry for t, (entry, _) in self.pending.items()}}
        for trial_id, (h, trial, arch) in sorted(left.items(), key=lambda x: x[1][1].number):
            if storage.get_trial(trial._trial_id).state != optuna.trial.TrialState.RUNNING:
                continue  # closed by a run that took the study over (with its row)
            try:
                trial.set_user_attr("interrupted", reason)
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
                continue  # closed by the new run between the check and here
            if trial_id not in recorded:
                self._skip(trial, arch, h, "INTERRUPTED", reason, {})
                written += 1
        self.live, self.pending = {}, {}
        return written


def close_stale_trials(study: optuna.Study, storage, space, store, study_id: int,
                       recorded: set[str], reason: str, run_id: int | None = None,
                       done: Mapping[str, Sequence[float]] | None = None,
                       closed: Mapping[int, Any] | None = None) -> list:
    """Close the RUNNING Optuna trials a killed run left; returns them (as they were).

    Nothing else will ever finish them. Each is told FAIL with the user attr ``interrupted``
    (``reason``; ``storage`` is the study's, whose public API sets it by trial number). One our
    table has no row for (asked, but Tune never started it) gets an INTERRUPTED row, so both
    tables count the same proposals and a resume retries it; ``recorded`` holds the hashes of
    the rows the killed run did leave. A trial killed while its parameters were being sampled
    has no architecture: it gets no row, and its attr says so. One whose architecture our
    table holds as COMPLETE (``done``: hash -> objective values; the run recorded the result,
    then died, or lost its database, before telling Optuna) is told those values instead: the
    sampler keeps the result and no INTERRUPTED row is made for it. Likewise one whose own row
    (``closed``: Optuna trial number -> our finished row that names it in ``metrics
    ["optuna_trial"]``) was finished PRUNED, FAIL or INTERRUPTED: told PRUNED or FAIL as that
    row says, with no second row (which would have the resume train it again).
    """
    stale = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if stale:
        optuna_study_id = storage.get_study_id_from_name(study.study_name)
    for t in stale:
        why = reason
        try:
            arch = space.sample(optuna.trial.FixedTrial(t.params))
        except ValueError:  # not all of its parameters were sampled
            arch = None
            why = f"{reason}; killed before its architecture was sampled (no row in nas_trials)"
        h = None if arch is None else arch_hash(arch)
        trial_id = storage.get_trial_id_from_study_id_trial_number(optuna_study_id, t.number)
        row = (closed or {}).get(t.number)
        if row is not None:
            storage.set_trial_user_attr(trial_id, "recovered", f"{reason}; recorded {row.state} "
                                        f"in nas_trials (#{row.number}), and told now")
            if row.state == "PRUNED":
                study.tell(t.number, state=optuna.trial.TrialState.PRUNED)
                continue
            if row.state == "INTERRUPTED":  # its worker went away: the resume retries it
                storage.set_trial_user_attr(trial_id, "interrupted", row.error or reason)
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            continue
        if done and h in done:
            storage.set_trial_user_attr(trial_id, "recovered", f"{reason}; its result was "
                                        "recorded in nas_trials, and is told now")
            study.tell(t.number, list(done[h]))
            continue
        if arch is not None and h not in recorded:
            rec = store.start_trial(study_id, key=f"killed-run:optuna{t.number}", arch_hash=h,
                                    arch=to_dict(arch), params=dict(t.params), run_id=run_id)
            store.finish_trial(rec.id, state="INTERRUPTED", error=reason)
            recorded.add(h)
        storage.set_trial_user_attr(trial_id, "interrupted", why)
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return stale


def enqueue_retries(study: optuna.Study, retries: Sequence[tuple[str, dict[str, Any]]]) -> int:
    """Enqueue each (arch hash, params) not already waiting; ``study.ask()`` returns them first.

    For architectures the sampler chose in a run that stopped before they finished: dropping
    them would bias the search towards what trains fast. The enqueued trial carries the user attr
    ``retry_of`` (the hash), so a run stopped again before asking it does not enqueue it twice.
    """
    waiting = {t.user_attrs.get("retry_of") for t in study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.WAITING,))}
    added = 0
    for h, params in retries:
        if h not in waiting:
            study.enqueue_trial(dict(params), user_attrs={"retry_of": h})
            waiting.add(h)
            added += 1
    return added
