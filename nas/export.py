"""Export a discovered architecture (or a preset) as a full model: ``python -m nas export``.

Usage:
    python -m nas export --db sqlite:///runs/nas.db --study tiny --pick knee --out exports/knee
    python -m nas export --study hybrid_conv_attn --pick best --max-macs 4e9 --out exports/b4g
    python -m nas export --study tiny --trial 7 --num-classes 10 --img-size 64 --out exports/t7
    python -m nas export --preset randformer_s12 --out exports/randformer_s12

The output directory holds ``config.yaml`` (the architecture), ``model.py`` (builds it with
only torch and timm), ``model.safetensors`` (initialised weights), ``model.torchscript.pt``,
``model.onnx`` and a ``README.md`` model card. Everything is written into a temporary directory
beside it, checked against the in-process model (ONNX in onnxruntime, TorchScript reloaded,
``model.py`` in a fresh interpreter that cannot import this project), and only then renamed
into place: a failed or interrupted export leaves nothing behind.

Picks (over the study's COMPLETE trials; ``--max-macs X`` keeps those with MACs <= X first):
``knee`` is ``nas.analysis.knee_point`` over the study's objectives; ``best`` is the highest
proxy validation accuracy, a tie going to the cheaper trial (fewer MACs, then fewer params);
trials equal in all three are an ambiguous pick, refused naming them.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas._memory import available_memory, gb, is_out_of_memory

# (not nas.errors: the CLI imports this module early)
from nas_errors import ConfigError, printable

__all__ = ["PICKS", "EXPORT_FILES", "Selection", "ExportResult", "check_out_dir", "check_name",
           "pick_trial", "select_trial", "select_preset", "export", "export_trial",
           "export_preset", "default_name"]

PICKS = ("knee", "best")
#: what an export directory holds (the marker files a --force replacement looks for first)
EXPORT_FILES = ("config.yaml", "model.py", "model.safetensors", "model.torchscript.pt",
                "model.onnx", "README.md")
#: written beside model.onnx when the weights pass ONNX's 2 GB limit (the ONNX exporter's name)
ONNX_DATA = "model.onnx.data"
#: what model.py's docstring says in its first line; an earlier export is recognised by it
EXPORT_MARK = "exported by metaformer-nas"


@dataclass(frozen=True)
class Selection:
    """What is exported, and where it came from (a study's trial, or a preset)."""

    name: str  # the model's name: timm's, and model.py's NAME
    spec: Any  # ArchSpec as searched (trial) or as defined (preset), before overrides
    how: str  # how it was chosen: "--trial 3", "--pick knee", "--preset caformer_s18"
    trial: Any = None  # db.TrialRecord
    study: Any = None  # db.StudyRecord
    trials: tuple = ()  # the study's trials (for the card's place on the front)
    preset: str | None = None
    db_url: str | None = None  # masked


@dataclass(frozen=True)
class ExportResult:
    out: Path  # the export directory
    name: str
    spec: Any  # the exported ArchSpec (num_classes, img_size applied)
    files: dict[str, int]  # file name -> bytes
    checks: dict[str, Any]  # max |diff| per runtime, ONNX opset, ...
    seconds: float  # the whole export, checks included


# --------------------------------------------------------------------------- checks (no torch)


def check_out_dir(out: str | os.PathLike[str], force: bool) -> Path:
    """``out`` as a path, if an export may be written there; else :class:`ConfigError`.

    A missing directory is fine (its parents are created). An existing one is replaced only with
    ``force``, and only if it is empty or an earlier export (its ``model.py`` says it was
    exported by metaformer-nas, it has ``config.yaml``, and it holds nothing an export does not
    write), so ``--force`` cannot delete anything else. The export checks again just before it
    moves its files into place (:func:`_move_into_place`).
    """
    if not str(out).strip():
        raise ConfigError("--out must name a directory; got an empty path")
    path = Path(os.path.abspath(out))
    try:
        _check_name_length(path)
        if not path.exists() and not path.is_symlink():
            ancestor = path.parent
            while not ancestor.exists() and ancestor != ancestor.parent:
                ancestor = ancestor.parent
            if not ancestor.is_dir():  # said now, not once torch and the database have loaded
                raise ConfigError(f"--out {out}: cannot create its folder {str(path.parent)!r}: "
                                  f"{str(ancestor)!r} is a file, not a directory")
            return path
        if path.is_symlink() or not path.is_dir():
            raise ConfigError(f"--out {out} exists and is not a directory; choose another path")
        if not force:
            raise ConfigError(f"--out {out} already exists; pass --force to replace it")
        contents = {p.name for p in path.iterdir()}
        if contents and not {"config.yaml", "model.py"} <= contents:
            raise ConfigError(f"--out {out} exists and is not an export (no config.yaml and "
                              "model.py); --force only replaces an earlier export or an empty "
                              "directory")
        if contents and not _written_by_export(path):
            raise ConfigError(f"--out {out} exists and is not an export (its model.py does not "
                              f"say '{EXPORT_MARK}'); --force only replaces an earlier export "
                              "or an empty directory")
    except OSError as e:  # e.g. a name longer than the file system allows
        raise ConfigError(f"--out {out}: {e.strerror or e}") from None
    others = sorted(contents - set(EXPORT_FILES) - {ONNX_DATA, "__pycache__"})
    if others:
        raise ConfigError(f"--out {out} holds files an export does not write ({', '.join(others)})"
                          "; move them away first: --force would delete them")
    return path


def _written_by_export(path: Path) -> bool:
    """Whether the directory ``path`` holds an export: its ``model.py`` opens with the
    docstring an export writes (:func:`_model_py_doc`) and ``config.yaml`` is a file."""
    try:
        with open(path / "model.py", encoding="utf-8", errors="replace") as f:
            first = f.readline(4096)
    except OSError:
        return False
    return first.startswith('"""') and EXPORT_MARK in first and (path / "config.yaml").is_file()


def _check_name_length(path: Path) -> None:
    """Refuse an ``--out`` whose last part leaves no room for the temporary directory the export
    writes first, beside it (``.NAME.partial-XXXXXXXX``, 18 bytes more)."""
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    n = len(os.fsencode(path.name))
    if n + 18 > limit:
        raise ConfigError(f"--out {path}: its last part is {n} bytes long; at most {limit - 18} "
                          f"here (the file system allows {limit}, and the export first writes "
                          "'.NAME.partial-XXXXXXXX' beside it)")


#: what model.py defines after portable.py's own names (nas._export_files._FOOTER; a test
#: checks the two agree)
FOOTER_NAMES = ("NAME", "CONFIG", "create_model", "_timm_entry", "warnings", "is_model",
                "model_entrypoint", "register_model")


def reserved_names() -> frozenset[str]:
    """Names ``--name`` may not take: model.py binds the name as a module-level function
    (``globals()[NAME] = ...``), so one of its own module-level names (read from
    ``nas/models/portable.py`` without importing it), a builtin or a keyword would replace
    what the file uses (``--name torch`` broke every ``torch.*`` call in it)."""
    import ast
    import builtins
    import keyword

    names = {*FOOTER_NAMES, *keyword.kwlist, *dir(builtins)}
    source = (Path(__file__).parent / "models" / "portable.py").read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return frozenset(names)


def check_name(name: str) -> str:
    """``name`` when it can be the exported model's name (timm's, and model.py's ``NAME``);
    else ConfigError, in one line, naming what is allowed."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ConfigError(f"--name must be a lowercase Python identifier (letters, digits, _); "
                          f"got {name!r}")
    if name.startswith("__") or name in reserved_names():
        raise ConfigError(f"--name {name!r} is taken: model.py defines the model under its "
                          f"name, which must not be a Python keyword, a builtin, a dunder or "
                          f"one of model.py's own names (torch, nn, build, create_model, "
                          f"...); e.g. --name {name.strip('_') or 'model'}_net")
    return name


def default_name(study: str, number: int) -> str:
    """``<study>_trial<N>`` as a lowercase identifier (timm style) that :func:`check_name`
    takes, whatever the study's name (one written by another tool may be ``../../etc``)."""
    name = re.sub(r"[^a-z0-9_]", "_", f"{study}_trial{number}".lower()).lstrip("_")
    return f"nas_{name}" if name[0].isdigit() else name


# --------------------------------------------------------------------------- choosing a trial


def pick_trial(trials: Sequence[Any], objectives: Sequence[str], *, study: str,
               trial: int | None = None, pick: str | None = None,
               max_macs: float | None = None) -> Any:
    """The trial to export among a study's ``trials`` (TrialRecords): number ``trial``, or the
    ``pick`` (module docstring) among the COMPLETE ones with MACs <= ``max_macs``."""
    if (trial is None) == (pick is None):
        raise ConfigError("give exactly one of --trial N and --pick knee|best")
    if trial is not None:
        return _numbered(trials, trial, study)
    if pick not in PICKS:
        raise ConfigError(f"--pick must be one of {', '.join(PICKS)}; got {pick!r}")
    done = [t for t in trials if t.state == "COMPLETE"]
    if not done:
        raise ConfigError(f"study '{study}' has no completed trial to pick from "
                          f"({_states(trials)})")
    if max_macs is not None:
        fits = [t for t in done if t.macs is not None and t.macs <= max_macs]
        if not fits:
            cheapest = min(done, key=lambda t: (t.macs is None, t.macs or 0))
            raise ConfigError(f"no completed trial of study '{study}' has MACs <= {max_macs:.4g}"
                              f"; the cheapest is #{cheapest.number} with {cheapest.macs:.4g}")
        done = fits
    if pick == "knee":
        from nas.analysis import knee_point

        chosen = knee_point(done, objectives)
        if chosen is None:
            objs = ", ".join(objectives)
            raise ConfigError(f"--pick knee: no completed trial of study '{study}' has every "
                              f"objective ({objs}); pick one with --trial N")
        return chosen
    return _best(done, study)


def _states(trials: Sequence[Any]) -> str:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trials"


def _numbered(trials: Sequence[Any], number: int, study: str) -> Any:
    by_number = {t.number: t for t in trials}
    t = by_number.get(number)
    if t is None:
        span = f"#{min(by_number)}-#{max(by_number)}" if by_number else "none yet"
        raise ConfigError(f"study '{study}' has no trial #{number}; its trials: {span}")
    if t.state == "COMPLETE":
        return t
    done = [f"#{x.number}" for x in trials if x.state == "COMPLETE"]
    shown = ", ".join(done[:10]) + (f", ... ({len(done)} in all)" if len(done) > 10 else "")
    why = f" ({' '.join(t.error.split())[:200]})" if t.error else ""
    hint = f"completed trials: {shown}" if done else "it has no completed trial"
    if t.state == "DUPLICATE" and t.error:
        hint = f"export the trial it repeats instead; {hint}"
    raise ConfigError(f"trial #{number} of study '{study}' is {t.state}{why}; only COMPLETE "
                      f"trials can be exported; {hint}")


def _best(done: Sequence[Any], study: str) -> Any:
    usable = [t for t in done if t.accuracy is not None]
    if not usable:
        raise ConfigError(f"--pick best: no completed trial of study '{study}' has an accuracy")

    def key(t: Any) -> tuple:
        return (-t.accuracy, t.macs if t.macs is not None else float("inf"),
                t.params_count if t.params_count is not None else float("inf"))

    usable.sort(key=key)
    tied = [t for t in usable if key(t) == key(usable[0])]
    if len(tied) > 1:
        nums = ", ".join(f"#{t.number}" for t in tied)
        raise ConfigError(f"--pick best is ambiguous in study '{study}': trials {nums} tie at "
                          f"accuracy {tied[0].accuracy:.4f}, {tied[0].macs} MACs and "
                          f"{tied[0].params_count} params; choose one with --trial N")
    return usable[0]


def select_trial(db_url: str, study: str, *, trial: int | None = None, pick: str | None = None,
                 max_macs: float | None = None, name: str | None = None) -> Selection:
    """Read the study from the database and choose the trial (:func:`pick_trial`)."""
    from db import Store, mask_url
    from nas.models import from_dict

    _require_database(db_url)
    with Store(db_url, decode_arch=from_dict, read_only=True) as store:  # creates nothing
        record = store.get_study(study)
        trials = tuple(store.trials(study))
    chosen = pick_trial(trials, record.objectives, study=study, trial=trial, pick=pick,
                        max_macs=max_macs)
    how = f"--trial {trial}" if trial is not None else f"--pick {pick}" + (
        f" --max-macs {max_macs:g}" if max_macs is not None else "")
    return Selection(name=name or default_name(study, chosen.number), spec=chosen.spec, how=how,
                     trial=chosen, study=record, trials=trials, db_url=mask_url(db_url))


def _require_database(db_url: str) -> None:
    """An export reads a database; it must not create an empty one (as the Store would)."""
    from db import sqlite_path

    path = sqlite_path(db_url)  # None: not a SQLite file, or a malformed URL the Store names
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"--db {db_url}: no such SQLite file; give the database a search "
                              "wrote (its --db, or sqlite:///<runs-dir>/nas.db)")


