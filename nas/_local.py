"""``--executor local``: the searcher's trials run one after another in the driver, without Ray.

For debugging (a breakpoint or a profiler inside a trial, a traceback in the terminal's own
process): the same searcher, recorder and trainable as under Ray Tune, driven by a plain loop.
A stop signal ends the running trial at its next per-epoch report; so does a scheduler's
STOP (``--scheduler asha``), after which the trial is recorded as pruned.
"""

from __future__ import annotations

import os
import platform
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["run_local"]


class _Stopped(Exception):
    """Raised inside a trial at its next report once a stop was requested."""


class _Pruned(Exception):
    """Raised inside a trial at the report on which the scheduler decided to stop it."""


@dataclass
class _LocalTrial:
    """The attributes of a Ray Tune trial that our recorder reads."""

    trial_id: str
    config: dict[str, Any]
    last_result: dict[str, Any] | None = None
    error_file: str | None = None
    pickled_error_file: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)


def run_local(searcher, recorder, trainable, ctx, request, scheduler=None) -> int:
    """Run trials until the searcher is finished or ``request`` asks to stop; returns how many
    trials were started. ``scheduler``: a Tune ``TrialScheduler`` asked after every report."""
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher

    started = 0
    where = {"hostname": platform.node(), "node_ip": None, "pid": os.getpid()}
    while not request.requested:
        trial_id = f"local{started:05d}"
        config = searcher.suggest(trial_id)
        if config is None or config == Searcher.FINISHED:
            break
        started += 1
        trial = _LocalTrial(trial_id, config)
        recorder.on_trial_start(0, [], trial)

        def report(result: dict[str, Any], trial=trial) -> None:
            result = {**result, **where}  # as Tune fills them in
            trial.results.append(result)
            recorder.on_trial_result(0, [], trial, result)
            if request.requested:
                raise _Stopped
            if scheduler is not None and scheduler.on_trial_result(
                    None, trial, result) == TrialScheduler.STOP:
                raise _Pruned

        try:
            trainable(config, ctx, report=report)
        except _Stopped:
            break  # left running in both tables: the caller closes it as INTERRUPTED
        except _Pruned:
            pass  # ends as under Tune: its last result is a per-epoch one
        except Exception:  # noqa: BLE001 - a failed trial, recorded with its traceback
            # a folder only while the recorder reads it: a run killed later leaves none
            with tempfile.TemporaryDirectory(prefix="nas-local-") as errors:
                path = Path(errors, f"{trial_id}.txt")
                path.write_text(traceback.format_exc())
                trial.error_file = str(path)
                searcher.on_trial_complete(trial_id, None, error=True)  # as Tune: searcher,
                recorder.on_trial_error(0, [], trial)  # then the recorder (the row; settle)
            trial.error_file = None
            continue
        trial.last_result = trial.results[-1] if trial.results else None
        if scheduler is not None:
            scheduler.on_trial_complete(None, trial, trial.last_result)
        searcher.on_trial_complete(trial_id, trial.last_result)
        recorder.on_trial_complete(0, [], trial)
    return started
