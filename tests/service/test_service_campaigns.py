"""optiloop's campaign routes: create, read, update, and their experiments."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient


def campaign_file(spec: dict[str, Any]) -> dict[str, Any]:
    rest = {k: v for k, v in spec.items() if k != "observation_budget"}
    return {
        **rest,
        "job": {"command": "train --x {x} --n {n} --seed {seed}"},
        "rounds": {"max": 2, "budget": 4},
    }


def create_campaign(api: TestClient, spec: dict[str, Any]) -> dict[str, Any]:
    answer = api.post("/v1/campaigns", json={"file": campaign_file(spec)})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_a_campaign_and_its_experiments(api: TestClient, spec: dict[str, Any]) -> None:
    campaign = create_campaign(api, spec)
    assert campaign["object"] == "campaign"
    assert campaign["name"] == "service test"
    assert campaign["state"] == "running"
    assert campaign["file"]["rounds"] == {"max": 2, "budget": 4}
    base = f"/v1/campaigns/{campaign['id']}"

    round_spec = {**spec, "observation_budget": 5}
    created = api.post(
        f"{base}/experiments",
        json={
            "experiment": round_spec,
            "role": "round",
            "round": 2,
            "refinement": {"from_round": 1},
            "observations": [
                {
                    "assignments": {"x": 0.5, "n": 2},
                    "values": [{"name": "y", "value": 1.5}],
                    "metadata": {"warm_start": {"observation": 3}},
                }
            ],
        },
    )
    assert created.status_code == 200, created.text
    experiment = created.json()
    assert experiment["campaign"] == {
        "id": campaign["id"],
        "round": 2,
        "role": "round",
        "refinement": {"from_round": 1},
    }
    assert experiment["progress"]["observation_count"] == 1

    listed = api.get(f"{base}/experiments").json()
    assert [e["id"] for e in listed["data"]] == [experiment["id"]]
    # The experiment is the caller's, through SigOpt's routes too.
    assert api.get(f"/v1/experiments/{experiment['id']}").status_code == 200

    done = api.put(base, json={"state": "done", "result": {"best": None}})
    assert done.status_code == 200, done.text
    assert (done.json()["state"], done.json()["result"]) == ("done", {"best": None})
    assert api.get("/v1/campaigns").json()["count"] == 1


def test_another_tokens_campaign_answers_404(
    api: TestClient, other: TestClient, spec: dict[str, Any]
) -> None:
    base = f"/v1/campaigns/{create_campaign(api, spec)['id']}"

    for answer in (
        other.get(base),
        other.put(base, json={"state": "done"}),
        other.get(f"{base}/experiments"),
        other.post(
            f"{base}/experiments",
            json={"experiment": spec, "role": "validation"},
        ),
    ):
        assert answer.status_code == 404, answer.text
        assert answer.json()["message"].startswith("campaign")
    assert other.get("/v1/campaigns").json()["count"] == 0
    assert api.get(base).json()["state"] == "running"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "file: a campaign needs its file"),
        ({"file": {"rounds": {"max": 0, "budget": 1}}}, "rounds.max"),
        ({"file": {"name": "x"}, "color": 1}, "campaign.color: unknown field"),
    ],
)
def test_bad_campaigns_are_refused(
    api: TestClient, body: dict[str, Any], message: str
) -> None:
    answer = api.post("/v1/campaigns", json=body)
    assert answer.status_code == 400
    assert message in answer.json()["message"]


def test_a_server_never_imports_a_campaigns_evaluator(
    api: TestClient, spec: dict[str, Any]
) -> None:
    data = campaign_file(spec)
    data["evaluator"] = {"name": "os:system", "settings": {"command": "false"}}
    answer = api.post("/v1/campaigns", json={"file": data})
    # Stored as given: only the runner, on the user's side, loads it.
    assert answer.status_code == 200, answer.text
    assert answer.json()["file"]["evaluator"]["name"] == "os:system"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"role": "final"}, "role must be one of"),
        ({"role": "round"}, "round: an experiment with role round needs"),
        ({"round": 0}, "round must be a whole number >= 1"),
        (
            {"observations": [{"assignments": {"x": 9, "n": 1}}]},
            "observations[0]: assignments.x",
        ),
        ({"suggestions": [{"x": 0.1, "n": 1}]}, "suggestions[0] must be"),
        (
            {"suggestions": [{"assignments": {"x": 0.1, "n": 1}}] * 21},
            "pass the experiment's observation_budget 20",
        ),
    ],
)
def test_bad_campaign_experiments_are_refused_whole(
    api: TestClient, spec: dict[str, Any], changes: dict[str, Any], message: str
) -> None:
    base = f"/v1/campaigns/{create_campaign(api, spec)['id']}"
    body = {"experiment": spec, "role": "validation", **changes}

    answer = api.post(f"{base}/experiments", json=body)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["message"]
    assert api.get(f"{base}/experiments").json()["count"] == 0
    assert api.get("/v1/experiments").json()["count"] == 0