def select_preset(preset: str, *, name: str | None = None) -> Selection:
    from nas.models import get_preset

    return Selection(name=name or preset, spec=get_preset(preset), how=f"--preset {preset}",
                     preset=preset)


# --------------------------------------------------------------------------- the export


def export(selection: Selection, out: str | os.PathLike[str], *, num_classes: int = 1000,
           img_size: int = 224, force: bool = False, seed: int = 0,
           command: str = "", before_commit: Callable[[], None] | None = None,
           commit_guard: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
           on_commit: Callable[[Path], None] | None = None) -> ExportResult:
    """Write ``selection`` as a full model into ``out`` (module docstring); atomic.

    Args:
        selection: from :func:`select_trial` or :func:`select_preset`.
        out: the export directory (must not exist, unless ``force`` and it is an export).
        num_classes: classifier outputs of the exported model.
        img_size: input side of the exported model (grids, RandFormer matrices, costs).
        force: replace an existing export in ``out``.
        seed: torch seed of the initialised weights.
        command: the command line, quoted in the model card.
        before_commit: called once every file is written and checked, just before they are
            moved into ``out``; what it raises aborts the export with nothing written (the CLI's
            check for a Ctrl-C whose KeyboardInterrupt a library swallowed).
        commit_guard: a context manager around the move into ``out`` (the CLI's holds a stop
            signal back until the files are in place or the move failed, so a Ctrl-C cannot
            leave an earlier export moved aside).
        on_commit: called with ``out`` inside ``commit_guard``, once the files are in place.

    Returns:
        :class:`ExportResult`. Afterwards ``timm.create_model(result.name)`` works in this
        process too.

    Example:
        >>> export(select_preset("randformer_s12"), "exports/rf12", num_classes=10)
    """
    check_name(selection.name)
    import torch

    from nas import _export_files as files
    from nas._model_card import CardInfo, front_position, render_card
    from nas.models import (
        analytic_cost,
        arch_hash,
        build_model,
        runtime_config,
        to_dict,
        with_overrides,
    )
    from nas.models._timm import (
        EXPORT_PATH_ENV,
        check_timm_name,
        path_export_clash,
        register_timm,
    )

    start = time.perf_counter()
    out = check_out_dir(out, force)
    spec = with_overrides(selection.spec, num_classes=num_classes, img_size=img_size)
    # a preset under its own name is already a timm model (timm's, or registered by nas.models)
    preset_name = selection.preset is not None and selection.name == selection.preset
    if not preset_name:
        check_timm_name(selection.name)
        clash = path_export_clash(selection.name, spec)
        if clash is not None:
            warnings.warn(f"{EXPORT_PATH_ENV} has an export named {selection.name!r} in "
                          f"{clash!r}, another architecture or size: with both there, the "
                          "first keeps the name in timm (export this one with another --name "
                          "to keep both)", stacklevel=2)
    _check_portable(spec)
    config = runtime_config(spec)
    cost = analytic_cost(spec)
    _check_memory(cost, img_size, num_classes)

    try:
        with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
            torch.manual_seed(seed)
            model = build_model(spec).eval()
    except (MemoryError, RuntimeError) as e:
        _out_of_memory(e, cost, img_size, num_classes)
        raise
    try:
        created = _make_parents(out.parent)
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot create its folder {str(out.parent)!r}: "
                          f"{e.strerror or e}") from None
    tmp: Path | None = None
    try:
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        except OSError as e:
            raise ConfigError(f"--out {out}: cannot write in {str(out.parent)!r}: "
                              f"{e.strerror or e}") from None
        _check_disk(out, cost)
        origin = (f"trial #{selection.trial.number} of study "
                  f"'{printable(selection.study.name)}'"
                  if selection.trial is not None else f"preset {selection.preset}")
        header = (f"{selection.name}: {origin}, exported by metaformer-nas\n"
                  f"architecture hash {arch_hash(spec)}; build it with "
                  "nas.models.build_model(yaml.safe_load(open('config.yaml')))")
        files.write_config(tmp / "config.yaml", to_dict(spec), header)
        (tmp / "model.py").write_text(files.standalone_source(
            selection.name, config, _model_py_doc(selection.name, origin)))
        files.write_weights(tmp / "model.safetensors", model,
                            {"name": selection.name, "arch_hash": arch_hash(spec),
                             "seed": str(seed)})
        checks: dict[str, Any] = {
            "torchscript": files.write_torchscript(tmp / "model.torchscript.pt", model, config),
            "onnx": files.write_onnx(tmp / "model.onnx", model, config),
            "standalone": files.check_standalone(tmp, model, config),
        }
        position = None
        if selection.trial is not None:
            position = front_position(selection.trial, selection.trials,
                                      selection.study.objectives)
        sizes = {p.name: p.stat().st_size for p in tmp.iterdir()}
        card = CardInfo(
            name=selection.name, how=selection.how, spec=spec, cost=cost,
            searched=selection.spec, files=sizes, checks=checks, seed=seed,
            versions=_versions(), trial=selection.trial, study=selection.study,
            position=position, preset=selection.preset, db_url=selection.db_url,
            command=command,
        )
        (tmp / "README.md").write_text(render_card(card))
        _usual_permissions(tmp)
        if before_commit is not None:
            before_commit()
        with commit_guard():
            _move_into_place(tmp, out, force)
            if on_commit is not None:
                on_commit(out)
    except BaseException as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for d in reversed(created):
            with contextlib.suppress(OSError):
                d.rmdir()
        if isinstance(e, (MemoryError, RuntimeError)):
            _out_of_memory(e, cost, img_size, num_classes)
        if _disk_full(e):
            raise ConfigError(f"--out {out}: no space left in {str(out.parent)!r} while the "
                              "export was written; nothing was written") from None
        raise
    if not preset_name:
        register_timm(selection.name, spec)
    return ExportResult(out=out, name=selection.name, spec=spec,
                        files={p.name: p.stat().st_size for p in out.iterdir()}, checks=checks,
                        seconds=time.perf_counter() - start)


