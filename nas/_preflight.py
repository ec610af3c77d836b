"""What a search checks before it starts anything: its settings, and whether a resume is one.

Two rules, both applied before Ray, Optuna or a training step starts (one line, exit 2):

- :func:`check_settings`: every number, name and choice of a :class:`~nas.search.SearchConfig`
  is in range (pure; no files, no database).
- :func:`check_resume`: a run continuing an existing study must train and score trials the way
  the study's first run did. The settings in :data:`MEANING` change what a trial's accuracy *is*
  (more epochs, other data, another resolution); mixing them puts incomparable numbers on one
  front, so a change is refused unless ``--allow-change``. The sampler, its seed, the budget and
  the placement may change freely: they choose *which* trials run, not what a trial measures.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from nas.errors import ConfigError
from nas.results import RUNG_METRICS, epoch_text, parse_zero_cost

__all__ = ["MEANING", "STUDY_NAME_MAX", "STUDY_NAME_RULE", "SEED_MAX", "check_settings",
           "check_study_name", "meaning_changes", "check_resume", "INHERITABLE",
           "inherit_settings", "as_option", "may_hold_studies"]

STUDY_NAME_MAX = 100  # characters; names appear in paths, Ray run names and table cells
STUDY_NAME_RULE = (f"1..{STUDY_NAME_MAX} characters of letters, digits, '.', '_' or '-', "
                   "starting with a letter or digit")
_STUDY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
SEED_MAX = 2**32 - 1  # numpy and Optuna's samplers take 32-bit seeds

#: Resolved-configuration keys that define what a trial measures: (key path, what to call it).
#: ``proxy`` is the space's reduction to the trained proxy (its resolution included); the dataset
#: is named, hashed (user data) and sized, so the same name over other files is a change too.
MEANING: tuple[tuple[str, str], ...] = (
    ("epochs", "--epochs"),
    ("batch_size", "--batch-size"),
    ("lr", "--lr"),
    ("repeats", "--repeats"),
    ("dataset", "--dataset"),
    ("dataset_hash", "the --data-path contents"),
    ("dataset_sizes", "the dataset's train/val/test sizes"),
    ("dataset_resolution", "the dataset's resolution"),
    ("proxy", "the space's proxy reduction (width, depth, resolution, stem)"),
)


def _int(value: Any, flag: str, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
            high is not None and value > high):
        allowed = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"
        raise ConfigError(f"{flag} must be {allowed}; got {value!r}")


def check_study_name(name: str) -> str:
    """``name`` if it is a usable study name, else ConfigError naming what is allowed."""
    if not isinstance(name, str) or len(name) > STUDY_NAME_MAX or not _STUDY_NAME_RE.match(name):
        shown = repr(name) if not isinstance(name, str) or len(name) <= 40 else \
            f"{name[:37]!r}... ({len(name)} characters)"
        raise ConfigError(f"--study must be {STUDY_NAME_RULE}; got {shown}")
    return name


def check_settings(cfg: Any, *, resolved: bool = False) -> None:
    """Range checks of a SearchConfig's own fields; ConfigError (one line) at the first bad one.

    A setting that depends on another (ASHA's first rung below ``--epochs``) is checked only
    once both are known: at once if neither is to be taken from the study
    (``cfg.inherit``), else when ``resolved`` (after :func:`inherit_settings`)."""
    _int(cfg.budget, "--budget", 1, 1_000_000)
    _int(cfg.epochs, "--epochs", 1, 10_000)
    _int(cfg.repeats, "--repeats", 1, 100)
    _int(cfg.batch_size, "--batch-size", 1)
    _int(cfg.seed, "--seed", 0, SEED_MAX)
    if cfg.max_concurrent is not None:
        _int(cfg.max_concurrent, "--max-concurrent", 1)
    if cfg.max_failures is not None:
        _int(cfg.max_failures, "max_failures", 0)
    for flag, value, low in (("--cpus-per-trial", cfg.cpus_per_trial, False),
                             ("--gpus-per-trial", cfg.gpus_per_trial, True)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value < 0
                                  or (value == 0 and not low)):
            raise ConfigError(f"{flag} must be a finite number {'>= 0' if low else '> 0'}; "
                              f"got {value!r}")
    if cfg.executor not in ("ray", "local"):
        raise ConfigError(f"--executor must be ray or local; got {cfg.executor!r}")
    if cfg.executor == "local" and cfg.ray_address:
        raise ConfigError("--executor local runs trials in this process; it cannot be "
                          "combined with --ray-address")
    if cfg.executor == "local" and (cfg.max_concurrent or 1) > 1:
        raise ConfigError(f"--executor local runs one trial at a time, in this process; "
                          f"--max-concurrent {cfg.max_concurrent} needs --executor ray (the "
                          "default), or leave it out")
    if cfg.ray_address is not None:
        ray_endpoint(cfg.ray_address)
    if isinstance(cfg.lr, bool) or not isinstance(cfg.lr, (int, float)) or not (
            math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ConfigError(f"--lr must be a finite number > 0; got {cfg.lr!r}")
    if cfg.study is not None:
        check_study_name(cfg.study)
    every = cfg.progress_every
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not (
            math.isfinite(every) and every >= 0):
        raise ConfigError(f"--progress-every must be a number of seconds >= 0; got {every!r}")
    if cfg.scheduler not in ("fifo", "asha"):
        raise ConfigError(f"--scheduler must be fifo or asha; got {cfg.scheduler!r}")
    # the ASHA settings are checked under any scheduler: a bad value is a typo either way
    _int(cfg.asha_eta, "--asha-eta", 2, 100)
    r_min = cfg.asha_min_epochs
    if isinstance(r_min, bool) or not isinstance(r_min, (int, float)) or not (
            math.isfinite(r_min) and r_min >= 0.01):
        raise ConfigError(f"--asha-min-epochs must be a number of epochs >= 0.01 (a fraction "
                          f"such as 0.25 judges mid-epoch); got {r_min!r}")
    if not isinstance(cfg.trial_checkpoints, bool):
        raise ConfigError(f"trial_checkpoints must be true or false; got "
                          f"{cfg.trial_checkpoints!r}")
    if not isinstance(cfg.asha_late_rung, bool):
        raise ConfigError(f"asha_late_rung must be true or false; got {cfg.asha_late_rung!r}")
    if cfg.asha_metric not in RUNG_METRICS:
        raise ConfigError(f"--asha-metric must be one of {', '.join(RUNG_METRICS)}; "
                          f"got {cfg.asha_metric!r}")
    inherit = getattr(cfg, "inherit", ())
    if not isinstance(inherit, (tuple, list, frozenset, set)) or any(
            name not in INHERITABLE for name in inherit):
        raise ConfigError(f"inherit must be a tuple of names from {', '.join(INHERITABLE)}; "
                          f"got {inherit!r}")
    if not resolved and _RUNG_SETTINGS & set(inherit):
        return  # judged with the study's values, once they are taken
    if cfg.scheduler == "asha" and r_min >= cfg.epochs:
        raise ConfigError(f"--scheduler asha needs a rung below the last epoch: "
                          f"--asha-min-epochs ({r_min:g}) must be < --epochs ({cfg.epochs})")


#: --ray-address values Ray resolves itself (auto: the cluster running on this machine)
RAY_ADDRESS_WORDS = ("auto",)


def ray_endpoint(address: Any) -> tuple[str, int] | None:
    """(host, port) of a ``--ray-address`` (``HOST:PORT``, ``[IPv6]:PORT`` or
    ``ray://HOST:PORT``); None for ``auto``. A malformed one is a ConfigError."""
    allowed = ("--ray-address must be HOST:PORT of a running Ray cluster's head (port "
               "1-65535; ray://HOST:PORT for Ray Client, or auto)")
    if not isinstance(address, str) or not address.strip():
        raise ConfigError(f"{allowed}; got {address!r}")
    text = address.strip()
    if text in RAY_ADDRESS_WORDS:
        return None
    rest = text.removeprefix("ray://")
    host, colon, port = rest.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if (not colon or not host or not re.fullmatch(r"[0-9]{1,5}", port)  # (not "²")
            or not 1 <= int(port) <= 65535
            or any(c in host for c in "/[]@ \t") or ("://" in rest)):
        raise ConfigError(f"{allowed}; got {address!r}")
    return host, int(port)


def _get(config: Mapping[str, Any], path: str) -> Any:
    value: Any = config
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


_MISSING = object()


def _changed(stored: Mapping[str, Any], new: Mapping[str, Any]
             ) -> list[tuple[str, Any, Any]]:
    """(what, stored value, new value) of each :data:`MEANING` setting that differs; keys either
    config lacks (a study recorded by an older version) are not compared."""
    out = []
    for path, what in MEANING:
        old, cur = _get(stored, path), _get(new, path)
        if old is _MISSING or cur is _MISSING:
            continue
        if isinstance(old, (list, tuple)) and isinstance(cur, (list, tuple)):
            old, cur = list(old), list(cur)
        if old != cur:
            out.append((what, old, cur))
    return out


def meaning_changes(stored: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The :data:`MEANING` settings that differ, as ``"--epochs 3 -> 1"``."""
    return [f"{what} {old!r} -> {cur!r}" for what, old, cur in _changed(stored, new)]


def check_resume(study: str, stored: Mapping[str, Any], new: Mapping[str, Any],
                 allow_change: bool, *, inherits: bool = False) -> list[str]:
    """The meaning changes of a resume; ConfigError naming them (and the flags that restore the
    study's settings) unless ``allow_change``. ``inherits``: options left out take the study's
    values (the command line), so the remedy is to give the study's value or none."""
    changes = meaning_changes(stored, new)
    if changes and not allow_change:
        flags = [f"{what} {shlex.quote(str(old))}" for what, old, _ in _changed(stored, new)
                 if what.startswith("--")]
        again = ""
        if flags and inherits:
            again = (f" (give {' '.join(flags)}, or leave {'it' if len(flags) == 1 else 'them'}"
                     f" out: a resumed study takes its own)")
        elif flags:
            again = f" (add {' '.join(flags)})"
        raise ConfigError(
            f"study '{study}' was searched with other settings that change what a trial "
            f"measures ({'; '.join(changes)}); re-run with the study's settings{again}, use "
            f"another --study, or pass --allow-change to mix them")
    return changes


#: What a study's earlier runs decide for a run that continues it, unless the run sets it (the
#: command line: the options it leaves out; ``SearchConfig.inherit`` names them). What a trial
#: measures comes from the study's first run, which :func:`check_resume` holds
#: every run to, so a plain re-run is never refused; how the search goes on (budget, sampler,
#: scheduler, ...) from its latest run. Placement, paths, the database and the output stay the
#: machine's and the user's business.
INHERITABLE = ("budget", "seed", "epochs", "batch_size", "lr", "repeats", "compile", "sampler",
               "dataset", "data_path", "zero_cost", "prescreen", "scheduler", "asha_eta",
               "asha_min_epochs", "asha_metric", "asha_late_rung", "trial_checkpoints")
#: the options of :data:`MEANING`, and the dataset's input, which its hash stands for there
_MEASURED = frozenset([path for path, what in MEANING if what.startswith("--")] + ["data_path"])
_RUNG_SETTINGS = frozenset({"scheduler", "asha_min_epochs", "epochs"})  # checked together


def may_hold_studies(url: str) -> bool:
    """False where the database surely holds no study yet (a SQLite file not there), so a
    refused first run creates no file."""
    from db import sqlite_path

    path = sqlite_path(url)
    return path is None or path.is_file()


def inherit_settings(cfg: Any, store, name: str, space_hashes: Sequence[str]
                     ) -> tuple[Any, list[str]]:
    """``cfg`` with each field of ``cfg.inherit`` taken from study ``name``'s earlier runs (see
    :data:`INHERITABLE`), and those that changed, as the options that would set them. A new
    study, or one of another space (none of ``space_hashes``: refused later, by name), takes
    nothing."""
    study = next((s for s in store.list_studies() if s.name == name), None)
    if study is None or study.space_hash not in space_hashes:
        return cfg, []
    latest = next((r.config for r in reversed(store.runs(study.id)) if r.config), study.config)
    taken: dict[str, Any] = {}
    for field in INHERITABLE:
        source = study.config if field in _MEASURED else latest
        if field not in cfg.inherit or field not in source:
            continue
        if field == "data_path" and taken.get("dataset", cfg.dataset) != study.config.get(
                "dataset"):  # another dataset was given: the study's files are not its input
            continue
        value = source[field]
        if field == "zero_cost":  # stored as a list (JSON), or as the string an API user gave
            value = parse_zero_cost(value)
        if value != getattr(cfg, field):
            taken[field] = value
    # the first run's epochs and the latest run's first rung can clash (a run between them
    # changed --epochs with --allow-change), or the typed --epochs with the study's rung: the
    # rung is then not taken, and the default one (1/3 epoch) applies
    after = dataclasses.replace(cfg, **taken)
    if ("asha_min_epochs" in taken and after.scheduler == "asha"
            and after.asha_min_epochs >= after.epochs):
        del taken["asha_min_epochs"]
    return dataclasses.replace(cfg, **taken), [as_option(k, v) for k, v in taken.items()]


def as_option(field: str, value: Any) -> str:
    """The command-line option that sets ``field`` to ``value``: ``--epochs 2``,
    ``--no-asha-late-rung``, ``--zero-cost synflow,naswot``, ``--prescreen none``."""
    flag = "--" + field.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else f"--no-{flag[2:]}"
    if value is None or value == ():
        return f"{flag} none" if field in ("zero_cost", "prescreen") else f"no {flag}"
    if isinstance(value, tuple):
        value = ",".join(value)
    elif field == "asha_min_epochs" and float(epoch_text(value)) != value:
        ratio = Fraction(value).limit_denominator(1000)  # 1/3 as the CLI takes it, not 0.333
        value = f"{ratio.numerator}/{ratio.denominator}" if float(ratio) == value else value
    elif field == "asha_min_epochs":
        value = epoch_text(value)
    return f"{flag} {shlex.quote(str(value))}"
