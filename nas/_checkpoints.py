"""Where a trial's per-epoch training state lives (``proxies.TrainConfig.checkpoint``).

The worker saves each repeat's state after every epoch; a trial of the same architecture run
again (a resumed study retries its interrupted architectures first; Ray retries a trial whose
worker went away) finds the same file and continues after its last epoch. The recorder deletes
a trial's files once it is recorded as finished, and a run that ends with nothing interrupted
deletes its study's directory.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from typing import Any

__all__ = ["checkpoint_dir", "checkpoint_path", "remove_checkpoints"]


def checkpoint_dir(runs_dir: str | os.PathLike[str], db_url: str, study: str) -> str:
    """Where a study's trials keep their per-epoch training state: one directory per
    (database, study) under ``<runs_dir>/checkpoints``, named readably and uniquely."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in study)[:48]
    tag = hashlib.sha256(json.dumps([db_url, study]).encode()).hexdigest()[:10]
    return os.path.join(os.fspath(runs_dir), "checkpoints", f"{safe}-{tag}")


def _checkpoint_stem(directory: str, config: dict[str, Any]) -> str:
    key = json.dumps([config["arch"], config["proxy_arch"]], sort_keys=True)
    return os.path.join(directory, hashlib.sha256(key.encode()).hexdigest()[:24])


def checkpoint_path(directory: str, config: dict[str, Any], repeat: int) -> str:
    """The training-state file of one repeat of the trial with Tune ``config`` (its full and
    proxy architecture): the same architecture in a later run finds the same file."""
    return f"{_checkpoint_stem(directory, config)}-r{repeat}.pt"


def remove_checkpoints(directory: str | None, config: dict[str, Any]) -> None:
    """Delete the training-state files of the trial with ``config`` (every repeat's); a file
    that cannot be deleted is left (it is only ever resumed by the same training)."""
    if directory is None:
        return
    for path in glob.glob(glob.escape(_checkpoint_stem(directory, config)) + "-r*.pt"):
        try:
            os.unlink(path)
        except OSError:
            pass
