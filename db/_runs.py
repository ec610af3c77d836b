"""Helpers of the run records and the study lease (private; the methods are on db.Store)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from db._models import RunModel
from db.records import RunRecord

#: ``scheme://user:password@``: the password part is what gets masked.
#: ``scheme://user:password@`` up to the *last* ``@`` of the URL (a password may hold ``@``,
#: ``/`` or ``:``): everything after the user's first ``:`` is the password.
_SECRET_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)[^\s]*@")
#: the same inside one value (an argv element, a setting): the password may even hold spaces
_TOKEN_SECRET_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:).*@")
#: a query parameter's key (``?password=...`` is libpq's spelling of a password), found after
#: every ``?`` or ``&``, a stray ``?`` inside another value too; its value runs to the next
#: ``&`` or space. The key is decoded before it is judged, as SQLAlchemy decodes it
#: (``?pass%77ord=`` is ``password=``).
_QUERY_KEY_RE = re.compile(r"[?&]([^=&?\s]*)=")
_VALUE_END_RE = re.compile(r"[&\s]")
_SECRET_KEYS = frozenset({"password", "passwd", "pwd", "sslpassword"})


def _mask_query(text: str) -> str:
    out, pos = [], 0
    for m in _QUERY_KEY_RE.finditer(text):
        if m.start() < pos or unquote_plus(m.group(1)).strip().lower() not in _SECRET_KEYS:
            continue  # (inside a value masked already, or not a password)
        end = _VALUE_END_RE.search(text, m.end())
        out += [text[pos:m.end()], "***"]
        pos = end.start() if end else len(text)
    return "".join(out) + text[pos:]


def mask_text(text: str, *, token: bool = False) -> str:
    """``text`` with every URL password (userinfo or ``password=`` query) made ``***``.

    ``token``: ``text`` is one value (a URL, an argv element), not prose: a password ends at
    the value's last ``@`` even across spaces."""
    userinfo = _TOKEN_SECRET_RE if token else _SECRET_RE
    return _mask_query(userinfo.sub(r"\1***@", text))


def mask_secrets(value: Any) -> Any:
    """``value`` (JSON-like) with every URL password in its strings made ``***``."""
    if isinstance(value, str):
        return mask_text(value, token=True)
    if isinstance(value, Mapping):
        return {k: mask_secrets(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_secrets(v) for v in value]
    return value


def check_argv(argv: Sequence[str]) -> list[str]:
    if isinstance(argv, str) or not isinstance(argv, Sequence) or \
            not all(isinstance(a, str) for a in argv):
        raise TypeError(f"argv must be a sequence of strings (e.g. sys.argv), got {argv!r}")
    return [mask_secrets(a) for a in argv]


def check_pid(pid: int, pid_started: float | None) -> tuple[int, float | None]:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ValueError(f"pid must be a positive int, got {pid!r}")
    if pid_started is not None:
        if isinstance(pid_started, bool) or not isinstance(pid_started, (int, float)) or \
                not math.isfinite(pid_started):
            raise ValueError(f"pid_started must be a finite number (epoch s) or None, "
                             f"got {pid_started!r}")
        pid_started = float(pid_started)
    return pid, pid_started


def check_seconds(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive number of seconds, got {value!r}")
    return float(value)


def run_record(row: RunModel) -> RunRecord:
    return RunRecord(
        id=row.id,
        study_id=row.study_id,
        outcome=row.outcome,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
        ended_at=row.ended_at,
        message=row.message,
        config=dict(row.config),
        db_url=row.db_url,
        versions=dict(row.versions),
        argv=tuple(row.argv),
        host=row.host,
        pid=row.pid,
        pid_started=row.pid_started,
    )


def _utc(t: datetime) -> str:
    return f"{t:%Y-%m-%d %H:%M:%S} UTC"


#: Key of a run's config holding the stale limit it was started with (``Store.begin_run``).
LEASE_LIMIT_KEY = "lease_stale_after_s"


def lease_limit(holder: RunRecord, stale_after_s: float) -> float:
    """How long ``holder`` may go without a heartbeat before it is taken over: the larger of the
    newcomer's limit and the one the holder recorded (absent in runs before it was recorded)."""
    own = (holder.config or {}).get(LEASE_LIMIT_KEY)
    if isinstance(own, (int, float)) and not isinstance(own, bool) and math.isfinite(own):
        return max(stale_after_s, float(own))
    return stale_after_s


def busy_message(study: str, holder: RunRecord, age_s: float, stale_after_s: float) -> str:
    return (f"study {study!r} is being searched by run {holder.id} (pid {holder.pid} on host "
            f"{holder.host}, started {_utc(holder.started_at)}, last heartbeat "
            f"{age_s:.0f} s ago); wait for it, stop it, or use another --study (a run without "
            f"a heartbeat for {stale_after_s:g} s is taken over)")


def abandoned_message(holder: RunRecord, age_s: float, stale: bool) -> str:
    if stale:
        why = f"no heartbeat since {_utc(holder.heartbeat_at)} ({age_s:.0f} s)"
    else:
        why = f"its process (pid {holder.pid} on host {holder.host}) is gone"
    return f"abandoned: {why}; the study was taken over by a new run"
