"""The results store: studies and trials of a search, in SQLite or PostgreSQL."""

from __future__ import annotations

import math
import numbers
import operator
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import case, false, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db._engine import (
    WRITE_OPTION,
    damaged,
    mask_url,
    needs_immutable,
    normalize_url,
    open_engine,
    sqlite_damage,
    sqlite_path,
)
from db._jsonable import to_json_object
from db._models import HASH_LEN, NAME_LEN, URL_LEN, RunModel, StudyModel, TrialModel
from db._retry import retrying as _retrying
from db._runs import (
    LEASE_LIMIT_KEY,
    abandoned_message,
    busy_message,
    check_argv,
    check_pid,
    check_seconds,
    lease_limit,
    mask_secrets,
    run_record,
)
from db._schema import check_revision, current_revision, upgrade_connection
from db._session import transaction
from db.errors import DatabaseGoneError, StorageError, StudyBusyError
from db.records import (
    RUN_OUTCOMES,
    TERMINAL_STATES,
    TRIAL_STATES,
    RunRecord,
    StudyActivity,
    StudyRecord,
    TrialRecord,
)

__all__ = ["Store", "default_url"]

_T = TypeVar("_T")
_OBJECTIVE_RE = re.compile(r"^[^:\s]+:(max|min)$")
_MAX_NAMES_IN_MESSAGE = 20
_LEASE_TRIES = 3


class _LostRace(Exception):
    """The lease changed between reading and writing it; the transaction is tried again."""


