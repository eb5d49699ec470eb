"""Fixtures of the service tests: an app on a fresh SQLite file, two tokens.

``api`` is a FastAPI test client signed in with the first token (as the
sigopt client signs in: basic authentication, token as user name); ``other``
is signed in with the second.  No socket is opened.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from optiloop.service import create_app
from optiloop.store import Store

SPEC: dict[str, Any] = {
    "name": "service test",
    "type": "random",
    "parameters": [
        {"name": "x", "type": "double", "bounds": {"min": -1, "max": 1}},
        {"name": "n", "type": "int", "bounds": {"min": 1, "max": 5}},
    ],
    "metrics": [{"name": "y", "objective": "minimize"}],
    "observation_budget": 20,
}


@pytest.fixture
def spec() -> dict[str, Any]:
    return copy.deepcopy(SPEC)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'service.db'}"


@pytest.fixture
def tokens(db_url: str) -> tuple[str, str]:
    with Store(db_url) as store:
        _, first = store.create_token("first")
        _, second = store.create_token("second")
    return first, second


@pytest.fixture
def app_client(db_url: str, tokens: tuple[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(db_url)) as client:
        yield client


@pytest.fixture
def api(app_client: TestClient, tokens: tuple[str, str]) -> TestClient:
    app_client.auth = httpx.BasicAuth(tokens[0], "")
    return app_client


@pytest.fixture
def other(db_url: str, tokens: tuple[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(db_url)) as client:
        client.auth = httpx.BasicAuth(tokens[1], "")
        yield client
