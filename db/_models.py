"""SQLAlchemy ORM tables (private: the public API returns records, not rows).

All tables are prefixed ``nas_`` so that Optuna's RDB storage (tables ``studies``, ``trials``,
``version_info``, ``alembic_version``, ...) can live in the same database.  The schema is made
and changed only by the migrations in ``db/migrations`` (version table ``nas_alembic_version``);
a test checks that ``upgrade head`` produces exactly these tables.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from db.records import RUN_OUTCOMES, TRIAL_STATES

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NAME_LEN = 255
HASH_LEN = 128
STATE_LEN = 16
URL_LEN = 2048


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend.

    SQLite has no time-zone support: values are stored as naive UTC and given ``timezone.utc``
    back on load.  PostgreSQL stores ``timestamptz``; loaded values are converted to UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}; only timezone-aware allowed")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class StudyModel(Base):
    __tablename__ = "nas_studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN), unique=True)
    space: Mapped[str] = mapped_column(String(NAME_LEN))
    space_hash: Mapped[str] = mapped_column(String(HASH_LEN))
    objectives: Mapped[list[str]] = mapped_column(JSON)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


_STATE_SQL = ", ".join(f"'{s}'" for s in TRIAL_STATES)
_OUTCOME_SQL = ", ".join(f"'{s}'" for s in RUN_OUTCOMES)
#: The partial unique index that makes the running run of a study its lease.
RUNNING_INDEX = "ix_nas_runs_study_id_running"
_RUNNING = text("outcome = 'running'")


class RunModel(Base):
    __tablename__ = "nas_runs"
    __table_args__ = (
        Index(RUNNING_INDEX, "study_id", unique=True, sqlite_where=_RUNNING,
              postgresql_where=_RUNNING),
        CheckConstraint(f"outcome IN ({_OUTCOME_SQL})", name="outcome"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("nas_studies.id", ondelete="CASCADE"),
                                          index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(STATE_LEN))
    message: Mapped[str | None] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    db_url: Mapped[str] = mapped_column(String(URL_LEN))
    versions: Mapped[dict[str, Any]] = mapped_column(JSON)
    argv: Mapped[list[str]] = mapped_column(JSON)
    host: Mapped[str] = mapped_column(String(NAME_LEN))
    pid: Mapped[int] = mapped_column(Integer)
    pid_started: Mapped[float | None] = mapped_column(Float)


class TrialModel(Base):
    __tablename__ = "nas_trials"
    __table_args__ = (
        UniqueConstraint("study_id", "key"),
        UniqueConstraint("study_id", "number"),
        Index(None, "study_id", "state"),
        Index(None, "study_id", "arch_hash"),
        CheckConstraint(f"state IN ({_STATE_SQL})", name="state"),
        CheckConstraint("number >= 0", name="number"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("nas_studies.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(NAME_LEN))
    arch_hash: Mapped[str] = mapped_column(String(HASH_LEN))
    arch: Mapped[dict[str, Any]] = mapped_column(JSON)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(STATE_LEN))
    accuracy: Mapped[float | None] = mapped_column(Float)
    accuracy_se: Mapped[float | None] = mapped_column(Float)
    test_accuracy: Mapped[float | None] = mapped_column(Float)
    macs: Mapped[int | None] = mapped_column(BigInteger)
    params_count: Mapped[int | None] = mapped_column(BigInteger)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_s: Mapped[float | None] = mapped_column(Float)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("nas_runs.id", ondelete="SET NULL"),
                                               index=True)
