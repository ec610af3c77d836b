"""SQLAlchemy ORM tables (private: the public API returns records, not rows).

All tables are prefixed ``nas_`` so that Optuna's RDB storage (tables ``studies``, ``trials``,
``version_info``, ...) can live in the same database.
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
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from db.records import TRIAL_STATES

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


#: Nullable columns added after the first release: (table, column name, SQL type). A database
#: created before them gets them by ALTER TABLE ... ADD COLUMN when it is opened.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("nas_trials", "accuracy_se", "FLOAT"),
    ("nas_trials", "test_accuracy", "FLOAT"),
)


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
