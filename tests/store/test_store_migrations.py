"""Migrations build the schema of the models, with SQLite set up for sharing."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from optiloop.errors import OptiloopError
from optiloop.store import Store
from optiloop.store.engine import SQLITE_BUSY_TIMEOUT_MS, create_store_engine
from optiloop.store.models import Base


def test_fresh_file_gets_the_schema_and_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "there.db"
    Store(f"sqlite:///{path}").close()

    assert path.is_file()
    with sqlite3.connect(path) as raw:
        tables = {
            name
            for (name,) in raw.execute(
                "SELECT name FROM sqlite_master WHERE type='table'"
            )
        }
        (revision,) = raw.execute("SELECT version_num FROM alembic_version").fetchone()
    assert {"experiments", "suggestions", "observations"} <= tables
    assert revision == "0005"


def test_migrated_schema_matches_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'compare.db'}"
    Store(url).close()

    engine = create_store_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert differences == []


def test_reopening_keeps_data_and_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'again.db'}"
    for _ in range(3):
        Store(url).close()
    with sqlite3.connect(tmp_path / "again.db") as raw:
        rows = raw.execute("SELECT version_num FROM alembic_version").fetchall()
    assert rows == [("0005",)]


def test_sqlite_connections_use_wal_foreign_keys_and_wait(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pragmas.db'}"
    Store(url).close()

    engine = create_store_engine(url)
    with engine.connect() as connection:
        journal = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
        foreign_keys = connection.exec_driver_sql("PRAGMA foreign_keys").scalar()
        timeout = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
    engine.dispose()

    assert journal == "wal"
    assert foreign_keys == 1
    assert timeout == SQLITE_BUSY_TIMEOUT_MS


def test_wal_mode_persists_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    Store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as raw:
        (journal,) = raw.execute("PRAGMA journal_mode").fetchone()
    assert journal == "wal"


def test_a_database_from_a_newer_optiloop_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    Store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE alembic_version SET version_num = '9999'")

    with pytest.raises(OptiloopError, match="current schema") as caught:
        Store(f"sqlite:///{path}")
    assert caught.value.__cause__ is not None


def test_upgrade_from_0001_keeps_experiments_without_an_owner(
    database_url: str,
) -> None:
    from alembic import command
    from sqlalchemy import text

    from optiloop.store import alembic_config

    # A database as the first release left it, with one experiment.
    command.upgrade(alembic_config(database_url), "0001")
    spec = {
        "name": "old",
        "parameters": [{"name": "x", "type": "int", "bounds": {"min": 1, "max": 2}}],
        "metrics": [{"name": "y"}],
    }
    insert = text(
        "INSERT INTO experiments (name, spec, state, created, updated) "
        "VALUES ('old', :spec, 'active', :now, :now)"
    )
    engine = create_store_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            insert, {"spec": json.dumps(spec), "now": datetime(2026, 1, 1, tzinfo=UTC)}
        )
    engine.dispose()

    with Store(database_url) as store:
        (record,) = store.list_experiments()
        _, secret = store.create_token("after the upgrade")
        assert store.find_token(secret) is not None
    assert record.spec.name == "old"
    assert record.owner_token_id is None


def test_upgrade_from_0003_keeps_tokens_valid(database_url: str) -> None:
    from alembic import command
    from sqlalchemy import text

    from optiloop.store import alembic_config
    from optiloop.store.store import token_digest

    # A token made before tokens could be revoked.
    command.upgrade(alembic_config(database_url), "0003")
    insert = text(
        "INSERT INTO tokens (name, digest, created) VALUES ('old', :digest, :now)"
    )
    engine = create_store_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            insert,
            {
                "digest": token_digest("olt_old-secret"),
                "now": datetime(2026, 1, 1, tzinfo=UTC),
            },
        )
    engine.dispose()

    with Store(database_url) as store:
        found = store.find_token("olt_old-secret")
        assert found is not None and found.name == "old" and not found.revoked
        store.revoke_token("old")
        assert store.find_token("olt_old-secret") is None