def export_trial(db_url: str, study: str, out: str | os.PathLike[str], *,
                 trial: int | None = None, pick: str | None = None,
                 max_macs: float | None = None, name: str | None = None,
                 **kwargs: Any) -> ExportResult:
    """:func:`select_trial` then :func:`export` (``kwargs``: num_classes, img_size, ...)."""
    check_out_dir(out, kwargs.get("force", False))
    return export(select_trial(db_url, study, trial=trial, pick=pick, max_macs=max_macs,
                               name=name), out, **kwargs)


def export_preset(preset: str, out: str | os.PathLike[str], *, name: str | None = None,
                  **kwargs: Any) -> ExportResult:
    """:func:`select_preset` then :func:`export`."""
    check_out_dir(out, kwargs.get("force", False))
    return export(select_preset(preset, name=name), out, **kwargs)


# --------------------------------------------------------------------------- helpers


def _check_memory(cost: Any, img_size: int, num_classes: int) -> None:
    """Refuse before building a model whose float32 weights alone exceed the free memory (a
    RandFormer's frozen token-mixing matrices grow with the 4th power of ``img_size``; the head
    with the number of classes)."""
    need, free = 4 * cost.params, available_memory()
    if free is not None and need > free:
        raise ConfigError(f"--img-size {img_size} and --num-classes {num_classes:,}: the "
                          f"model's weights alone need {gb(need)} ({cost.params / 1e6:,.0f} M "
                          f"params, float32), more than the {gb(free)} of memory available; "
                          "use a smaller --img-size or --num-classes")


