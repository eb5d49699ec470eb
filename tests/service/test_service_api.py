"""The REST routes in SigOpt's shapes: experiments, suggestions, observations."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def create(api: TestClient, spec: dict[str, Any]) -> dict[str, Any]:
    answer = api.post("/v1/experiments", json=spec)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_a_whole_loop_finds_the_lowest_value(
    api: TestClient, spec: dict[str, Any]
) -> None:
    experiment = create(api, spec)
    base = f"/v1/experiments/{experiment['id']}"
    measured: dict[int, float] = {}

    for _ in range(6):
        suggestion = api.post(f"{base}/suggestions").json()
        assert suggestion["object"] == "suggestion"
        assert suggestion["state"] == "open"
        point = suggestion["assignments"]
        assert -1 <= point["x"] <= 1 and point["n"] in range(1, 6)

        value = (point["x"] - 0.25) ** 2 + point["n"]
        observation = api.post(
            f"{base}/observations",
            json={
                "suggestion": str(suggestion["id"]),
                "values": [{"name": "y", "value": value, "value_stddev": 0.1}],
            },
        ).json()
        assert observation["suggestion"] == suggestion["id"]
        assert observation["values"][0]["value_stddev"] == 0.1
        measured[observation["id"]] = value

    fetched = api.get(base).json()
    assert fetched["progress"]["observation_count"] == 6
    best = api.get(f"{base}/best_assignments").json()
    assert best["object"] == "pagination"
    assert best["count"] == 1
    lowest = min(measured, key=measured.__getitem__)
    assert best["data"][0]["id"] == lowest
    assert best["data"][0]["value"] == measured[lowest]

    closed = api.get(f"{base}/suggestions", params={"state": "closed"}).json()
    assert closed["count"] == 6


def test_observation_by_assignments_and_a_failed_one(
    api: TestClient, spec: dict[str, Any]
) -> None:
    base = f"/v1/experiments/{create(api, spec)['id']}"
    by_point = api.post(
        f"{base}/observations",
        json={"assignments": {"x": 0.5, "n": 2}, "value": 3.0},
    )
    assert by_point.status_code == 200
    assert by_point.json()["suggestion"] is None
    assert by_point.json()["values"][0] == {
        "object": "metric_evaluation",
        "name": "y",
        "value": 3.0,
        "value_stddev": None,
    }

    suggestion = api.post(f"{base}/suggestions").json()
    failed = api.post(
        f"{base}/observations", json={"suggestion": suggestion["id"], "failed": True}
    )
    assert failed.json()["failed"] is True
    assert failed.json()["values"] == []


def test_update_experiment_changes_only_what_sigopt_allows(
    api: TestClient, spec: dict[str, Any]
) -> None:
    base = f"/v1/experiments/{create(api, spec)['id']}"
    changed = api.put(
        base,
        json={
            "name": "renamed",
            "observation_budget": 40,
            "parallel_bandwidth": 3,
            "metadata": {"team": "vision"},
        },
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["name"], body["observation_budget"]) == ("renamed", 40)
    assert (body["parallel_bandwidth"], body["metadata"]) == (3, {"team": "vision"})
    assert api.get(base).json()["name"] == "renamed"

    refused = api.put(base, json={"parameters": []})
    assert refused.status_code == 400
    assert "experiment.parameters" in refused.json()["message"]


def test_update_and_delete_an_observation(
    api: TestClient, spec: dict[str, Any]
) -> None:
    base = f"/v1/experiments/{create(api, spec)['id']}"
    observation = api.post(
        f"{base}/observations",
        json={"assignments": {"x": 0.0, "n": 1}, "value": 1.0},
    ).json()
    url = f"{base}/observations/{observation['id']}"

    updated = api.put(url, json={"value": 0.5, "value_stddev": 0.01}).json()
    assert (updated["value"], updated["value_stddev"]) == (0.5, 0.01)
    assert updated["assignments"] == {"x": 0.0, "n": 1}
    assert api.put(url, json={"failed": True}).json()["values"] == []

    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404
    assert api.get(f"{base}/observations").json()["count"] == 0


def test_delete_suggestions_one_and_all_open(
    api: TestClient, spec: dict[str, Any]
) -> None:
    base = f"/v1/experiments/{create(api, {**spec, 'parallel_bandwidth': 3})['id']}"
    ids = [api.post(f"{base}/suggestions").json()["id"] for _ in range(3)]

    assert api.delete(f"{base}/suggestions/{ids[0]}").status_code == 204
    assert api.get(f"{base}/suggestions/{ids[0]}").status_code == 404
    assert api.get(f"{base}/suggestions").json()["count"] == 2

    assert (
        api.delete(f"{base}/suggestions", params={"state": "open"}).status_code == 204
    )
    assert api.get(f"{base}/suggestions").json()["count"] == 0


def test_closed_suggestion_cannot_be_deleted(
    api: TestClient, spec: dict[str, Any]
) -> None:
    base = f"/v1/experiments/{create(api, spec)['id']}"
    suggestion = api.post(f"{base}/suggestions").json()
    api.post(f"{base}/observations", json={"suggestion": suggestion["id"], "value": 1})

    refused = api.delete(f"{base}/suggestions/{suggestion['id']}")
    assert refused.status_code == 400
    assert "delete the observation instead" in refused.json()["message"]


def test_deleted_experiment_is_listed_only_when_asked(
    api: TestClient, spec: dict[str, Any]
) -> None:
    kept, dropped = create(api, spec)["id"], create(api, spec)["id"]
    assert api.delete(f"/v1/experiments/{dropped}").status_code == 204

    def ids(state: str) -> list[int]:
        page = api.get("/v1/experiments", params={"state": state}).json()
        return [item["id"] for item in page["data"]]

    assert ids("active") == [kept]
    assert ids("deleted") == [dropped]
    assert ids("all") == [dropped, kept]
    assert api.get(f"/v1/experiments/{dropped}").json()["state"] == "deleted"


def test_a_suggestion_beyond_the_parallel_bandwidth_is_a_conflict(
    api: TestClient, spec: dict[str, Any]
) -> None:
    base = f"/v1/experiments/{create(api, {**spec, 'parallel_bandwidth': 2})['id']}"
    for _ in range(2):
        assert api.post(f"{base}/suggestions").status_code == 200

    refused = api.post(f"{base}/suggestions")

    assert refused.status_code == 409
    assert refused.json()["type"] == "BandwidthError"
    assert "2 open suggestions >= parallel_bandwidth 2" in refused.json()["message"]
    assert api.get(f"{base}/suggestions").json()["count"] == 2


def test_pages_walk_newest_first_with_before_markers(
    api: TestClient, spec: dict[str, Any]
) -> None:
    base = f"/v1/experiments/{create(api, {**spec, 'parallel_bandwidth': 5})['id']}"
    made = [api.post(f"{base}/suggestions").json()["id"] for _ in range(5)]

    seen: list[int] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = api.get(f"{base}/suggestions", params=params).json()
        assert page["count"] == 5
        seen += [item["id"] for item in page["data"]]
        if page["paging"]["before"] is None:
            break
        params["before"] = page["paging"]["before"]
    assert seen == sorted(made, reverse=True)

    newer = api.get(f"{base}/suggestions", params={"after": made[1], "limit": 2})
    assert [item["id"] for item in newer.json()["data"]] == [made[3], made[2]]
    assert newer.json()["paging"]["after"] == str(made[3])


def test_openapi_document_lists_the_routes_and_real_errors(
    app_client: TestClient,
) -> None:
    document = app_client.get("/openapi.json").json()
    paths = document["paths"]

    assert set(paths["/v1/experiments/{experiment_id}"]) == {"get", "put", "delete"}
    assert set(paths["/v1/experiments/{experiment_id}/observations"]) == {
        "get",
        "post",
    }
    for operations in paths.values():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"400", "401", "404"} <= set(responses)
            # FastAPI's 422 (invalid parameters) is answered as 400; a POST
            # answers 422 only for an Idempotency-Key used for another body.
            if method == "post":
                assert "Idempotency-Key" in responses["422"]["description"]
            else:
                assert "422" not in responses
    assert document["components"]["schemas"]["Error"]["required"] == [
        "message",
        "status",
    ]


def test_budget_cannot_drop_below_the_observations_stored(
    api: TestClient, spec: dict[str, Any]
) -> None:
    base = f"/v1/experiments/{create(api, spec)['id']}"
    for x in (0.1, 0.2, 0.3):
        api.post(
            f"{base}/observations",
            json={"assignments": {"x": x, "n": 1}, "value": x},
        )

    refused = api.put(base, json={"observation_budget": 2})
    assert refused.status_code == 400
    assert "at least the 3 observations" in refused.json()["message"]
    assert api.put(base, json={"observation_budget": 3}).status_code == 200
    assert api.get(base).json()["observation_budget"] == 3
