"""Opening a database: the engine, with the settings SQLite needs.

SQLite is the default store, a file that several processes (a runner and its
jobs, a dashboard) open at once.  Each connection therefore gets:

- WAL journaling, so readers never wait for a writer;
- foreign keys, which SQLite leaves off unless asked;
- a busy timeout, so a writer waits for another writer instead of failing.

Write transactions begin with ``BEGIN IMMEDIATE``: they take the write lock
up front, so a transaction that reads and then writes (closing a suggestion)
cannot find the data changed under it halfway.  A session marks a
transaction as a write by binding to ``engine.execution_options(**WRITE)``.

WAL needs shared memory, so a SQLite file on a network file system (NFS) is
not safe; use PostgreSQL there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, StaticPool, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from optiloop.errors import StoreError

# How long a SQLite writer waits for another writer's short transaction.
SQLITE_BUSY_TIMEOUT_MS = 30_000

WRITE_OPTION = "optiloop_write"
WRITE: dict[str, Any] = {WRITE_OPTION: True}


def to_json(data: object) -> str:
    """JSON text for a JSON column: names keep their script, NaN is refused."""
    return json.dumps(data, ensure_ascii=False, allow_nan=False)


def create_store_engine(url: str | URL) -> Engine:
    """An engine for ``url``; for a SQLite file, its folder is created.

    A URL that names no installed database driver, or a folder that cannot
    be made, raises ``StoreError`` saying so.
    """
    try:
        return _create_engine(url)
    except (ArgumentError, NoSuchModuleError, ModuleNotFoundError) as error:
        raise StoreError(
            f"database URL {str(url)!r} cannot be opened: {error}; use "
            "sqlite:///path/to/file.db or postgresql://user@host/name"
        ) from error
    except OSError as error:
        raise StoreError(
            f"database URL {str(url)!r}: cannot create its folder: {error}; "
            "pick a path in a writable folder"
        ) from error


def _create_engine(url: str | URL) -> Engine:
    parsed = make_url(url)
    options: dict[str, Any] = {"json_serializer": to_json}

    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite and _is_memory(parsed):
        # One shared connection, or every connection would see its own
        # empty in-memory database.
        options["poolclass"] = StaticPool
        options["connect_args"] = {"check_same_thread": False}
    elif is_sqlite and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)

    engine = create_engine(parsed, **options)
    if is_sqlite:
        _configure_sqlite(engine)
    return engine


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: object) -> None:
        # Let the begin event below start transactions, not the driver, so
        # that writes can take the lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        is_write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if is_write else "BEGIN")
