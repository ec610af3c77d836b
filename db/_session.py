"""The one transaction boundary of the package (private)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from db._engine import describe, mask_url
from db.errors import StorageError


@contextmanager
def transaction(factory: sessionmaker[Session], *, url: str, what: str) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on any error.

    ``sqlalchemy.exc.SQLAlchemyError`` becomes ``StorageError("<what> failed on <url>: ...")``
    (one line, password masked, chained with ``from``); every other exception, including our own
    ``StorageError`` and ``ValueError``, propagates unchanged after the rollback.
    """
    session = factory()
    try:
        try:
            yield session
            session.commit()
        except BaseException:
            try:
                session.rollback()
            except SQLAlchemyError:
                pass  # the connection is gone; the original error is the one to report
            raise
    except SQLAlchemyError as e:
        raise StorageError(f"{what} failed on {mask_url(url)}: {describe(e)}") from e
    finally:
        try:
            session.close()
        except SQLAlchemyError:
            pass  # returning a dead connection to the pool; nothing left to lose
