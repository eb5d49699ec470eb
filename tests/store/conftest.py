"""Fixtures of the store tests: a fresh SQLite file per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from optiloop.experiment import ExperimentSpec, parse_spec
from optiloop.store import Store


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


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
