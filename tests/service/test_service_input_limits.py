"""Input that no database stores answers 400 naming the field, on both back ends.

Deep nesting, NUL characters and lone surrogates once reached the database
(or Python's recursion limit) and answered 5xx; a database failure answered
with its URL and SQL.  Every case here runs on SQLite and, when
``OPTILOOP_TEST_POSTGRES_URL`` is set, on PostgreSQL.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from optiloop.client.local import MAX_NESTING, LocalDriver
from optiloop.errors import StoreError
from optiloop.service import create_app
from optiloop.service.errors import DATABASE_FAILED
from optiloop.store import Store

from .conftest import SPEC

SURROGATE = "\\ud800"  # as JSON writes it: a lone high surrogate
NUL = "\\u0000"


@pytest.fixture
def api_on_each_backend(database_url: str) -> Iterator[TestClient]:
    with Store(database_url) as store:
        token = store.create_token("limits")[1]
    with TestClient(create_app(database_url)) as client:
        client.auth = httpx.BasicAuth(token, "")
        yield client


def post_raw(api: TestClient, url: str, raw: str, method: str = "POST") -> Any:
    headers = {"Content-Type": "application/json"}
    return api.request(method, url, content=raw.encode("ascii"), headers=headers)


def assert_refused(answer: Any, *words: str) -> None:
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["status"] == 400
    for word in words:
        assert word in body["message"], body["message"]


def spec_with(field: str, raw_value: str) -> str:
    """SPEC as JSON, with ``field`` set to the raw JSON text ``raw_value``."""
    spec = copy.deepcopy(SPEC)
    spec[field] = "PLACEHOLDER"
    return json.dumps(spec).replace('"PLACEHOLDER"', raw_value)


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def experiment_count(api: TestClient) -> int:
    count: int = api.get("/v1/experiments").json()["count"]
    return count


def test_metadata_nested_300_levels_answers_400_naming_metadata(
    api_on_each_backend: TestClient,
) -> None:
    api = api_on_each_backend
    raw = spec_with("metadata", nested(300))
    assert len(raw) < 3000

    answer = post_raw(api, "/v1/experiments", raw)

    assert_refused(answer, "metadata", f"{MAX_NESTING} levels")
    assert experiment_count(api) == 0


def test_metadata_nested_within_the_limit_is_stored(
    api_on_each_backend: TestClient,
) -> None:
    api = api_on_each_backend
    # The body is level 1 and metadata level 2: 60 more stay within 64.
    answer = post_raw(api, "/v1/experiments", spec_with("metadata", nested(60)))

    assert answer.status_code == 200, answer.text
    depth, node = 0, answer.json()["metadata"]
    while isinstance(node, dict):
        depth, node = depth + 1, node["a"]
    assert depth == 60


def test_body_too_deep_for_the_json_reader_answers_400(
    api_on_each_backend: TestClient,
) -> None:
    answer = post_raw(api_on_each_backend, "/v1/experiments", "[" * 200_000)
    assert_refused(answer, "request body", "nested")


@pytest.mark.parametrize(
    ("field", "raw_value", "named"),
    [
        ("name", f'"a{SURROGATE}b"', "name"),
        ("metadata", f'{{"note": "x{SURROGATE}"}}', "metadata.note"),
        ("metadata", f'{{"k{SURROGATE}": 1}}', "metadata.k"),
        ("name", f'"a{NUL}b"', "name"),
        ("metadata", f'{{"list": [1, "{NUL}"]}}', "metadata.list[1]"),
    ],
)
def test_bad_text_in_a_spec_answers_400_naming_the_field(
    api_on_each_backend: TestClient, field: str, raw_value: str, named: str
) -> None:
    api = api_on_each_backend
    answer = post_raw(api, "/v1/experiments", spec_with(field, raw_value))

    what = "NUL" if NUL in raw_value else "surrogate"
    assert_refused(answer, named, what)
    assert experiment_count(api) == 0


def test_bad_text_in_a_categorical_value_answers_400(
    api_on_each_backend: TestClient,
) -> None:
    spec = copy.deepcopy(SPEC)
    spec["parameters"].append(
        {"name": "c", "type": "categorical", "categorical_values": ["PLACEHOLDER"]}
    )
    raw = json.dumps(spec).replace("PLACEHOLDER", f"x{SURROGATE}")

    answer = post_raw(api_on_each_backend, "/v1/experiments", raw)

    assert_refused(answer, "parameters[2].categorical_values[0]", "surrogate")


@pytest.mark.parametrize("bad", [SURROGATE, NUL])
def test_bad_text_in_observations_and_updates_answers_400(
    api_on_each_backend: TestClient, bad: str
) -> None:
    api = api_on_each_backend
    url = f"/v1/experiments/{api.post('/v1/experiments', json=SPEC).json()['id']}"
    point = '"assignments": {"x": 0, "n": 1}, "value": 1'

    observed = post_raw(
        api, f"{url}/observations", f'{{{point}, "metadata": {{"m": "{bad}"}}}}'
    )
    assert_refused(observed, "metadata.m")
    assert api.get(f"{url}/observations").json()["count"] == 0

    renamed = post_raw(api, url, f'{{"name": "new{bad}"}}', method="PUT")
    assert_refused(renamed, "name")
    assert api.get(url).json()["name"] == SPEC["name"]

    stored = api.post(
        f"{url}/observations", json={"assignments": {"x": 0, "n": 1}, "value": 1}
    ).json()
    corrected = post_raw(
        api,
        f"{url}/observations/{stored['id']}",
        f'{{"metadata": {{"why": "{bad}"}}}}',
        method="PUT",
    )
    assert_refused(corrected, "metadata.why")


def test_bad_text_in_a_suggestion_body_key_answers_400(
    api_on_each_backend: TestClient,
) -> None:
    api = api_on_each_backend
    url = f"/v1/experiments/{api.post('/v1/experiments', json=SPEC).json()['id']}"

    answer = post_raw(api, f"{url}/suggestions", f'{{"k{SURROGATE}": 1}}')

    assert_refused(answer, "surrogate")


class FailingStoreDriver(LocalDriver):
    """A driver whose database fails as SQLAlchemy's errors read."""

    def create_experiment(
        self, body: Any, owner_token_id: int | None = None
    ) -> dict[str, Any]:
        raise StoreError(
            "database error at postgresql+psycopg://admin:hunter2@db/optiloop: "
            "(psycopg.DataError) [SQL: INSERT INTO experiments (name) VALUES "
            "(%(name)s)] [parameters: {'name': 'secret-name'}]"
        )