def _check_disk(out: Path, cost: Any) -> None:
    """Refuse before writing when the disk under ``out`` has less room than the export takes:
    its weights three times (safetensors, TorchScript, ONNX, float32) and 2 MB of code, card
    and headers."""
    need = 3 * 4 * cost.params + 2 * 2**20
    try:
        usage = shutil.disk_usage(out.parent)
    except OSError:
        return
    free = usage.free
    if usage.total and need > free:  # (a pseudo file system such as /proc reports no size)
        raise ConfigError(f"--out {out}: the export needs about {need / 2**20:,.0f} MB "
                          f"({cost.params / 1e6:,.1f} M params, three copies of the weights) and "
                          f"{str(out.parent)!r} has {free / 2**20:,.0f} MB free; nothing was "
                          "written")


def _disk_full(e: BaseException) -> bool:
    """Whether ``e`` says the disk (or the user's quota) is full; some writers (safetensors)
    raise their own error type with the system's message."""
    import errno

    return (getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
            or "No space left on device" in str(e) or "Disk quota exceeded" in str(e))


def _out_of_memory(e: BaseException, cost: Any, img_size: int, num_classes: int) -> None:
    """Raise a one-line :class:`ConfigError` if ``e`` is an allocation failure."""
    if is_out_of_memory(e):
        free = available_memory()
        raise ConfigError(
            f"--img-size {img_size} and --num-classes {num_classes:,}: out of memory while "
            f"building or checking the model ({cost.params / 1e6:,.1f} M params, "
            f"{cost.acts / 1e6:,.0f} M activations per image, checked at batch 3"
            + ("" if free is None else f"; {gb(free)} available") + "); nothing was written; "
            "use a smaller --img-size or --num-classes") from None


