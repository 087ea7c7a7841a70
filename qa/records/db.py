"""The records database: its URL, engine, migrations (Alembic, run programmatically) and shared state."""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from qa.records.schema import VERSION_TABLE, state

if TYPE_CHECKING:
    from qa.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_FILE = "records.sqlite3"
SALT_KEY = "asker_salt"
# Alembic's `context` and `op` are module-wide proxies: two migrations in one process must take turns.
_MIGRATION_LOCK = threading.Lock()
_PG_MIGRATION_LOCK = 0x71615F7265636F72  # pg_advisory_xact_lock key: replicas starting together migrate in turn


def database_url(settings: Settings) -> str:
    """``QA_DATABASE_URL``, or the SQLite file in ``QA_STATE_DIR``. A bare ``postgresql://`` (or
    ``postgres://``) URL is given the psycopg 3 driver, the one installed."""
    given = settings.database_url.get_secret_value().strip() if settings.database_url is not None else ""
    if not given:
        return f"sqlite:///{Path(settings.state_dir).expanduser().resolve() / SQLITE_FILE}"
    for bare in ("postgresql://", "postgres://"):
        if given.startswith(bare):
            return "postgresql+psycopg://" + given[len(bare):]
    return given


def describe(url: str | URL) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def sqlite_path(engine: sa.Engine) -> Path | None:
    """The file of a SQLite database (None for other databases and in-memory SQLite)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    return Path(database) if database and database != ":memory:" and not database.startswith("file:") else None


def make_engine(url: str | URL) -> sa.Engine:
    """An engine for the records. SQLite: WAL journal (readers never block the writer), a 30 s busy
    timeout (replicas and the feedback route write too), ``synchronous=NORMAL``. PostgreSQL: a short
    connect timeout (a server that is down fails fast; answers never wait for it) and a pre-ping,
    so connections broken by a restart are replaced. Nothing connects until first use."""
    u = make_url(url)
    kwargs: dict[str, Any] = {}
    if u.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    elif u.get_backend_name() == "postgresql":
        kwargs.update(pool_pre_ping=True, pool_size=2, max_overflow=6, pool_recycle=3600)
        if u.get_driver_name() in {"psycopg", "psycopg2"}:
            kwargs["connect_args"] = {"connect_timeout": 3}
    engine = sa.create_engine(u, **kwargs)
    if engine.dialect.name == "sqlite":
        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
    return engine


def _alembic_config(connection: sa.Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """``alembic upgrade head`` (or to ``revision``), on this engine; creates a SQLite file's folder."""
    path = sqlite_path(engine)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    with _MIGRATION_LOCK, _file_lock(path):
        _upgrade(engine, revision)


def _upgrade(engine: sa.Engine, revision: str) -> None:
    from alembic import command

    alembic_log = logging.getLogger("alembic")
    if alembic_log.level == logging.NOTSET:  # its INFO lines at every start are noise; ours below says what ran
        alembic_log.setLevel(logging.WARNING)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        from alembic.runtime.migration import MigrationContext

        before = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
        command.upgrade(_alembic_config(conn), revision)
        after = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    if before != after:
        log.info("records: migrated %s from %s to %s", describe(engine.url), before or "an empty database", after)


def downgrade(engine: sa.Engine, revision: str = "base") -> None:
    """``alembic downgrade base`` (or to ``revision``)."""
    from alembic import command

    with _MIGRATION_LOCK, _file_lock(sqlite_path(engine)), engine.begin() as conn:
        command.downgrade(_alembic_config(conn), revision)


@contextlib.contextmanager
def _file_lock(path: Path | None) -> Iterator[None]:
    """Across processes on one SQLite file (PostgreSQL has its advisory lock): a lock file beside it."""
    if path is None or fcntl is None:
        yield
        return
    with open(path.with_name(path.name + ".migrate-lock"), "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def current_revision(engine: sa.Engine) -> str | None:
    """The revision the database is at (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def head_revision() -> str:
    """The newest revision the code knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def shared_salt(engine: sa.Engine) -> str:
    """The pseudonyms' salt kept in the database, made on first use; replicas that share the
    database share it (a race between two first starts is settled by the primary key)."""
    for _ in range(3):
        with engine.connect() as conn:
            value = conn.execute(sa.select(state.c.value).where(state.c.key == SALT_KEY)).scalar()
        if value:
            return str(value)
        try:
            with engine.begin() as conn:
                conn.execute(sa.insert(state).values(key=SALT_KEY, value=secrets.token_hex(32)))
        except sa.exc.IntegrityError:
            pass  # another replica made it first: read theirs
    raise RuntimeError("could not read or store the pseudonyms' salt")
