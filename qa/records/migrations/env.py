"""Alembic's environment for the records database.

The application runs it through :func:`qa.records.db.upgrade` with a connection of its own
(``config.attributes["connection"]``); there is no alembic.ini. By hand::

    python -c "from qa.records import db; db.upgrade(db.make_engine('sqlite:///var/records.sqlite3'))"
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from qa.records.schema import VERSION_TABLE, metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # pragma: no cover - the alembic command line, with sqlalchemy.url set
    with create_engine(context.config.get_main_option("sqlalchemy.url") or "").begin() as conn:
        _run(conn)
