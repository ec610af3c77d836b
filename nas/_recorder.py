"""The Tune callback that records every trial (driver side, the single writer of the database).

A trial's row is written first, then the searcher tells Optuna (``settle``). A database that
stops answering for longer than the outage wait, or refuses writes (disk full, read-only),
stops the run (``on_db_lost``): nothing more is written, Optuna is not told, and the next run
closes what was left open.

A module-level class so that Tune can pickle it without dragging a database connection along
(Tune pickles callbacks for its own restore, which we do not use: the database is the record).
"""

from __future__ import annotations

import re
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

from ray.tune import Callback

from nas._checkpoints import remove_checkpoints
from nas._trial_errors import load_error
from nas.models import describe, from_dict
from nas.results import (
    DONE,
    TrialFailure,
    TrialPruned,
    epoch_text,
    final_result,
    node_label,
    worker_of,
)

__all__ = ["Recorder"]

#: the per-epoch result keys kept in a pruned trial's curve (``proxies.EpochStats`` fields)
EPOCH_KEYS = ("epoch", "epochs", "train_loss", "train_accuracy", "seconds", "val_accuracy",
              "val_loss")


class Recorder(Callback):
    """Writes every trial to the database and prints one progress line each."""

    def __init__(self, store, study_id: int, run_name: str, budget: int, already: int,
                 log: Callable[[str], None], log_dir: str | Path | None = None,
                 run_id: int | None = None, fence: Callable[[], bool] | None = None,
                 stopped: Mapping[str, TrialPruned] | None = None, progress=None,
                 count_pruned: bool = False, retrying: Mapping[str, str] | None = None,
                 checkpoint_dir: str | None = None,
                 settle: Callable[[str], None] | None = None,
                 on_db_lost: Callable[[BaseException], None] | None = None) -> None:
        self.store = store
        self.settle = settle or (lambda trial_id: None)  # tells Optuna, once the row is written
        self.on_db_lost = on_db_lost  # the database is out of reach: stop the run
        self.db_lost = False
        self.checkpoint_dir = checkpoint_dir  # trials' training states (nas._trainable): a
        #                                       trial's go once it is recorded as finished
        self.progress = progress  # nas._progress.Progress: the live counts (optional)
        self.count_pruned = count_pruned  # the [n/budget] counter counts pruned trials too
        self.fence = fence or (lambda: True)  # False once another run took the study over
        self.run_id = run_id  # the nas_runs row every trial of this run points to
        self.log_dir = None if log_dir is None else Path(log_dir)  # failed trials' tracebacks
        self.study_id = study_id
        self.run_name = run_name
        self.budget = budget
        self.log = log
        self.ids: dict[str, int] = {}  # Ray trial id -> database trial id
        self.numbers: dict[str, int] = {}  # Ray trial id -> the trial's number in the study
        self.finished: set[str] = set()  # Ray trial ids whose row is finished
        self.unwritten: set[str] = set()  # ... whose row could not be finished: Optuna is not
        #                                  told their result (the run's close-out ends them)
        self.last: dict[str, dict] = {}  # Ray trial id -> last reported result
        self.curves: dict[str, list[list[dict]]] = {}  # Ray trial id -> per repeat, per epoch
        self.began: dict[str, float] = {}  # Ray trial id -> when it started (driver clock)
        self.where: dict[str, dict] = {}  # Ray trial id -> the worker it ran on (`worker_of`)
        self.nodes: Counter[str] = Counter()  # node label -> trials of this run recorded there
        self.stopped = {} if stopped is None else stopped  # a scheduler's decisions
        self.retrying = {} if retrying is None else retrying  # trials whose worker went away,
        #                                                      their architecture asked again
        self.completed = already
        self.written = 0  # trials of this run whose row was finished by this recorder
        self.pruned = 0  # trials stopped at a rung in this run
        self.t0 = time.perf_counter()

    def __getstate__(self) -> dict:
        return {}  # see the module docstring

    def _lost(self, e: BaseException, trial, what: str) -> bool:
        """True, with one line and the run told to stop, when ``e`` says no more results can be
        recorded (no answer after the outage wait, its SQLite file gone, or it refuses writes:
        disk full, read-only); False otherwise."""
        from db import refuses_writes, stops_recording, tables_gone

        if self.on_db_lost is None or not stops_recording(e):
            return False
        if not self.db_lost:
            self.db_lost = True
            self.on_db_lost(e)
        state = ("refuses writes" if refuses_writes(e) else "lost its tables" if tables_gone(e)
                 else "is out of reach")
        self.log(f"[ not recorded ] {self._number(trial)}{what}: the database {state}; the "
                 "search stops")
        return True

    def _settle(self, trial) -> None:
        """The searcher tells Optuna how the trial ended (its row is written, or not ours to
        write); not once the database is lost."""
        if self.db_lost or trial.trial_id in self.unwritten:  # (Optuna never holds a result
            return  # our table lacks)
        try:
            self.settle(trial.trial_id)
        except Exception as e:
            if not self._lost(e, trial, "its result was not told to Optuna"):
                raise

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        if self.db_lost or not self.fence():
            return  # the study is another run's now, or gone: write nothing more
        if not self._start_row(trial):
            return
        if self.progress is not None:
            self.progress.started()
        self.began[trial.trial_id] = time.perf_counter()

    def _start_row(self, trial) -> bool:
        """The trial's RUNNING row (its number: ``self.numbers``); False if none was written."""
        from db import StorageError

        c = trial.config
        try:
            rec = self.store.start_trial(
                self.study_id, key=f"{self.run_name}:{trial.trial_id}", arch_hash=c["arch_hash"],
                arch=c["arch"], params=c["params"], run_id=self.run_id)
        except StorageError as e:
            if self._lost(e, trial, f"trial {trial.trial_id} did not start"):
                return False
            raise
        self.ids[trial.trial_id] = rec.id
        self.numbers[trial.trial_id] = rec.number
        return True

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.last[trial.trial_id] = result
        if trial.trial_id not in self.where:
            self.where[trial.trial_id] = worker_of(result)
        if "epoch" in result and not result.get(DONE):
            curve = self.curves.setdefault(trial.trial_id, [])
            while len(curve) <= int(result.get("repeat", 0)):
                curve.append([])
            curve[int(result.get("repeat", 0))].append(
                {k: result.get(k) for k in EPOCH_KEYS})

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        try:
            self._complete(trial)
        finally:
            self._settle(trial)

    def _complete(self, trial) -> None:
        res = final_result(self.last.pop(trial.trial_id, None) or trial.last_result)
        curve = self.curves.pop(trial.trial_id, [])
        if res is None and trial.trial_id in self.stopped:
            return self._pruned(trial, self.stopped[trial.trial_id], curve)
        if isinstance(res, TrialFailure):
            return self._fail(trial, res.failure, {"curve": res.curve})
        if res is None:
            return self._fail(trial, "trial ended without reporting a result")
        metrics = {**res.metrics(), "proxy_arch": trial.config["proxy_arch"]}
        if not self._finish(trial, state="COMPLETE", metrics=metrics, **res.columns()):
            return
        self.completed += 1
        if self.progress is not None:
            self.progress.completed(res, self.numbers.get(trial.trial_id))
        elapsed = time.perf_counter() - self.t0
        self.log(f"[{self.completed:>3}/{self.budget}] {self._number(trial)}"
                 f"acc {res.accuracy:.4f} "
                 f"± {res.accuracy_se:.4f}  "
                 f"{res.macs / 1e9:7.3f} GMACs  {res.params / 1e6:7.2f} M params  "
                 f"trial {res.total_seconds:5.1f} s  elapsed {elapsed:6.1f} s  "
                 f"{describe(from_dict(trial.config['arch']))}")

    def reused(self, number: int, res, arch, source: int | None) -> None:
        """A proposal the searcher recorded COMPLETE with its proxy twin's result (#source's):
        counted and shown like a trained trial, with what it reused."""
        self.completed += 1
        if self.progress is not None:
            self.progress.reused(res, number)
        elapsed = time.perf_counter() - self.t0
        twin = "?" if source is None else f"#{source}"
        self.log(f"[{self.completed:>3}/{self.budget}] #{number} "
                 f"acc {res.accuracy:.4f} ± {res.accuracy_se:.4f}  "
                 f"{res.macs / 1e9:7.3f} GMACs  {res.params / 1e6:7.2f} M params  "
                 f"reused {twin}'s proxy result (same proxy)  elapsed {elapsed:6.1f} s  "
                 f"{describe(arch)}")

    def _number(self, trial) -> str:
        """``#N `` (the study's trial number, as in the Pareto table), or nothing if unknown."""
        number = self.numbers.get(trial.trial_id)
        return "" if number is None else f"#{number} "

    def _pruned(self, trial, why: TrialPruned, curve: list[list[dict]]) -> None:
        """A trial the scheduler stopped at a rung: PRUNED, its partial accuracy in metrics."""
        seconds = time.perf_counter() - self.began.get(trial.trial_id, self.t0)
        metrics = {**why.metrics(), "curve": curve, "total_seconds": seconds,
                   "total_seconds_measured_by": "driver", "proxy_arch": trial.config["proxy_arch"]}
        if trial.trial_id in self.finished or not self._finish(
                trial, state="PRUNED", error=why.reason, metrics=metrics):
            return
        self.pruned += 1
        if self.count_pruned:
            self.completed += 1  # an evaluated trial: --budget counts it (--scheduler asha)
        if self.progress is not None:
            self.progress.pruned_one()
        elapsed = time.perf_counter() - self.t0
        macs = why.costs.get("macs")
        shown = f"{macs / 1e9:7.3f} GMACs  " if macs is not None else ""
        loss = f"loss {why.val_loss:.3f} " if why.val_loss is not None else ""
        self.log(f"[ pruned ] {self._number(trial)}epoch {epoch_text(why.epoch)} val {loss}acc "
                 f"{why.val_accuracy:.4f}  front "
                 f"{why.front + 1} of {why.reached} (top {why.kept} kept)  {shown}"
                 f"trial {seconds:5.1f} s  elapsed {elapsed:6.1f} s  "
                 f"{describe(from_dict(trial.config['arch']))}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        try:
            self._error(trial)
        finally:
            self._settle(trial)

    def _error(self, trial) -> None:
        if trial.trial_id in self.retrying:  # its worker or node went away: not its failure
            reason = self.retrying[trial.trial_id]
            started = trial.trial_id in self.began  # else it died before Tune told us it began:
            if trial.trial_id not in self.ids and trial.trial_id not in self.finished \
                    and not self.db_lost and self.fence():  # its row now (Optuna is told FAIL
                self._start_row(trial)  # and asked it again), so both tables count it
            if trial.trial_id not in self.finished and self._finish(
                    trial, state="INTERRUPTED", error=f"lost its Ray worker, retried: {reason}") \
                    and self.progress is not None and started:
                self.progress.lost_one()
            self.log(f"[ lost ] {self._number(trial)}{reason.rstrip('.')}; its architecture "
                     "is trained again")
            return
        line, full = _error_text(trial)
        metrics = {}
        if self.log_dir is not None and full:
            path = self.log_dir / f"{trial.trial_id}.log"
            try:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                path.write_text(full)
                metrics["log_path"] = str(path)
            except OSError:
                pass  # the one-line reason is still recorded
        self._fail(trial, line, metrics,
                   f" (traceback: {metrics['log_path']})" if "log_path" in metrics else "")

    def _fail(self, trial, message: str, metrics: dict | None = None, where: str = "") -> None:
        if trial.trial_id not in self.finished:
            # (Tune reports an error raised by a callback of a finished trial as its failure)
            if self._finish(trial, state="FAIL", error=message, metrics=metrics) \
                    and self.progress is not None:
                self.progress.failed_one()
        self.log(f"[ failed ] {self._number(trial)}{message}{where}")

    def _finish(self, trial, **fields) -> bool:
        """Finish the trial's row unless the study is no longer this run's (or the row was
        closed meanwhile, e.g. by a run that took over): then one line, never a crash."""
        from db import StorageError

        if self.db_lost or trial.trial_id not in self.ids or not self.fence():
            return False
        where = self.where.pop(trial.trial_id, None)
        if where is not None:
            fields["metrics"] = {**(fields.get("metrics") or {}), "worker": where}
        if "optuna_trial" in trial.config:  # its Optuna trial: a resume that finds it still
            fields["metrics"] = {**(fields.get("metrics") or {}),  # RUNNING tells it this
                                 "optuna_trial": trial.config["optuna_trial"]}
        try:
            self.store.finish_trial(self.ids[trial.trial_id], **fields)
        except StorageError as e:
            if not self._lost(e, trial, f"trial {trial.trial_id} ended {fields.get('state')}"):
                self.log(f"[ not recorded ] trial {trial.trial_id}: {str(e).splitlines()[0]}")
                self.unwritten.add(trial.trial_id)
            return False
        finally:
            self.finished.add(trial.trial_id)
        self.written += 1
        if fields.get("state") != "INTERRUPTED":  # an interrupted one resumes from them
            remove_checkpoints(self.checkpoint_dir, trial.config)
        if where is not None:
            self.nodes[node_label(where)] += 1
        return True


def _error_text(trial) -> tuple[str, str]:
    """(one line, full traceback) of a trial that raised, from the files Tune writes locally."""
    err, text = load_error(trial)
    cause = getattr(err, "cause", None) if err is not None else None
    if isinstance(cause, BaseException):
        line = traceback.format_exception_only(type(cause), cause)[-1]
    elif err is not None:
        line = next((ln for ln in str(err).splitlines() if ln.strip()), type(err).__name__)
    else:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        line = lines[-1] if lines else "unknown error (no error file from Ray)"
    full = re.sub(r"\x1b\[[0-9;]*m", "", text or (str(err) if err is not None else ""))
    return " ".join(line.split())[:500], full
