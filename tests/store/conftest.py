"""Fixtures of the store tests: a fresh database per test, on each backend.

Every test that takes ``store`` or ``db_url`` runs on a SQLite file and, when
``OPTILOOP_TEST_POSTGRES_URL`` is set, on a new PostgreSQL database (see
``database_url`` in the top-level conftest).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from optiloop.experiment import ExperimentSpec, parse_spec
from optiloop.store import Store


@pytest.fixture
def db_url(database_url: str) -> str:
    return database_url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store(db_url) as opened:
        yield opened


@pytest.fixture
def spec() -> ExperimentSpec:
    return parse_spec(
        {
            "name": "small",
            "parameters": [
                {"name": "lr", "type": "double", "bounds": {"min": 0.1, "max": 1}},
                {"name": "depth", "type": "int", "bounds": {"min": 1, "max": 4}},
            ],
            "metrics": [{"name": "loss", "objective": "minimize"}],
        }
    )
