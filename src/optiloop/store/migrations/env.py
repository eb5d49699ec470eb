"""Alembic's entry point: run the revisions on the store's connection.

``Store`` opens a connection, begins a transaction and hands the connection
over in ``config.attributes["connection"]``, so the upgrade commits or fails
as one unit with the store's own settings (SQLite pragmas, write lock).

Without a connection, the URL in ``sqlalchemy.url`` is opened the same way;
that is how a developer autogenerates the next revision (see
``optiloop.store.alembic_config``).  Offline mode renders the SQL for that URL
instead, for an administrator who applies it by hand.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from optiloop.store.engine import WRITE, create_store_engine
from optiloop.store.models import Base


def run_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return

    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError(
            "no database to migrate: pass a connection in "
            "config.attributes['connection'] or set sqlalchemy.url"
        )
    engine = create_store_engine(url)
    with engine.execution_options(**WRITE).begin() as own_connection:
        run_on(own_connection)
    engine.dispose()


def run_on(connection: Connection) -> None:
    # Batch mode lets later revisions alter tables on SQLite, which has no
    # ALTER COLUMN.
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
