"""Alembic's environment for the ledger: runs the revisions on the connection gateway.schema gives.

Never run from an alembic.ini: gateway/schema.py builds the configuration in code and passes the
open connection in ``config.attributes["connection"]``. SQLite gets batch mode (ALTER TABLE is
copy-and-move there); the version table lives wherever the connection's tables do (on PostgreSQL,
the schema its search_path names).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from gateway.store.ledger import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _offline() -> None:
    """SQL for a DBA to read or run (``--sql``): the URL given in the configuration."""
    url = context.config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=bool(url and url.startswith("sqlite")),
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _offline()
else:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("the ledger's migrations run through gateway.schema, with a connection")
    _run(connection)
