"""Session-wide fixtures: Ray (2 CPU cores) and a real PostgreSQL server, both started on demand.

PostgreSQL: ``postgres_url`` starts a throw-away server (initdb into a fresh temp dir, 127.0.0.1
on a free port, scram password auth) once per session, or uses ``$NAS_TEST_POSTGRES_URL``.
Without the server binaries the PostgreSQL cases skip, unless ``NAS_REQUIRE_POSTGRES=1`` (set by
``make test``), where they fail with the reason.  ``pg_database_url`` gives a test its own,
empty database on that server (Optuna's tables included), dropped afterwards.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_ENV = "NAS_TEST_POSTGRES_URL"
REQUIRE_ENV = "NAS_REQUIRE_POSTGRES"
PG_USER = "nas"
PG_DATABASE = "nas_test"


# One dataset cache for the session: each test keeps its own runs dir and database, but a search
# finds its FFCV files already written instead of writing them again (clutter: ~6 s a test).
# Tests of the cache itself pass their own directory, which wins over the environment. Under
# pytest-xdist each worker makes its own, unless the directory came in the environment; writing
# one dataset from two processes at once is safe (test_concurrent_prepare_from_two_processes).
_SESSION_CACHE = tempfile.mkdtemp(prefix="nas-test-cache-")
os.environ.setdefault("NAS_CACHE_DIR", _SESSION_CACHE)


def pytest_sessionfinish(session, exitstatus) -> None:
    shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


@pytest.fixture(autouse=True)
def _database_waits_as_new():
    """Each test starts with no database outage known to this process and waits not given up:
    a stop signal a test simulates (``StopRequest.handle``) gives waiting up process-wide, as
    the search's does until its run ends."""
    import db._retry

    db._retry.resume_waits()
    db._retry._OUTAGES.clear()
    yield
    db._retry.resume_waits()


@pytest.fixture(scope="session")
def ray_session():
    """Start Ray once for every test that needs it; shut it down at the end of the session."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


# --------------------------------------------------------------------------- PostgreSQL


def _no_postgres(reason: str) -> None:
    """Skip, or fail when the run requires PostgreSQL (CI); ``reason`` is one line."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"PostgreSQL required ({REQUIRE_ENV}=1) but {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL backend not tested: {reason}")


def _pg_bindir() -> Path | None:
    """The directory of ``initdb``/``pg_ctl``: on PATH, else Debian's newest /usr/lib one."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda d: int(Path(d).parent.name) if Path(d).parent.name.isdigit() else 0)
    for d in reversed(dirs):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _admin_connect(url: str):
    """A psycopg autocommit connection to the ``postgres`` database of ``url``'s server."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return psycopg.connect(host=u.host, port=u.port or 5432, user=u.username,
                           password=u.password, dbname="postgres", autocommit=True,
                           connect_timeout=10)


class _PostgresServer:
    """A private PostgreSQL server in a temp dir; ``stop()`` removes every trace of it."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        # Not under pytest's tmp dir (0700 root): the server may run as the postgres user.
        self.root = Path(tempfile.mkdtemp(prefix="nas-test-pg-"))
        self.data = self.root / "data"
        self.password = secrets.token_urlsafe(12)
        self.port = 0
        self.as_postgres = os.geteuid() == 0  # initdb refuses to run as root

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            out = " ".join((proc.stderr or proc.stdout).split())[-400:]
            raise RuntimeError(f"{args[0]} exited with {proc.returncode}: {out}")

    def start(self) -> str:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        (self.root / "sock").mkdir()
        if self.as_postgres:
            shutil.chown(self.root, "postgres")
            for p in (pwfile, self.root / "sock"):
                shutil.chown(p, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", PG_USER, f"--pwfile={pwfile}",
                  "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync")
        pwfile.unlink()
        for attempt in range(3):  # a free port can be taken between probing and binding
            self.port = _free_port()
            opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                    f"-c unix_socket_directories={self.root / 'sock'} -c fsync=off "
                    f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                          "-o", opts, "-w", "-t", "30", "start")
                self.opts = opts
                break
            except RuntimeError:
                if attempt == 2:
                    log = (self.root / "server.log").read_text(errors="replace")
                    raise RuntimeError(f"pg_ctl start failed: {' '.join(log.split())[-400:]}")
        url = self.url("postgres")
        with _admin_connect(url) as conn:
            conn.execute(f"CREATE DATABASE {PG_DATABASE}")
        return self.url(PG_DATABASE)

    def halt(self) -> None:
        """Shut the running server down (``-m fast``: clients are disconnected)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the server again after :meth:`halt`, on the same port."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", self.opts, "-w", "-t", "30", "start")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{PG_USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``postgresql+psycopg://nas:<pw>@127.0.0.1:<port>/nas_test`` of a server for this session.

    ``$NAS_TEST_POSTGRES_URL`` is used as is when set.  Tests share the database: name what you
    create uniquely (see ``name_prefix`` in db_tests) or use ``pg_database_url``.
    """
    external = os.environ.get(POSTGRES_ENV)
    if external:
        yield external
        return
    server, url = _started_server()
    try:
        yield url
    finally:
        server.stop()


def _started_server() -> tuple[_PostgresServer, str]:
    """A new private server and the URL of its database; skip (or fail, see _no_postgres)
    when none can be started here."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _no_postgres("the psycopg driver is not installed (pip install 'psycopg[binary]')")
    bindir = _pg_bindir()
    if bindir is None:
        _no_postgres("no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin "
                     "(apt-get install postgresql)")
    server = _PostgresServer(bindir)
    try:
        return server, server.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        server.stop()
        _no_postgres(f"the test server did not start: {' '.join(str(e).split())}")
        raise  # (not reached: _no_postgres skips or fails)


@pytest.fixture
def private_postgres() -> Iterator[tuple[_PostgresServer, str]]:
    """(server, URL of its database) of a PostgreSQL server of this test's own, for tests that
    stop and start it (``server.halt()``, ``server.resume()``); removed afterwards. Not
    replaced by ``$NAS_TEST_POSTGRES_URL``: an external server is not ours to stop."""
    server, url = _started_server()
    try:
        yield server, url
    finally:
        server.stop()


@pytest.fixture
def pg_database_url(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the session's PostgreSQL server, dropped after the test.

    For tests that need a database of their own: schema migrations, Optuna studies (whose
    tables are shared too), anything that must start empty.
    """
    from sqlalchemy.engine import make_url

    name = f"nas_t_{uuid.uuid4().hex[:16]}"
    try:
        with _admin_connect(postgres_url) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except Exception as e:  # e.g. an external server without CREATEDB for this user
        _no_postgres(f"cannot create a database on the server: {' '.join(str(e).split())}")
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with _admin_connect(postgres_url) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