def test_a_database_failure_answers_503_without_its_details(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(db_url)
    token = store.create_token("failing")[1]
    app = create_app(db_url, driver=FailingStoreDriver(store))

    with TestClient(app) as api, caplog.at_level(logging.ERROR):
        api.auth = httpx.BasicAuth(token, "")
        answer = api.post("/v1/experiments", json=SPEC)

    assert answer.status_code == 503
    assert answer.json() == {
        "message": DATABASE_FAILED,
        "status": 503,
        "type": "StoreError",
    }
    for secret in ("hunter2", "postgresql", "INSERT", "secret-name"):
        assert secret not in answer.text
    assert "hunter2" in caplog.text and "INSERT INTO" in caplog.text


def test_idempotency_key_reused_with_another_body_is_refused(
    api: TestClient,
) -> None:
    headers = {"Idempotency-Key": "create-once"}
    first = api.post("/v1/experiments", json=SPEC, headers=headers)
    retry = api.post("/v1/experiments", json=SPEC, headers=headers)
    assert first.status_code == retry.status_code == 200
    assert retry.json()["id"] == first.json()["id"]

    changed = api.post(
        "/v1/experiments", json={**SPEC, "name": "another"}, headers=headers
    )

    assert changed.status_code == 422, changed.text
    assert "create-once" in changed.json()["message"]
    assert "another request" in changed.json()["message"]
    assert [e["name"] for e in api.get("/v1/experiments").json()["data"]] == [
        SPEC["name"]
    ]


def test_openapi_declares_both_token_schemes_on_every_v1_route(
    api: TestClient,
) -> None:
    document = api.get("/openapi.json").json()

    schemes = document["components"]["securitySchemes"]
    assert schemes["basicAuth"] == {**schemes["basicAuth"], "scheme": "basic"}
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert {s["type"] for s in schemes.values()} == {"http"}

    operations = [
        operation
        for path, methods in document["paths"].items()
        if path.startswith("/v1/")
        for operation in methods.values()
    ]
    assert len(operations) >= 20
    for operation in operations:
        assert operation["security"] == [{"basicAuth": []}, {"bearerAuth": []}]
        assert "503" in operation["responses"]


@pytest.mark.parametrize("raw", ["1e300", "true", "1.5", '{"id": 1}', '"abc"'])
def test_a_suggestion_that_is_no_id_answers_400_naming_it(
    api: TestClient, raw: str
) -> None:
    url = f"/v1/experiments/{api.post('/v1/experiments', json=SPEC).json()['id']}"

    answer = post_raw(
        api, f"{url}/observations", f'{{"suggestion": {raw}, "value": 1}}'
    )

    assert_refused(answer, "suggestion")


def test_a_missing_suggestion_still_answers_404(api: TestClient) -> None:
    url = f"/v1/experiments/{api.post('/v1/experiments', json=SPEC).json()['id']}"
    answer = api.post(f"{url}/observations", json={"suggestion": "77", "value": 1})
    assert answer.status_code == 404


def test_observations_with_assignments_keep_to_the_budget(api: TestClient) -> None:
    spec = {**SPEC, "observation_budget": 3, "parallel_bandwidth": 2}
    url = f"/v1/experiments/{api.post('/v1/experiments', json=spec).json()['id']}"
    point = {"assignments": {"x": 0.5, "n": 2}, "value": 1.0}

    assert api.post(f"{url}/observations", json=point).status_code == 200
    open_one = api.post(f"{url}/suggestions").json()
    assert api.post(f"{url}/observations", json=point).status_code == 200

    # 2 observed + 1 open suggestion = the budget of 3.
    spent = api.post(f"{url}/observations", json=point)
    assert spent.status_code == 409, spent.text
    assert "observation budget spent" in spent.json()["message"]
    assert api.get(f"{url}/observations").json()["count"] == 2

    # The open suggestion keeps its place and may still be observed.
    closing = {"suggestion": open_one["id"], "value": 2.0}
    assert api.post(f"{url}/observations", json=closing).status_code == 200
    assert api.get(f"{url}/observations").json()["count"] == 3


def test_idempotency_key_on_a_long_path_is_kept(
    api_on_each_backend: TestClient,
) -> None:
    api = api_on_each_backend
    made = api.post("/v1/experiments", json=SPEC).json()
    # Ids may carry leading zeros, so a path may be longer than any column.
    url = f"/v1/experiments/{made['id']:0>400}/suggestions"
    headers = {"Idempotency-Key": "long-path"}

    first = api.post(url, headers=headers)
    again = api.post(url, headers=headers)

    assert first.status_code == again.status_code == 200, first.text
    assert first.json()["id"] == again.json()["id"]
