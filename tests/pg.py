"""A real PostgreSQL server for the tests, started in a temporary folder (never a mock).

``initdb``, ``pg_ctl`` and ``postgres`` are looked up on PATH and in /usr/local/bin and
/usr/lib/postgresql/*/bin; without them the tests that need PostgreSQL skip with the reason.
initdb refuses to run as root, so as root the server runs as the unprivileged user ``nobody``
(through ``runuser``), in a folder that user owns. It listens on a free loopback port, with trust
authentication; each test gets a fresh database (:func:`fresh_database`). One server serves the
whole session (it is stopped at the end); a test that stops it (:meth:`PostgresServer.stop`)
starts it again with :meth:`PostgresServer.start`.

A test module takes the fixtures with ``postgres, pg_url = pg.fixtures()``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_SEARCH = ["/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in _SEARCH:
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A throwaway PostgreSQL cluster: ``initdb`` once, then ``pg_ctl start``/``stop`` at will."""

    def __init__(self) -> None:
        missing = [n for n in ("initdb", "pg_ctl", "postgres") if _binary(n) is None]
        if missing:
            raise FileNotFoundError(f"PostgreSQL binaries not found ({', '.join(missing)}; looked on PATH and in "
                                    f"{', '.join(_SEARCH)}); install the postgresql package")
        self.initdb, self.pg_ctl = _binary("initdb"), _binary("pg_ctl")
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root
            if shutil.which("runuser") is None:
                raise FileNotFoundError("running as root, and runuser (to run PostgreSQL as nobody) is missing")
            self.as_user = ["runuser", "-u", "nobody", "--"]
        self.root = Path(tempfile.mkdtemp(prefix="qa-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        if self.as_user:
            shutil.chown(self.root, "nobody")
        self._run([self.initdb, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync",
                   "-D", str(self.data)])
        self.running = False

    def _run(self, args: list[str | None], timeout: float = 60) -> None:
        cmd = [*self.as_user, *[str(a) for a in args]]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}\n{log}")

    def start(self) -> None:
        """Starts the server (on the same port and data every time) and waits until it accepts."""
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        self._run([self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30", "-o", options, "start"])
        self.running = True

    def stop(self) -> None:
        """Stops it at once (``-m fast``: open connections are cut, like a server going down)."""
        if self.running:
            self._run([self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop"])
            self.running = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        return self.url(name)

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


_SERVER: PostgresServer | None = None
_FAILED: str | None = None


def server() -> PostgresServer:
    """The session's server, started on first use (skips the test when PostgreSQL is missing)."""
    global _SERVER, _FAILED
    if _FAILED is not None:
        pytest.skip(_FAILED)
    if _SERVER is None:
        try:
            _SERVER = PostgresServer()
        except FileNotFoundError as exc:
            _FAILED = str(exc)
            pytest.skip(_FAILED)
        _SERVER.start()
    elif not _SERVER.running:  # a test stopped it and failed before starting it again
        _SERVER.start()
    return _SERVER


def shutdown() -> None:
    global _SERVER
    if _SERVER is not None:
        _SERVER.cleanup()
        _SERVER = None


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The running PostgreSQL server of the session."""
    yield server()
    shutdown()  # idempotent: each module that imports this fixture ends it at the session's end


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """A fresh database on the session's server."""
    if not postgres.running:
        postgres.start()
    return postgres.create_database()


def fixtures() -> tuple[Any, Any]:
    """The fixtures ``postgres`` (the session's server) and ``pg_url`` (a fresh database), for a test
    module: ``postgres, pg_url = pg.fixtures()`` (an assignment, so a test's parameters of the same
    names do not read as redefinitions of an import)."""
    return postgres, pg_url
