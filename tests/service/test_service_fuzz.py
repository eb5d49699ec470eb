"""Property-based fuzzing of the routes: no input makes the server answer 5xx.

Hypothesis builds bodies from the fields each route knows, filled with any
JSON value (NaN and infinity included, deeply nested, huge integers), and
query parameters of any text.  Whatever it sends, the answer is below 500
and in SigOpt's error shape when it is an error.  The number of cases is
bounded so that the file runs in seconds.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optiloop.service import create_app
from optiloop.store import Store

CASES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

SPEC: dict[str, Any] = {
    "name": "fuzzed",
    "type": "random",
    "parameters": [
        {"name": "x", "type": "double", "bounds": {"min": -1, "max": 1}},
        {"name": "c", "type": "categorical", "categorical_values": ["a", "b"]},
    ],
    "metrics": [{"name": "y", "objective": "minimize"}],
    "observation_budget": 1000,
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def bodies(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects whose keys are mostly the route's fields, values anything."""
    keys = st.sampled_from([*fields, "unknown"]) | st.text(max_size=8)
    return st.dictionaries(keys, json_values, max_size=5)


SPEC_FIELDS = [*SPEC, "parallel_bandwidth", "seeds_per_point", "metadata", "job"]
OBSERVATION_FIELDS = [
    "suggestion",
    "assignments",
    "values",
    "value",
    "value_stddev",
    "failed",
    "metadata",
]


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db_url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
    with Store(db_url) as store:
        token = store.create_token("fuzz")[1]
    with TestClient(create_app(db_url), raise_server_exceptions=False) as client:
        client.auth = httpx.BasicAuth(token, "")
        yield client


@pytest.fixture(scope="module")
def experiment_url(fuzz_client: TestClient) -> str:
    created = fuzz_client.post("/v1/experiments", json=SPEC).json()
    return f"/v1/experiments/{created['id']}"


def send(client: TestClient, method: str, url: str, body: Any) -> httpx.Response:
    # json.dumps writes NaN and Infinity, which a careless client might send.
    raw = json.dumps(body, allow_nan=True)
    headers = {"Content-Type": "application/json"}
    return client.request(method, url, content=raw, headers=headers)


def assert_answered(answer: httpx.Response) -> None:
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        assert set(answer.json()) >= {"message", "status"}


@CASES
@given(changes=bodies(SPEC_FIELDS))
def test_experiment_create(fuzz_client: TestClient, changes: dict[str, Any]) -> None:
    assert_answered(send(fuzz_client, "POST", "/v1/experiments", SPEC | changes))


@CASES
@given(body=bodies(SPEC_FIELDS))
def test_experiment_update(
    fuzz_client: TestClient, experiment_url: str, body: dict[str, Any]
) -> None:
    assert_answered(send(fuzz_client, "PUT", experiment_url, body))


@CASES
@given(body=bodies(OBSERVATION_FIELDS))
def test_observation_create(
    fuzz_client: TestClient, experiment_url: str, body: dict[str, Any]
) -> None:
    url = f"{experiment_url}/observations"
    assert_answered(send(fuzz_client, "POST", url, body))


@CASES
@given(body=bodies(OBSERVATION_FIELDS))
def test_observation_update(
    fuzz_client: TestClient, experiment_url: str, body: dict[str, Any]
) -> None:
    observed = send(
        fuzz_client,
        "POST",
        f"{experiment_url}/observations",
        {"assignments": {"x": 0.5, "c": "a"}, "value": 1.0},
    ).json()
    url = f"{experiment_url}/observations/{observed['id']}"
    assert_answered(send(fuzz_client, "PUT", url, body))


@CASES
@given(
    path=st.sampled_from(["", "/suggestions", "/observations", "/best_assignments"]),
    params=st.dictionaries(
        st.sampled_from(["state", "limit", "before", "after", "other"]),
        st.text(max_size=12),
        max_size=4,
    ),
    raw_id=st.text(max_size=12),
)
def test_reads_with_any_query_and_id(
    fuzz_client: TestClient,
    experiment_url: str,
    path: str,
    params: dict[str, str],
    raw_id: str,
) -> None:
    assert_answered(fuzz_client.get(f"{experiment_url}{path}", params=params))
    assert_answered(fuzz_client.get("/v1/experiments", params=params))
    quoted = urllib.parse.quote(raw_id, safe="") or "x"
    assert_answered(fuzz_client.get(f"/v1/experiments/{quoted}"))
