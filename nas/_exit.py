"""Leave a command-line process without CPython's module teardown (private).

With torch, timm, FFCV, Optuna and Ray loaded, Python spends 1-2 s after the last atexit
handler freeing module objects one by one (its final garbage collections), which every command
paid after its last line. :func:`leave` is ``sys.exit(code)``, except that once every atexit
handler has run (Ray's shutdown, logging's flush, multiprocessing's joins, temporary folders)
and every non-daemon thread has ended, the process closes its databases, flushes stdout and
stderr and ends with ``os._exit``.

The handler is registered when ``nas`` is first imported (``nas/__init__.py``), before the
modules that register their own, so it runs after all of them (atexit calls the last registered
first). The process takes Python's full teardown instead, as it always did:

- where it did not end by :func:`leave` (tests, Ray workers, a library user);
- where :func:`leave` was not called from the top level of the script Python runs (directly
  or by ``-m``): a caller around it (``cProfile``, ``pdb``, ``runpy.run_module``) may catch
  the ``SystemExit`` and go on to end the process another way, with another code; so may
  ``python -i`` (or ``PYTHONINSPECT``), whose prompt opens after it;
- where a handler was registered before ours (``coverage run``, a ``sitecustomize``): it would
  run after ours, so it would be skipped;
- where a database connection is still checked out of its pool (``dispose`` would not close
  it, and its SQLite ``-wal`` file would stay), or where flushing fails (Python reports it).
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
    """``sys.exit(code)``, without module teardown once atexit is done; call it as the last
    statement at the top level of the script Python runs, outside any ``try`` or ``with``
    (a ``SystemExit`` caught there would end the process later, with this code)."""
    if _from_the_top(sys._getframe(1)) and not _inspect():
        _code[:] = [code]
    sys.exit(code)


def _from_the_top(frame) -> bool:
    """Whether ``frame`` is the top level of ``__main__`` with nothing but ``runpy`` (``-m``)
    around it: then the SystemExit reaches the interpreter, and ends the process with its
    code."""
    if frame.f_code.co_name != "<module>" or frame.f_globals.get("__name__") != "__main__":
        return False
    outer = frame.f_back
    while outer is not None:
        if outer.f_globals.get("__name__") != "runpy":
            return False
        outer = outer.f_back
    return True


def _inspect() -> bool:
    """``python -i`` (or ``PYTHONINSPECT``, which a program may set as it runs): a prompt opens
    after the script's SystemExit, and the process ends however that session ends."""
    return bool(sys.flags.inspect or os.environ.get("PYTHONINSPECT"))


def _close_databases() -> bool:
    """Dispose every SQLAlchemy engine: a SQLite database in WAL mode folds its ``-wal`` file
    back in when its last connection closes (a copy of ``nas.db`` alone then holds
    everything), and a PostgreSQL server sees a clean disconnect. False, disposing nothing,
    if a connection is still checked out of its pool (``dispose`` leaves those open)."""
    base = sys.modules.get("sqlalchemy.engine.base")
    if base is None:
        return True
    # (0.2 s with torch loaded: less than the teardown it saves; issubclass(type(...)), not
    # isinstance: a torch object's __class__ warns when asked)
    engines = [obj for obj in gc.get_objects() if issubclass(type(obj), base.Engine)]
    if any(getattr(e.pool, "checkedout", lambda: 0)() for e in engines):
        return False
    for e in engines:
        e.dispose()
    return True


def _at_exit() -> None:
    if not _code or _before != 0 or _inspect():  # Python's own teardown (see the docstring)
        return
    try:
        if not _close_databases():
            return
        for stream in {id(s): s for s in (sys.stdout, sys.stderr, sys.__stdout__,
                                          sys.__stderr__) if s is not None}.values():
            stream.flush()
    except BaseException:  # noqa: BLE001 - the full teardown says what went wrong, as before
        return
    os._exit(_code[0])


atexit.register(_at_exit)
