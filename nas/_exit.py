"""Leave a command-line process without CPython's module teardown (private).

With torch, timm, FFCV, Optuna and Ray loaded, Python spends 1.2-1.8 s after the last atexit
handler freeing module objects one by one (its final garbage collections), which every command
paid after its last line. :func:`leave` is ``sys.exit(code)``, except that once every atexit
handler has run (Ray's shutdown, logging's flush, multiprocessing's joins, temporary folders),
the process closes its databases, flushes stdout and stderr and ends with ``os._exit``.

The handler is registered when ``nas`` is first imported (``nas/__init__.py``), before the
modules that register their own, so it runs after all of them (atexit calls the last registered
first). Where something registered one before it (``coverage run``, a ``sitecustomize``), that
one would be skipped, so the process takes Python's full teardown instead. So it does where
the process did not call :func:`leave` (tests, Ray workers, a library user), and where closing
or flushing fails, so Python reports that as it always did.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from typing import NoReturn

_code: list[int] = []
# atexit handlers registered before ours (they would run after it); None: cannot tell
_before: int | None = getattr(atexit, "_ncallbacks", lambda: None)()


def leave(code: int) -> NoReturn:
    """``sys.exit(code)``, ending the process without module teardown once atexit is done."""
    _code[:] = [code]
    sys.exit(code)


def _close_databases() -> None:
    """Dispose every SQLAlchemy engine: a SQLite database in WAL mode folds its ``-wal`` file
    back in when its last connection closes (a copy of ``nas.db`` alone then holds
    everything), and a PostgreSQL server sees a clean disconnect."""
    sqlalchemy = sys.modules.get("sqlalchemy.engine.base")
    if sqlalchemy is None:
        return
    engine = sqlalchemy.Engine
    for obj in gc.get_objects():  # (0.2 s with torch loaded: less than the teardown it saves)
        if issubclass(type(obj), engine):  # (not isinstance: a torch object's __class__ warns)
            obj.dispose()


def _at_exit() -> None:
    if not _code or _before != 0:  # Python's own teardown (see the module's docstring)
        return
    try:
        _close_databases()
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except BaseException:  # noqa: BLE001 - the full teardown says what went wrong, as before
        return
    os._exit(_code[0])


atexit.register(_at_exit)