def _check_portable(spec: Any) -> None:
    """Refuse names the stand-alone model.py cannot build (registered only in this process)."""
    from nas.models import portable

    if spec.family == "convmixer":
        used = [("activation", spec.act, portable.ACTS)]
    else:
        used = [(kind, getattr(s, field), table) for s in spec.stages
                for kind, field, table in (("token mixer", "mixer", portable.MIXERS),
                                           ("norm", "norm", portable.NORMS),
                                           ("activation", "act", portable.ACTS))]
    for kind, value, table in used:
        if value not in table:
            raise ConfigError(f"{kind} '{value}' is registered in this process but not in "
                              f"nas/models/portable.py, so model.py could not build it; "
                              f"exportable: {', '.join(sorted(table))}")


def _model_py_doc(name: str, origin: str) -> str:
    return f"""{name}: {origin}, exported by metaformer-nas; needs only torch and timm.

Usage, from this directory:

    import model                      # also registers "{name}" with timm
    from safetensors.torch import load_file
    net = model.create_model()        # the exported architecture, freshly initialised
    net.load_state_dict(load_file("model.safetensors"))
    # or: timm.create_model("{name}", pretrained=False, checkpoint_path="model.safetensors")

The model code below is metaformer-nas's nas/models/portable.py, verbatim (the project builds
its models with it); the exported architecture (CONFIG) and timm's entry point follow it.
"""


