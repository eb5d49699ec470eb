"""The routes behind the dashboard page, through FastAPI's test client.

No browser needed: these run wherever the service tests run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from plotly.offline import get_plotlyjs
from tests.browser.conftest import SPEC

from optiloop.experiment import MetricValue, parse_spec
from optiloop.service import create_app
from optiloop.store import Store


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, Store, dict[str, str], int]]:
    """A client, the store, bearer headers of two tokens, one experiment."""
    db_url = f"sqlite:///{tmp_path / 'dashboard.db'}"
    store = Store(db_url)
    mine, my_token = store.create_token("mine")
    _, their_token = store.create_token("theirs")
    experiment = store.create_experiment(parse_spec(SPEC), mine.id)
    headers = {
        "mine": f"Bearer {my_token}",
        "theirs": f"Bearer {their_token}",
    }
    with TestClient(create_app(db_url)) as client:
        yield client, store, headers, experiment
    store.close()


def test_the_page_is_served_without_a_token_and_holds_no_data(
    served: tuple[TestClient, Store, dict[str, str], int],
) -> None:
    client, _, _, _ = served

    answer = client.get("/")

    assert answer.status_code == 200
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert SPEC["name"] not in answer.text


def test_plotly_comes_from_the_installed_package(
    served: tuple[TestClient, Store, dict[str, str], int],
) -> None:
    client, _, _, _ = served

    answer = client.get("/static/plotly.min.js")

    assert answer.status_code == 200
    assert answer.text == get_plotlyjs()
    assert "max-age" in answer.headers["cache-control"]


def test_json_routes_ask_for_a_bearer_token(
    served: tuple[TestClient, Store, dict[str, str], int],
) -> None:
    client, _, _, experiment = served

    for path in ("/dashboard/api/overview", f"/dashboard/api/experiments/{experiment}"):
        answer = client.get(path)
        assert answer.status_code == 401
        # Not Basic: that would pop up the browser's own password dialog.
        assert answer.headers["www-authenticate"].startswith("Bearer")


def test_another_tokens_experiment_is_not_found(
    served: tuple[TestClient, Store, dict[str, str], int],
) -> None:
    client, _, headers, experiment = served

    answer = client.get(
        f"/dashboard/api/experiments/{experiment}",
        headers={"Authorization": headers["theirs"]},
    )
    overview = client.get(
        "/dashboard/api/overview", headers={"Authorization": headers["theirs"]}
    )

    assert answer.status_code == 404
    assert overview.json() == {"experiments": [], "campaigns": []}


def test_a_poll_is_short_until_an_observation_arrives(
    served: tuple[TestClient, Store, dict[str, str], int],
) -> None:
    client, store, headers, experiment = served
    path = f"/dashboard/api/experiments/{experiment}"
    auth = {"Authorization": headers["mine"]}

    first = client.get(path, headers=auth).json()
    assert first["observations"] == 0
    assert set(first["figures"]) == {
        "parallel-coordinates",
        "importance",
        "history",
        "metric-scatter",
        "correlation",
    }

    unchanged = client.get(path, params={"since": first["version"]}, headers=auth)
    assert unchanged.json() == {"version": first["version"], "changed": False}

    store.add_observation(
        experiment,
        {"lr": 0.01, "depth": 2, "optimizer": "adam"},
        [MetricValue("accuracy", 0.95), MetricValue("epochs", 12.0)],
    )
    changed = client.get(path, params={"since": first["version"]}, headers=auth)
    body = changed.json()
    assert body["changed"] is True
    assert body["observations"] == 1
    assert body["best"][0]["values"] == {"accuracy": 0.95, "epochs": 12.0}


def test_another_tokens_campaign_is_not_found(
    served: tuple[TestClient, Store, dict[str, str], int],
) -> None:
    client, store, headers, _ = served
    mine = store.find_token(headers["mine"].removeprefix("Bearer "))
    assert mine is not None
    campaign = store.create_campaign(
        "mine", {"rounds": {"max": 2, "budget": 4}}, mine.id
    )

    theirs = client.get(
        f"/dashboard/api/campaigns/{campaign}",
        headers={"Authorization": headers["theirs"]},
    )
    own = client.get(
        f"/dashboard/api/campaigns/{campaign}",
        headers={"Authorization": headers["mine"]},
    )

    assert theirs.status_code == 404
    assert own.status_code == 200
    assert own.json()["rounds"] == 0
    assert own.json()["max_rounds"] == 2


def test_runs_made_in_process_show_to_every_token(
    served: tuple[TestClient, Store, dict[str, str], int],
) -> None:
    # `optiloop run --db FILE` stores experiments and campaigns with no
    # owner; whoever serves that file watches them with any token.
    client, store, headers, mine = served
    local = store.create_experiment(parse_spec({**SPEC, "name": "local"}))
    campaign = store.create_campaign("local", {"rounds": {"max": 1, "budget": 2}})
    theirs = {"Authorization": headers["theirs"]}

    overview = client.get("/dashboard/api/overview", headers=theirs).json()

    assert [row["id"] for row in overview["experiments"]] == [local]
    assert [row["id"] for row in overview["campaigns"]] == [campaign]
    assert client.get(f"/dashboard/api/experiments/{local}", headers=theirs).is_success
    assert client.get(f"/dashboard/api/campaigns/{campaign}", headers=theirs).is_success
    assert client.get(f"/dashboard/api/experiments/{mine}", headers=theirs).is_error


def test_an_edit_or_a_delete_changes_the_page(
    served: tuple[TestClient, Store, dict[str, str], int],
) -> None:
    # Neither changes the counts of a page's version; the store's updated
    # time must carry them (a DELETE then a POST leaves the counts equal).
    client, _, headers, experiment = served
    auth = {"Authorization": headers["mine"]}
    runs = f"/v1/experiments/{experiment}/observations"
    page = f"/dashboard/api/experiments/{experiment}"

    def report(accuracy: float, epochs: float) -> int:
        answer = client.post(
            runs,
            headers=auth,
            json={
                "assignments": {"lr": 0.01, "depth": 2, "optimizer": "adam"},
                "values": [
                    {"name": "accuracy", "value": accuracy},
                    {"name": "epochs", "value": epochs},
                ],
            },
        )
        answer.raise_for_status()
        return int(answer.json()["id"])

    best = report(0.95, 10.0)
    report(0.92, 20.0)
    first = client.get(page, headers=auth).json()
    assert first["best"][0]["observation"] == best

    # Below the 0.9 accuracy threshold: the other run is now the best.
    client.put(
        f"{runs}/{best}",
        headers=auth,
        json={
            "values": [
                {"name": "accuracy", "value": 0.5},
                {"name": "epochs", "value": 10.0},
            ]
        },
    ).raise_for_status()
    edited = client.get(page, params={"since": first["version"]}, headers=auth)
    edited_body = edited.json()
    assert edited_body["changed"] is True
    assert edited_body["version"] != first["version"]
    assert edited_body["best"][0]["values"] == {"accuracy": 0.92, "epochs": 20.0}
    assert edited_body["observations"] == first["observations"] == 2

    client.delete(f"{runs}/{best}", headers=auth).raise_for_status()
    report(0.97, 15.0)
    replaced = client.get(
        page, params={"since": edited_body["version"]}, headers=auth
    ).json()
    assert replaced["changed"] is True
    assert replaced["observations"] == 2
    assert replaced["best"][0]["values"] == {"accuracy": 0.97, "epochs": 15.0}