def default_url(runs_dir: str | os.PathLike[str] = "runs", *, create: bool = True) -> str:
    """``sqlite:///<absolute runs_dir>/nas.db``; creates ``runs_dir`` if it does not exist
    (unless ``create`` is False: for readers, which must not write anything)."""
    path = Path(runs_dir).expanduser().resolve()
    if not create:
        return _sqlite_url(path / "nas.db")
    if path.exists() and not path.is_dir():
        raise StorageError(f"runs directory {str(path)!r} is a file, not a directory; give "
                           "--runs-dir a directory (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"cannot create runs directory {str(path)!r}: {e.strerror or e}") from e
    return _sqlite_url(path / "nas.db")


def _sqlite_url(path: Path) -> str:
    """``sqlite:///<path>``, readable as it is: only the characters a URL would read otherwise
    (``%`` decoded, ``?`` starting a query) are escaped, so the file is ``path`` whatever the
    folder is called."""
    return "sqlite:///" + str(path).replace("%", "%25").replace("?", "%3F")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


# --------------------------------------------------------------------------- argument checks


def _check_id(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {value!r}")
    return value


def _check_text(value: object, what: str, max_len: int) -> str:
    if not isinstance(value, str) or not value or value != value.strip() or len(value) > max_len:
        raise ValueError(
            f"{what} must be a non-empty string of at most {max_len} characters without "
            f"leading/trailing whitespace, got {value!r}"
        )
    return value


def _check_objectives(objectives: Sequence[str]) -> tuple[str, ...]:
    if isinstance(objectives, str) or not isinstance(objectives, Sequence) or not objectives:
        raise ValueError(
            f"objectives must be a non-empty sequence of 'name:max' or 'name:min' strings, "
            f"got {objectives!r}"
        )
    for obj in objectives:
        if not isinstance(obj, str) or not _OBJECTIVE_RE.match(obj):
            raise ValueError(
                f"objective {obj!r} is malformed; allowed: 'name:max' or 'name:min' "
                f"(e.g. 'accuracy:max', 'macs:min')"
            )
    names = [o.split(":", 1)[0] for o in objectives]
    if len(set(names)) != len(names):
        raise ValueError(f"objectives name the same metric twice: {tuple(objectives)!r}")
    return tuple(objectives)


def _check_states(states: Iterable[str], what: str, allowed: tuple[str, ...]) -> list[str]:
    if isinstance(states, str):
        states = [states]
    result = list(states)
    for state in result:
        if state not in allowed:
            raise ValueError(
                f"{what} {state!r} is not a trial state; allowed: {', '.join(allowed)}"
            )
    return result


def _check_accuracy(value: float | None, what: str = "accuracy") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} must be a finite number or None, got {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{what} must be a finite number or None, got {value!r}")
    return result


def _check_count(value: int | None, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a non-negative integer or None, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(
                f"{what} must be a non-negative integer or None, got {value!r} (round it first)"
            )
        result = int(value)
    else:
        try:
            result = operator.index(value)  # int, numpy integers
        except TypeError:
            raise ValueError(
                f"{what} must be a non-negative integer or None, got {value!r}"
            ) from None
    if result < 0 or result >= 2**63:
        raise ValueError(f"{what} must be a non-negative integer below 2**63, got {value!r}")
    return result


# --------------------------------------------------------------------------- row -> record


def _check_study_as(now: StudyRecord, study_as: StudyRecord) -> None:
    if (now.id, now.space_hash, tuple(now.objectives), now.config) != (
            study_as.id, study_as.space_hash, tuple(study_as.objectives), study_as.config):
        raise StorageError(
            f"study {study_as.name!r} was given another search space, objectives or settings "
            "by a run that started at the same time (it held no trial yet); re-run the "
            "command, or use another --study")


def _study_record(row: StudyModel) -> StudyRecord:
    return StudyRecord(
        id=row.id,
        name=row.name,
        space=row.space,
        space_hash=row.space_hash,
        objectives=tuple(row.objectives),
        config=dict(row.config),
        created_at=row.created_at,
    )


def _read_float(value: Any, what: str) -> float | None:
    """A stored number as :func:`_check_accuracy` takes it (a float goes the quick way)."""
    if value is None or (type(value) is float and math.isfinite(value)):
        return value
    return _check_accuracy(value, what)


def _read_count(value: Any, what: str) -> int | None:
    """A stored count as :func:`_check_count` takes it (an int goes the quick way)."""
    if value is None or (type(value) is int and 0 <= value < 2**63):
        return value
    return _check_count(value, what)


#: what a trial row whose JSON, architecture or numbers were changed by hand raises when it loads
_UNREADABLE = (ValueError, TypeError, KeyError, AttributeError)


def _trial_record(row: TrialModel, decode_arch: Callable[[dict[str, Any]], Any] | None = None
                  ) -> TrialRecord:
    arch = dict(row.arch)
    return TrialRecord(
        id=row.id,
        study_id=row.study_id,
        number=row.number,
        key=row.key,
        arch_hash=row.arch_hash,
        arch=arch,
        params=dict(row.params),
        state=row.state,
        accuracy=_read_float(row.accuracy, "accuracy"),  # (checked as when written: a
        accuracy_se=_read_float(row.accuracy_se, "accuracy_se"),  # value changed by hand,
        test_accuracy=_read_float(row.test_accuracy, "test_accuracy"),  # text or a negative
        macs=_read_count(row.macs, "macs"),  # count, is refused in one line, not a
        params_count=_read_count(row.params_count, "params_count"),  # traceback later)
        metrics=dict(row.metrics),
        error=row.error,
        started_at=row.started_at,
        finished_at=row.finished_at,
        duration_s=_read_float(row.duration_s, "duration_s"),
        spec=None if decode_arch is None else decode_arch(arch),
        run_id=row.run_id,
    )


# --------------------------------------------------------------------------- the store


def _remove_empty(path: Path) -> None:
    """Remove the SQLite file this process just created if it and its side files are still
    empty (its first write was refused, e.g. on a full disk): a file another process has
    written to meanwhile (in WAL mode its first pages are in ``-wal``) stays."""
    files = [path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))]
    try:
        if any(f.stat().st_size for f in files if f.exists()):
            return
        for f in files:
            f.unlink(missing_ok=True)
    except OSError:
        pass


def _file_identity(path: Path | None) -> tuple[int, int] | None:
    """(device, inode) of a SQLite file; None for a server, or a file that is not there."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class Store:
    """All studies and trials of the NAS engine, in one SQL database.

    ``url`` is any SQLAlchemy URL; SQLite (default, see :func:`default_url`) and PostgreSQL are
    supported.  Tables (all prefixed ``nas_``) are created if missing, so Optuna's own RDB tables
    may live in the same database.  Every public method is one transaction: committed on return,
    rolled back on error; database failures raise :class:`StorageError`, bad arguments
    ``ValueError``/``TypeError``.  Results are frozen records, never live ORM rows.  Safe to use
    from several threads; one writing process at a time, any number of readers.

    ``read_only=True`` opens the database for reading only (the dashboard and the report): the
    database itself refuses writes (SQLite ``mode=ro``, PostgreSQL
    ``default_transaction_read_only``), every writing method raises StorageError before it
    starts, nothing is created (a missing SQLite file or an empty database is a StorageError)
    and SQLite's journal mode is left as it is.
    """

    url: str

    def __init__(self, url: str, *, echo: bool = False,
                 decode_arch: Callable[[dict[str, Any]], Any] | None = None,
                 read_only: bool = False) -> None:
        self.url = url
        self.read_only = read_only
        self._decode = decode_arch  # e.g. nas.models.from_dict: records then hold `spec`
        self._masked = mask_url(url)
        self._closed = False
        self.immutable = False  # read-only SQLite opened with immutable=1 (see below)
        self.reached = False  # the server answered once (db._retry waits out an outage then)
        self.outage_key = normalize_url(url)  # whose outage clock its waits share (db._retry)
        #: how many times this read-only Store followed its SQLite file being replaced (``mv``):
        #: what a reader cached from the old file is not part of the new one
        self.file_generation = 0
        if not read_only and len(self._masked) > URL_LEN:  # before anything is written
            raise StorageError(f"the database URL is {len(self._masked):,} characters long; "
                               f"each run records it, in at most {URL_LEN:,}: shorten it "
                               f"(its start: {self._masked[:60]}...)")
        path = sqlite_path(url)  # StorageError for a folder
        if read_only and path is not None and not path.is_file():
            raise StorageError(f"no database at {self._masked}: {str(path)!r} does not exist "
                               f"(a search creates it; give --db or --runs-dir)")
        created = path is not None and not read_only and not path.exists()
        self._connect(url, echo, read_only)
        try:
            try:
                self._open_schema()
            except StorageError as e:
                if not (read_only and self._engine.dialect.name == "sqlite"
                        and needs_immutable(e, path)):
                    raise
                # a WAL database in a folder this user cannot write: read the file as it is
                self._engine.dispose()
                self._connect(url, echo, read_only=True, immutable=True)
                self.immutable = True
                self._open_schema()
        except BaseException as e:
            self._engine.dispose()
            if created:
                _remove_empty(path)  # (a full disk): a refused first open leaves no file
            if isinstance(e, StorageError) and self._engine.dialect.name == "sqlite" and \
                    not read_only and ("unable to open" in str(e) or "readonly" in str(e)):
                hint = " (for SQLite the directory must exist and be writable)"
                raise StorageError(f"{e}{hint}") from e.__cause__
            raise
        self.reached = True  # from now on a lost connection is a restart to wait for
        self._path = path  # the SQLite file (None on a server)
        self._identity = _file_identity(path)  # which file it is: a deleted or replaced one is
        #                                        told apart from the one opened (_check_file)

    def _connect(self, url: str, echo: bool, read_only: bool, immutable: bool = False) -> None:
        """The engine and the reading and writing session factories over it."""
        self._engine = open_engine(url, echo=echo, read_only=read_only, immutable=immutable)
        self._reader = sessionmaker(self._engine, expire_on_commit=False)
        self._writer = sessionmaker(
            self._engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False
        )

    @_retrying
    def _open_schema(self) -> None:
        """Create the tables in an empty database; SchemaError if its schema is not the head."""
        with self._tx("opening the database", write=False) as session:
            rev, _ = current_revision(session.connection())
            damage = sqlite_damage(session.connection()) if rev is not None else None
        if damage is not None:
            raise damaged(self._masked, damage)
        check_revision(rev, self._masked)
        if rev is None and self.read_only:
            raise StorageError(f"database {self._masked} holds no metaformer-nas tables yet "
                               f"(a search creates them)")
        if rev is None:
            with self._tx("creating tables", write=True) as session:
                upgrade_connection(session.connection(), self._masked)

    # ----------------------------------------------------------------- plumbing

    def __repr__(self) -> str:
        flags = (", read-only" if self.read_only else "") + (", closed" if self._closed else "")
        return f"Store({self._masked!r}{flags})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def stop_waiting(self) -> None:
        """From now on a lost connection is an error after a few quick tries, not an outage
        waited out for ``$NAS_DB_OUTAGE_S`` (for a run that already waited once and is ending)."""
        self.reached = False

    def close(self) -> None:
        """Release all connections.  Further calls on this Store raise StorageError."""
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    @contextmanager
    def _tx(self, what: str, *, write: bool) -> Iterator[Session]:
        if self._closed:
            raise StorageError(f"{what} failed: the Store for {self._masked} is closed")
        if write and self.read_only:
            raise StorageError(f"{what} refused: the Store for {self._masked} is read-only")
        if getattr(self, "_identity", None) is not None:
            self._check_file(what, write)
        factory = self._writer if write else self._reader
        with transaction(factory, url=self.url, what=what) as session:
            yield session

    def _check_file(self, what: str, write: bool) -> None:
        """DatabaseGoneError when the SQLite file was deleted since it was opened, or replaced
        (``mv``) under a writing Store: its connections would go on with the old file, which no
        one reads. A read-only Store follows a replaced file: it reopens, and reads the new one.
        """
        identity = _file_identity(self._path)
        if identity == self._identity:
            return
        if identity is None:
            raise DatabaseGoneError(f"{what} failed: the database file {str(self._path)!r} was "
                                    "deleted or moved while open; nothing more can be read or "
                                    "written there")
        if write or not self.read_only:
            raise DatabaseGoneError(f"{what} failed: the database file {str(self._path)!r} was "
                                    "replaced by another file while open; not writing to the "
                                    "old one, which no one reads")
        self._engine.dispose()  # its connections are to the old file: new ones open the new
        self._identity = identity
        self.file_generation += 1
        self._open_schema()  # which may not be a metaformer-nas database at all

    @staticmethod
    def _retry_on_conflict(attempt: Callable[[], _T], tries: int = 3) -> _T:
        """Run ``attempt``; if it lost a race on a unique constraint, run it again.

        A new attempt sees the competing, committed row (the same trial key or study name) or
        the next free trial number.  Only matters with concurrent writers (SQLite serialises
        writers anyway; PostgreSQL runs READ COMMITTED).
        """
        for _ in range(tries - 1):
            try:
                return attempt()
            except StorageError as e:
                if not isinstance(e.__cause__, IntegrityError):
                    raise
        return attempt()

    def _study_names(self, session: Session) -> str:
        names = list(
            session.scalars(
                select(StudyModel.name).order_by(StudyModel.id).limit(_MAX_NAMES_IN_MESSAGE + 1)
            )
        )
        if not names:
            return "there are no studies yet"
        shown = ", ".join(repr(n) for n in names[:_MAX_NAMES_IN_MESSAGE])
        more = ", ..." if len(names) > _MAX_NAMES_IN_MESSAGE else ""
        return f"existing studies: {shown}{more}"

    def _resolve_study(
        self, session: Session, study: str | int, *, for_update: bool = False
    ) -> StudyModel:
        if isinstance(study, bool) or not isinstance(study, (str, int)):
            raise TypeError(f"study must be a study name (str) or id (int), got {study!r}")
        if isinstance(study, int):
            row = session.get(StudyModel, study, with_for_update=for_update)
            if row is None:
                raise StorageError(
                    f"no study with id {study} in {self._masked}; {self._study_names(session)}"
                )
            return row
        row = session.scalars(select(StudyModel).where(StudyModel.name == study)).one_or_none()
        if row is None:
            raise StorageError(
                f"no study named {study!r} in {self._masked}; {self._study_names(session)}"
            )
        return row

    # ----------------------------------------------------------------- studies

    @_retrying
    def get_or_create_study(
        self,
        name: str,
        *,
        space: str,
        space_hash: str,
        objectives: Sequence[str],
        config: Mapping[str, Any],
        former_hashes: Sequence[str] = (),
    ) -> StudyRecord:
        """The study called ``name``, created if missing.

        An existing study is returned unchanged (its stored ``config`` is the first run's), but
        only if it is for the same search space (``space_hash``, or one of ``former_hashes``:
        what an earlier version of the program hashed the same space to, then rewritten to
        ``space_hash``) and the same objectives; otherwise StorageError, as resuming it would
        mix incomparable trials. A study that holds
        no trial and no running run (its first run was refused or stopped before any trial,
        e.g. by a placement error or Ctrl-C during start-up) takes ``space``, ``space_hash``,
        ``objectives`` and ``config`` instead: nothing was measured under the old ones, so it
        holds no one to them.
        """
        _check_text(name, "study name", NAME_LEN)
        _check_text(space, "space", NAME_LEN)
        _check_text(space_hash, "space_hash", HASH_LEN)
        objs = _check_objectives(objectives)
        config_json = to_json_object(config, "config")

        def attempt() -> StudyRecord:
            with self._tx("get_or_create_study", write=True) as session:
                row = session.scalars(
                    select(StudyModel).where(StudyModel.name == name)
                ).one_or_none()
                if row is not None and row.space_hash in former_hashes:
                    row.space_hash = space_hash  # the same space, by the current hash
                if row is None:
                    row = StudyModel(
                        name=name,
                        space=space,
                        space_hash=space_hash,
                        objectives=list(objs),
                        config=config_json,
                        created_at=_utcnow(),
                    )
                    session.add(row)
                    session.flush()
                elif (row.space_hash != space_hash or tuple(row.objectives) != objs
                      or row.config != config_json) and not session.scalar(
                        select(func.count()).select_from(TrialModel)
                        .where(TrialModel.study_id == row.id)) and not session.scalar(
                        select(func.count()).select_from(RunModel)
                        .where(RunModel.study_id == row.id, RunModel.outcome == "running")):
                    # never searched: the new space, objectives and settings are its first
                    row.space, row.space_hash = space, space_hash
                    row.objectives, row.config = list(objs), config_json
                elif row.space_hash != space_hash:
                    raise StorageError(
                        f"study {name!r} already exists for another search space "
                        f"({row.space!r}, space_hash {row.space_hash}, not {space!r}, "
                        f"space_hash {space_hash}); pick another --study name"
                    )
                elif tuple(row.objectives) != objs:
                    raise StorageError(
                        f"study {name!r} already exists with objectives {tuple(row.objectives)}, "
                        f"not {objs}; pick another --study name"
                    )
                return _study_record(row)

        return self._retry_on_conflict(attempt)

    def check_study_as(self, study_as: StudyRecord) -> None:
        """StorageError if study ``study_as.id`` no longer has ``study_as``'s space, objectives
        or settings: a run starting at the same moment gave it, still empty, its own (see
        :meth:`begin_run`, which checks the same atomically). For what a run does before its
        lease (its Optuna study)."""
        _check_study_as(self.get_study(study_as.name), study_as)

    @_retrying
    def get_study(self, name: str) -> StudyRecord:
        """The study called ``name``; StorageError (listing the existing names) if unknown."""
        with self._tx("get_study", write=False) as session:
            return _study_record(self._resolve_study(session, name))

    @_retrying
    def list_studies(self) -> list[StudyRecord]:
        """All studies, oldest first."""
        with self._tx("list_studies", write=False) as session:
            rows = session.scalars(select(StudyModel).order_by(StudyModel.id))
            return [_study_record(r) for r in rows]

    # ----------------------------------------------------------------- trials

    @_retrying
    def start_trial(
        self,
        study_id: int,
        *,
        key: str,
        arch_hash: str,
        arch: Mapping[str, Any],
        params: Mapping[str, Any],
        run_id: int | None = None,
    ) -> TrialRecord:
        """Record a RUNNING trial numbered next in its study; idempotent on ``(study_id, key)``.

        If the key already exists (a resumed search re-submitting a trial), the stored trial is
        returned unchanged, whatever its state; a different ``arch_hash`` for the same key is a
        StorageError (a key must identify one architecture).  ``run_id`` (RunRecord.id) names
        the run that started it.
        """
        if isinstance(study_id, bool) or not isinstance(study_id, int):
            raise TypeError(f"study_id must be an int (StudyRecord.id), got {study_id!r}")
        if run_id is not None and (isinstance(run_id, bool) or not isinstance(run_id, int)):
            raise TypeError(f"run_id must be an int (RunRecord.id) or None, got {run_id!r}")
        _check_text(key, "trial key", NAME_LEN)
        _check_text(arch_hash, "arch_hash", HASH_LEN)
        arch_json = to_json_object(arch, "arch")
        params_json = to_json_object(params, "params")

        def attempt() -> TrialRecord:
            with self._tx("start_trial", write=True) as session:
                # Lock the study row: concurrent start_trial calls of one study queue here, so
                # "max(number) + 1" below is safe (PostgreSQL; SQLite's BEGIN IMMEDIATE already
                # serialises writers and ignores FOR UPDATE).
                study = self._resolve_study(session, study_id, for_update=True)
                row = session.scalars(
                    select(TrialModel).where(
                        TrialModel.study_id == study_id, TrialModel.key == key
                    )
                ).one_or_none()
                if row is not None:
                    if row.arch_hash != arch_hash:
                        raise StorageError(
                            f"trial key {key!r} of study {study.name!r} already belongs to trial "
                            f"{row.number} with arch_hash {row.arch_hash}, not {arch_hash}; "
                            f"a key must identify one architecture"
                        )
                    return _trial_record(row, self._decode)
                number = session.scalar(
                    select(func.coalesce(func.max(TrialModel.number), -1) + 1).where(
                        TrialModel.study_id == study_id
                    )
                )
                row = TrialModel(
                    study_id=study_id,
                    number=int(number if number is not None else 0),
                    key=key,
                    arch_hash=arch_hash,
                    arch=arch_json,
                    params=params_json,
                    state="RUNNING",
                    metrics={},
                    started_at=_utcnow(),
                    run_id=run_id,
                )
                session.add(row)
                session.flush()
                return _trial_record(row, self._decode)

        return self._retry_on_conflict(attempt)

    @_retrying
    def finish_trial(
        self,
        trial_id: int,
        *,
        state: str,
        accuracy: float | None = None,
        accuracy_se: float | None = None,
        test_accuracy: float | None = None,
        macs: int | None = None,
        params_count: int | None = None,
        metrics: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> TrialRecord:
        """Move a RUNNING trial to the terminal ``state`` with its results.

        ``state`` must be one of ``TERMINAL_STATES`` (ValueError otherwise).  Finishing a trial
        that is already finished raises StorageError: results are never silently overwritten.
        Non-finite floats inside ``metrics`` are stored as null (JSON cannot hold them).
        """
        if isinstance(trial_id, bool) or not isinstance(trial_id, int):
            raise TypeError(f"trial_id must be an int (TrialRecord.id), got {trial_id!r}")
        if state == "RUNNING" or state not in TRIAL_STATES:
            raise ValueError(
                f"finish_trial state must be terminal, got {state!r}; "
                f"allowed: {', '.join(TERMINAL_STATES)}"
            )
        acc = _check_accuracy(accuracy)
        acc_se = _check_accuracy(accuracy_se, "accuracy_se")
        test_acc = _check_accuracy(test_accuracy, "test_accuracy")
        macs_v = _check_count(macs, "macs")
        params_v = _check_count(params_count, "params_count")
        metrics_json = to_json_object({} if metrics is None else metrics, "metrics")
        if error is not None and not isinstance(error, str):
            raise TypeError(f"error must be a string or None, got {type(error).__name__}")

        with self._tx("finish_trial", write=True) as session:
            row = session.get(TrialModel, trial_id, with_for_update=True)
            if row is None:
                raise StorageError(f"no trial with id {trial_id} in {self._masked}")
            if row.state != "RUNNING":
                raise StorageError(
                    f"trial {row.number} (id {trial_id}, key {row.key!r}) is already finished "
                    f"with state {row.state}; refusing to overwrite it with {state}"
                )
            finished_at = _utcnow()
            row.state = state
            row.accuracy = acc
            row.accuracy_se = acc_se
            row.test_accuracy = test_acc
            row.macs = macs_v
            row.params_count = params_v
            row.metrics = metrics_json
            row.error = error
            row.finished_at = finished_at
            row.duration_s = (finished_at - row.started_at).total_seconds()
            session.flush()
            return _trial_record(row, self._decode)

    @_retrying
    def interrupt_running(self, study_id: int, reason: str, *, run_id: int | None = None,
                          metrics: Mapping[int, Mapping[str, Any]] | None = None,
                          ) -> list[TrialRecord]:
        """Finish the RUNNING trials of the study as INTERRUPTED with ``reason``; returns them.

        ``run_id``: only that run's trials (a run stopping closes its own, never those of a run
        that took the study over); None: all (a run starting after a killed one). ``metrics``:
        trial id -> what to add to that trial's ``metrics`` (e.g. where it was running).
        """
        if isinstance(study_id, bool) or not isinstance(study_id, int):
            raise TypeError(f"study_id must be an int (StudyRecord.id), got {study_id!r}")
        if run_id is not None:
            _check_id(run_id, "run_id (RunRecord.id)")
        _check_text(reason, "reason", 10_000)
        added = {tid: to_json_object(m, "metrics") for tid, m in (metrics or {}).items()}
        with self._tx("interrupt_running", write=True) as session:
            query = select(TrialModel).where(TrialModel.study_id == study_id,
                                             TrialModel.state == "RUNNING")
            if run_id is not None:
                query = query.where(TrialModel.run_id == run_id)
            rows = list(session.scalars(
                query.order_by(TrialModel.number).with_for_update()))
            now = _utcnow()
            for row in rows:
                row.state, row.error, row.finished_at = "INTERRUPTED", reason, now
                row.duration_s = (now - row.started_at).total_seconds()
                if row.id in added:
                    row.metrics = {**(row.metrics or {}), **added[row.id]}
            session.flush()
            return [_trial_record(r, self._decode) for r in rows]

    @_retrying
    def trials(
        self, study: str | int, *, states: Iterable[str] | None = None,
        numbers: Iterable[int] | None = None, after: int | None = None,
    ) -> list[TrialRecord]:
        """Trials of a study (name or id), ordered by number, optionally only in ``states``.

        ``numbers`` and/or ``after``: only the trials with one of these numbers or a number
        above ``after`` (a reader catching up reads the trials it saw RUNNING and the new ones;
        a finished trial never changes).
        """
        wanted = None if states is None else _check_states(states, "state", TRIAL_STATES)
        picked = None if numbers is None else [_check_id(n, "trial number") for n in numbers]
        if after is not None:
            _check_id(after, "after (a trial number)")
        with self._tx("trials", write=False) as session:
            study_row = self._resolve_study(session, study)
            query = select(TrialModel).where(TrialModel.study_id == study_row.id)
            if wanted is not None:
                query = query.where(TrialModel.state.in_(wanted))
            if picked is not None or after is not None:
                which = [TrialModel.number.in_(picked)] if picked else []
                if after is not None:
                    which.append(TrialModel.number > after)
                query = query.where(or_(false(), *which))
            rows = session.scalars(query.order_by(TrialModel.number))
            try:
                return [_trial_record(r, self._decode) for r in rows]
            except _UNREADABLE:
                raise self._unreadable_trial(session, study_row) from None

    def _unreadable_trial(self, session: Session, study_row: StudyModel) -> StorageError:
        """The one-line error for a trial row that does not load: its JSON is not valid, or
        its architecture is not one (the row was changed outside this project); found by
        loading the study's rows one at a time."""
        numbers = session.scalars(select(TrialModel.number)
                                  .where(TrialModel.study_id == study_row.id)
                                  .order_by(TrialModel.number)).all()
        for n in numbers:
            try:
                _trial_record(session.scalars(select(TrialModel).where(
                    TrialModel.study_id == study_row.id, TrialModel.number == n)).one(),
                    self._decode)
            except _UNREADABLE as e:
                why = " ".join(str(e).split())[:200]
                return StorageError(
                    f"database {self._masked}: trial #{n} of study {study_row.name!r} cannot be "
                    f"read ({type(e).__name__}: {why}); its row was changed outside "
                    "metaformer-nas and was left as it is")
        return StorageError(f"database {self._masked}: a trial of study {study_row.name!r} "
                            "cannot be read; it was left as it is")

    @_retrying
    def count(self, study: str | int, state: str | None = "COMPLETE") -> int:
        """Number of trials of a study in ``state`` (all trials if ``state`` is None)."""
        if state is not None:
            _check_states([state], "state", TRIAL_STATES)
        with self._tx("count", write=False) as session:
            study_row = self._resolve_study(session, study)
            query = (
                select(func.count())
                .select_from(TrialModel)
                .where(TrialModel.study_id == study_row.id)
            )
            if state is not None:
                query = query.where(TrialModel.state == state)
            return int(session.scalar(query) or 0)

    @_retrying
    def activity(self) -> list[StudyActivity]:
        """Every study with its trial counts and latest finish, oldest study first.

        One grouped query, cheap enough to poll: a change in a study's entry means trials of it
        were started or finished (what a live view needs to know before reloading them).
        """
        finished = func.count(TrialModel.finished_at)
        complete = func.count(case((TrialModel.state == "COMPLETE", 1)))
        with self._tx("activity", write=False) as session:
            rows = session.execute(
                select(StudyModel.name, func.count(TrialModel.id), finished, complete,
                       func.max(TrialModel.finished_at))
                .select_from(StudyModel)
                .outerjoin(TrialModel, TrialModel.study_id == StudyModel.id)
                .group_by(StudyModel.id, StudyModel.name)
                .order_by(StudyModel.id))
            return [StudyActivity(name, int(n), int(f), int(c), last)
                    for name, n, f, c, last in rows]

    @_retrying
    def find_completed(self, study_id: int, arch_hash: str) -> TrialRecord | None:
        """The earliest COMPLETE trial of the study with this ``arch_hash``, else None."""
        with self._tx("find_completed", write=False) as session:
            row = session.scalars(
                select(TrialModel)
                .where(
                    TrialModel.study_id == study_id,
                    TrialModel.arch_hash == arch_hash,
                    TrialModel.state == "COMPLETE",
                )
                .order_by(TrialModel.number)
                .limit(1)
            ).first()
            return None if row is None else _trial_record(row, self._decode)

    # ----------------------------------------------------------------- runs and the lease

    def begin_run(
        self,
        study_id: int,
        *,
        config: Mapping[str, Any],
        argv: Sequence[str],
        versions: Mapping[str, Any],
        host: str,
        pid: int,
        pid_started: float | None = None,
        stale_after_s: float = 60.0,
        holder_is_dead: Callable[[RunRecord], bool] | None = None,
        study_as: StudyRecord | None = None,
    ) -> RunRecord:
        """Record a new run of the study and make it the study's only running run (its lease).

        If another run of the study is running, its heartbeat is younger than
        ``stale_after_s`` and ``holder_is_dead(holder)`` is not True, raises
        :class:`StudyBusyError` (``.holder`` is that run).  Otherwise that run is marked
        'abandoned' (with the reason) and this one takes over, atomically: a concurrent
        ``begin_run`` gets StudyBusyError, never a duplicate lease.  Passwords in ``argv``,
        string values of ``config`` and the stored ``db_url`` are masked.

        Args:
            study_id: ``StudyRecord.id``.
            config: the resolved run configuration (JSON-able).
            argv: the command line (``sys.argv``).
            versions: library versions, e.g. ``{"python": "3.11.9", "torch": "2.4.1"}``.
            host, pid, pid_started: who runs it; ``pid_started`` is the process creation time
                (epoch s), so ``holder_is_dead`` can tell a reused pid apart.
            stale_after_s: a running run without a heartbeat for this long is taken over.
            holder_is_dead: called with the running holder (same host, say: is its process
                gone?); True lets this run take over at once, and names the dead process as
                the reason even when the heartbeat is stale too.
            study_as: the study as this run read it (``get_or_create_study``); if since then
                a run starting at the same moment gave it, still empty, another space,
                objectives or settings, StorageError: this run's trials would be stored under
                the other run's (a study with no trial and no running run takes the next
                command's).

        Returns:
            The new run, outcome 'running'.

        Example::

            run = store.begin_run(study.id, config=cfg, argv=sys.argv, versions=v,
                                  host=socket.gethostname(), pid=os.getpid())
            ...  # store.heartbeat(run.id) every few seconds; stop if it returns False
            store.end_run(run.id, "completed")
        """
        _check_id(study_id, "study_id (StudyRecord.id)")
        stale_after_s = check_seconds(stale_after_s, "stale_after_s")
        # each run records its own limit: a newcomer with a shorter one ($NAS_LEASE_STALE_S)
        # must not take the study from a live run whose heartbeats are further apart
        config_json = {**mask_secrets(to_json_object(config, "config")),
                       LEASE_LIMIT_KEY: stale_after_s}
        versions_json = to_json_object(versions, "versions")
        argv_list = check_argv(argv)
        _check_text(host, "host", NAME_LEN)
        pid, pid_started = check_pid(pid, pid_started)
        if holder_is_dead is not None and not callable(holder_is_dead):
            raise TypeError(f"holder_is_dead must be callable or None, got {holder_is_dead!r}")

        def attempt() -> RunRecord:
            with self._tx("begin_run", write=True) as session:
                # PostgreSQL: begin_run calls of one study queue on the study row
                study = self._resolve_study(session, study_id, for_update=True)
                if study_as is not None:
                    _check_study_as(_study_record(study), study_as)
                now = _utcnow()
                holder = session.scalars(select(RunModel).where(
                    RunModel.study_id == study_id, RunModel.outcome == "running")).one_or_none()
                taken: tuple[int, str] | None = None
                if holder is not None:
                    held = run_record(holder)
                    age = (now - held.heartbeat_at).total_seconds()
                    limit = lease_limit(held, stale_after_s)
                    stale = age >= limit
                    # asked even when stale: a process known dead is the plainer reason
                    dead = holder_is_dead is not None and holder_is_dead(held) is True
                    if not stale and not dead:
                        raise StudyBusyError(busy_message(study.name, held, max(age, 0.0),
                                                          limit), holder=held)
                    why = abandoned_message(held, age, stale and not dead)
                    swapped = session.execute(
                        update(RunModel)
                        .where(RunModel.id == held.id, RunModel.outcome == "running",
                               RunModel.heartbeat_at == held.heartbeat_at)
                        .values(outcome="abandoned", ended_at=now, message=why)
                        .execution_options(synchronize_session=False))
                    if swapped.rowcount != 1:
                        raise _LostRace()  # it sent a heartbeat or ended meanwhile: look again
                    taken = (held.id, why)
                row = RunModel(study_id=study_id, started_at=now, heartbeat_at=now,
                               outcome="running", config=config_json,
                               db_url=self._masked, versions=versions_json, argv=argv_list,
                               host=host, pid=pid, pid_started=pid_started)
                session.add(row)
                session.flush()
                if taken is not None:
                    session.execute(
                        update(RunModel).where(RunModel.id == taken[0])
                        .values(message=f"{taken[1]} (run {row.id})")
                        .execution_options(synchronize_session=False))
                return run_record(row)

        for _ in range(_LEASE_TRIES):
            try:
                return attempt()
            except _LostRace:
                continue
            except StorageError as e:
                if not isinstance(e.__cause__, IntegrityError):
                    raise  # a lost race on the partial unique index: look again
        raise StudyBusyError(f"study id {study_id}: another run took the lease while this one "
                             f"tried to; try again, or use another --study")

    @_retrying
    def heartbeat(self, run_id: int) -> bool:
        """Mark the run alive now; False if it is no longer running (taken over or ended)."""
        _check_id(run_id, "run_id (RunRecord.id)")
        with self._tx("heartbeat", write=True) as session:
            done = session.execute(
                update(RunModel).where(RunModel.id == run_id, RunModel.outcome == "running")
                .values(heartbeat_at=_utcnow()).execution_options(synchronize_session=False))
            if done.rowcount == 1:
                return True
            if session.get(RunModel, run_id) is None:
                raise StorageError(f"no run with id {run_id} in {self._masked}")
            return False

    @_retrying
    def end_run(self, run_id: int, outcome: str, message: str | None = None) -> RunRecord:
        """End a running run with ``outcome`` (releasing the study's lease); returns it.

        A run that is no longer running (e.g. 'abandoned' by a run that took over) keeps its
        outcome and message and is returned unchanged.
        """
        _check_id(run_id, "run_id (RunRecord.id)")
        ends = tuple(o for o in RUN_OUTCOMES if o != "running")
        if outcome not in ends:
            raise ValueError(f"end_run outcome must be one of {', '.join(ends)}; "
                             f"got {outcome!r}")
        if message is not None and not isinstance(message, str):
            raise TypeError(f"message must be a string or None, got {type(message).__name__}")
        with self._tx("end_run", write=True) as session:
            row = session.get(RunModel, run_id, with_for_update=True)
            if row is None:
                raise StorageError(f"no run with id {run_id} in {self._masked}")
            if row.outcome == "running":
                row.outcome, row.ended_at = outcome, _utcnow()
                row.message = None if message is None else mask_secrets(message)
                session.flush()
            return run_record(row)

    @_retrying
    def runs(self, study: str | int) -> list[RunRecord]:
        """Runs of a study (name or id), oldest first."""
        with self._tx("runs", write=False) as session:
            study_row = self._resolve_study(session, study)
            rows = session.scalars(
                select(RunModel).where(RunModel.study_id == study_row.id).order_by(RunModel.id))
            return [run_record(r) for r in rows]