def _versions() -> dict[str, str]:
    import timm
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "timm": timm.__version__}


def _make_parents(parent: Path) -> list[Path]:
    """Create ``parent`` and its missing ancestors; the ones created, outermost first."""
    missing = []
    p = parent.absolute()
    while not p.exists():
        missing.append(p)
        p = p.parent
    parent.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def _usual_permissions(directory: Path) -> None:
    """mkdtemp makes a 0700 directory (and safetensors 0600 files): give them the umask's."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for p in directory.iterdir():
        p.chmod(0o666 & ~umask)


def _move_into_place(tmp: Path, out: Path, force: bool) -> None:
    """Rename ``tmp`` to ``out``; an earlier export there is moved aside first and deleted only
    once the new one is in place.

    ``out`` is checked again first (:func:`check_out_dir`): something may have appeared there
    while the export ran (another export into the same folder, another program). Without
    ``force`` it is left as it is and the export refused; with it, only an earlier export is
    replaced, checked once more after it was moved aside (a rename replaces nothing that is
    not empty).
    """
    appeared = (f"--out {out} appeared while the export ran (another export or another program "
                "wrote it); it was left as it is and nothing was written")
    there = out.exists() or out.is_symlink()
    if there and not force:
        raise ConfigError(appeared)
    if there:
        check_out_dir(out, force=True)  # only an earlier export is replaced
    else:
        try:
            os.rename(tmp, out)  # fails on a non-empty directory or a file that appeared since
        except OSError as e:
            raise ConfigError(f"{appeared} ({e.strerror or e})") from None
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    moved = aside / out.name
    try:
        os.rename(out, moved)
    except OSError as e:
        aside.rmdir()
        raise ConfigError(f"{appeared} ({e.strerror or e})") from None
    try:
        try:
            check_out_dir(moved, force=True)  # what was moved is still an earlier export
        except ConfigError:
            raise ConfigError(appeared) from None
        os.rename(tmp, out)
    except BaseException as e:
        try:
            os.rename(moved, out)
            aside.rmdir()
        except OSError:
            raise ConfigError(f"{appeared}; what was there is kept in {moved}") from None
        if isinstance(e, OSError):
            raise ConfigError(f"{appeared} ({e.strerror or e})") from None
        raise
    shutil.rmtree(aside, ignore_errors=True)
