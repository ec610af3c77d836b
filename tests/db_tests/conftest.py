"""Fixtures for the db tests: SQLite files under tmp_path, and the session's PostgreSQL server.

``backend_url`` shares one PostgreSQL database between tests (they name their studies with
``name_prefix``); ``fresh_backend_url`` is an empty database of the test's own on either backend.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete

from db import Store, StudyRecord
from db._models import StudyModel

OBJECTIVES = ("accuracy:max", "macs:min")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nas.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    return request.getfixturevalue("postgres_url")


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_backend_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """An empty database on each backend (a new SQLite file; a new PostgreSQL database)."""
    if request.param == "sqlite":
        return sqlite_url
    return request.getfixturevalue("pg_database_url")


@pytest.fixture
def name_prefix() -> str:
    """Unique per test, so tests can share one PostgreSQL database (and clean up after)."""
    return f"test-{uuid.uuid4().hex[:12]}-"


@pytest.fixture
def store(backend_url: str, name_prefix: str) -> Iterator[Store]:
    s = Store(backend_url)
    yield s
    s.close()
    if not backend_url.startswith("sqlite"):
        engine = create_engine(backend_url)
        try:
            with engine.begin() as conn:  # trials go with their study (ON DELETE CASCADE)
                conn.execute(delete(StudyModel).where(StudyModel.name.like(f"{name_prefix}%")))
        finally:
            engine.dispose()


@pytest.fixture
def new_study(store: Store, name_prefix: str) -> Callable[..., StudyRecord]:
    """``new_study("a")`` creates (or gets) the study ``<name_prefix>a`` in ``store``."""

    def make(name: str, *, space_hash: str = "space-hash-1") -> StudyRecord:
        return store.get_or_create_study(
            f"{name_prefix}{name}",
            space="metaformer-v1",
            space_hash=space_hash,
            objectives=OBJECTIVES,
            config={"seed": 0, "cli": ["--study", name], "proxy": {"epochs": 1}},
        )

    return make
