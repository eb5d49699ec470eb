"""Fixtures of the client tests: a connection through each driver.

``conn`` is in-process on a fresh SQLite file, then (the same tests again)
over HTTP to a real server, with a fresh token so that the test sees only
its own experiments.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from optiloop.client import Connection

TWO_PARAMETERS: dict[str, Any] = {
    "name": "two parameters",
    "type": "random",
    "parameters": [
        {"name": "x", "type": "double", "bounds": {"min": -1, "max": 1}},
        {"name": "n", "type": "int", "bounds": {"min": 1, "max": 5}},
        {
            "name": "kind",
            "type": "categorical",
            "categorical_values": ["plain", "fancy"],
        },
    ],
    "metrics": [{"name": "y", "objective": "minimize"}],
}


SpecMaker = Callable[..., dict[str, Any]]


@pytest.fixture
def make_spec() -> SpecMaker:
    """Copies of TWO_PARAMETERS with top-level fields replaced."""

    def make(**changes: Any) -> dict[str, Any]:
        spec = copy.deepcopy(TWO_PARAMETERS)
        spec.update(changes)
        return spec

    return make


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'client.db'}"


@pytest.fixture(params=["local", "http"])
def conn(request: pytest.FixtureRequest, db_url: str) -> Iterator[Connection]:
    if request.param == "local":
        with Connection(db=db_url) as opened:
            yield opened
        return

    server = request.getfixturevalue("shared_server")
    with Connection(url=server.url, token=server.new_token()) as opened:
        yield opened
