"""A failed Ray Tune trial's error, read from the files Tune writes: what it raised, and
whether its worker or node went away instead (then the architecture is worth a retry)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["load_error", "lost_reason"]


def load_error(trial) -> tuple[BaseException | None, str]:
    """(the exception Ray pickled, the error text) of a failed trial, from the files Tune writes
    locally; either may be missing (None, "").

    Tune writes ``error.pkl`` (the ``RayTaskError`` whose ``cause`` is the exception the trial
    raised, or the ``RayActorError`` of a worker that died) and ``error.txt`` into the trial's
    local staging dir before it tells the scheduler, the searcher and the callbacks;
    ``trial.get_error()`` reads the synced storage copy, not there yet.
    """
    import cloudpickle

    err = None
    try:
        if trial.pickled_error_file and Path(trial.pickled_error_file).is_file():
            err = cloudpickle.loads(Path(trial.pickled_error_file).read_bytes())
    except Exception:  # noqa: BLE001 - best effort: fall back to the text file
        err = None
    text = ""
    try:
        if trial.error_file and Path(trial.error_file).is_file():
            text = Path(trial.error_file).read_text(errors="replace")
    except OSError:
        text = ""
    return err, text


def lost_reason(trial) -> str | None:
    """One line when the trial failed because its Ray worker or node went away (killed, out of
    memory, the node died): nothing the architecture did, so it is worth a retry. None when the
    trial itself raised (a ``RayTaskError``), or when the error cannot be read."""
    from ray.exceptions import (
        LocalRayletDiedError,
        NodeDiedError,
        OutOfMemoryError,
        RayActorError,
        WorkerCrashedError,
    )

    err, _ = load_error(trial)
    if not isinstance(err, (RayActorError, WorkerCrashedError, NodeDiedError,
                            LocalRayletDiedError, OutOfMemoryError)):
        return None
    first = next((ln for ln in str(err).splitlines() if ln.strip()), "")
    return " ".join(f"{type(err).__name__}: {first}".split())[:300]
