"""Failures answer 4xx in SigOpt's shape, naming the field, storing nothing."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from optiloop.service import MAX_BODY_BYTES


def experiment_url(api: TestClient, spec: dict[str, Any]) -> str:
    return f"/v1/experiments/{api.post('/v1/experiments', json=spec).json()['id']}"


def assert_error(answer: Any, status: int, *words: str) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["status"] == status
    for word in words:
        assert word in body["message"]


@pytest.mark.parametrize(
    "header",
    [None, "Basic " + base64.b64encode(b"olt_not-a-token:").decode(), "Bearer nope"],
)
def test_missing_or_wrong_token_answers_401(
    app_client: TestClient, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    answer = app_client.get("/v1/experiments", headers=headers)
    assert_error(answer, 401, "token")
    assert answer.headers["WWW-Authenticate"].startswith("Basic")


def test_bearer_token_is_accepted(
    app_client: TestClient, tokens: tuple[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {tokens[0]}"}
    answer = app_client.get("/v1/experiments", headers=headers)
    assert answer.status_code == 200
    assert answer.json()["count"] == 0


def test_another_tokens_experiment_is_not_found(
    api: TestClient, other: TestClient, spec: dict[str, Any]
) -> None:
    url = experiment_url(api, spec)

    for method in ("get", "delete"):
        assert_error(getattr(other, method)(url), 404, "not found")
    assert_error(other.post(f"{url}/suggestions"), 404)
    assert_error(other.put(url, json={"name": "stolen"}), 404)
    assert other.get("/v1/experiments").json()["count"] == 0

    # The owner still sees it untouched.
    assert api.get(url).json()["name"] == spec["name"]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ('{"value": NaN, "assignments": {"x": 0, "n": 1}}', ["NaN", "finite"]),
        ('{"value": 1e999, "assignments": {"x": 0, "n": 1}}', ["1e999"]),
        ('{"value": Infinity, "assignments": {"x": 0, "n": 1}}', ["Infinity"]),
        ("[1, 2]", ["JSON object"]),
        ("{not json", ["not valid JSON"]),
        ('{"assignments": {"x": 0, "n": 1}, "value": 1, "colour": 2}', ["colour"]),
        ('{"assignments": {"x": 7, "n": 1}, "value": 1}', ["x"]),
        ('{"assignments": {"x": 0, "n": 1}, "value": "high"}', ["value"]),
    ],
)
def test_bad_observations_answer_400_and_store_nothing(
    api: TestClient, spec: dict[str, Any], raw: str, words: list[str]
) -> None:
    url = experiment_url(api, spec)
    answer = api.post(
        f"{url}/observations",
        content=raw,
        headers={"Content-Type": "application/json"},
    )
    assert_error(answer, 400, *words)
    assert api.get(f"{url}/observations").json()["count"] == 0


@pytest.mark.parametrize(
    ("change", "word"),
    [
        ({"parameters": "none"}, "parameters"),
        ({"observation_budget": -3}, "observation_budget"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"parameters": [{"name": "x", "type": "double"}]}, "bounds"),
    ],
)
def test_bad_specs_answer_400_naming_the_field(
    api: TestClient, spec: dict[str, Any], change: dict[str, Any], word: str
) -> None:
    answer = api.post("/v1/experiments", json={**spec, **change})
    assert_error(answer, 400, word)
    assert api.get("/v1/experiments").json()["count"] == 0


def test_huge_body_answers_413(api: TestClient, spec: dict[str, Any]) -> None:
    padded = {**spec, "metadata": {"padding": "x" * MAX_BODY_BYTES}}
    assert_error(api.post("/v1/experiments", json=padded), 413, "limit")


def test_bad_query_parameter_names_it(api: TestClient) -> None:
    answer = api.get("/v1/experiments", params={"limit": "many"})
    assert_error(answer, 400, "limit")
    assert_error(api.get("/v1/experiments", params={"state": "lost"}), 400, "state")


def test_spent_budget_answers_409(api: TestClient, spec: dict[str, Any]) -> None:
    url = experiment_url(api, {**spec, "observation_budget": 1})
    assert api.post(f"{url}/suggestions").status_code == 200
    assert_error(api.post(f"{url}/suggestions"), 409, "budget")


def test_unknown_route_and_method_answer_in_sigopt_shape(api: TestClient) -> None:
    assert_error(api.get("/v1/nothing"), 404, "endpoint not found")
    assert_error(api.patch("/v1/experiments"), 405, "not allowed")
    assert_error(api.get("/v1/experiments/abc"), 404, "abc")


def test_idempotency_key_creates_one_object(
    api: TestClient, spec: dict[str, Any]
) -> None:
    url = experiment_url(api, spec)
    headers = {"Idempotency-Key": "retry-1"}

    first = api.post(f"{url}/suggestions", headers=headers)
    again = api.post(f"{url}/suggestions", headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert api.get(f"{url}/suggestions").json()["count"] == 1

    elsewhere = api.post("/v1/experiments", json=spec, headers=headers)
    assert_error(elsewhere, 422, "retry-1", "new key")


def test_idempotency_key_after_a_refusal_may_be_retried(
    api: TestClient, spec: dict[str, Any]
) -> None:
    headers = {"Idempotency-Key": "spec-v1"}
    bad = api.post("/v1/experiments", json={**spec, "type": "psychic"}, headers=headers)
    assert bad.status_code == 400

    good = api.post("/v1/experiments", json=spec, headers=headers)
    assert good.status_code == 200
    assert json.loads(good.text)["name"] == spec["name"]


def test_suggestion_with_fields_is_refused(
    api: TestClient, spec: dict[str, Any]
) -> None:
    url = experiment_url(api, spec)
    answer = api.post(f"{url}/suggestions", json={"assignments": {"x": 0, "n": 1}})
    assert_error(answer, 400, "suggestion.assignments", "observation")
    assert api.get(f"{url}/suggestions").json()["count"] == 0
