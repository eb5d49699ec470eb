"""The official sigopt client, unchanged, runs a whole loop against a server.

The client is pointed at the server the way its users point it anywhere:
a token (sent as basic authentication) and ``set_api_url``.
"""

from __future__ import annotations

from typing import Any

import pytest

sigopt = pytest.importorskip("sigopt", reason="the sigopt client is a dev extra")
from sigopt.exception import ApiException  # noqa: E402


@pytest.fixture
def client(shared_server: Any) -> Any:
    connection = sigopt.Connection(client_token=shared_server.new_token("sigopt"))
    connection.set_api_url(shared_server.url)
    return connection


def branin_like(x: float, n: int) -> float:
    """A test objective whose values differ at distinct points."""
    return (x - 0.3) ** 2 + 0.5 * n


def test_create_suggest_observe_best(client: Any) -> None:
    experiment = client.experiments().create(
        name="sigopt client loop",
        type="random",
        parameters=[
            {"name": "x", "type": "double", "bounds": {"min": -1, "max": 1}},
            {"name": "n", "type": "int", "bounds": {"min": 1, "max": 4}},
        ],
        metrics=[{"name": "loss", "objective": "minimize"}],
        observation_budget=8,
    )
    assert experiment.observation_budget == 8
    measured: dict[str, float] = {}

    for _ in range(experiment.observation_budget):
        suggestion = client.experiments(experiment.id).suggestions().create()
        assignments = suggestion.assignments
        value = branin_like(assignments["x"], assignments["n"])
        observation = (
            client.experiments(experiment.id)
            .observations()
            .create(
                suggestion=suggestion.id,
                values=[{"name": "loss", "value": value, "value_stddev": 0.05}],
            )
        )
        measured[observation.id] = value

    fetched = client.experiments(experiment.id).fetch()
    assert fetched.progress.observation_count == 8

    # iterate_pages follows the paging markers, so it also checks them.
    listed = client.experiments(experiment.id).observations().fetch(limit=3)
    assert sorted(o.id for o in listed.iterate_pages()) == sorted(measured)

    best = list(
        client.experiments(experiment.id).best_assignments().fetch().iterate_pages()
    )
    lowest = min(measured, key=measured.__getitem__)
    assert [b.id for b in best] == [lowest]
    assert best[0].values[0].value == pytest.approx(measured[lowest])

    # The budget is spent: the server refuses, and the client says why.
    with pytest.raises(ApiException) as refused:
        client.experiments(experiment.id).suggestions().create()
    assert refused.value.status_code == 409
    assert "observation budget spent" in str(refused.value)


def test_errors_reach_the_client_with_the_field(client: Any) -> None:
    with pytest.raises(ApiException) as refused:
        client.experiments().create(
            name="bad",
            parameters=[{"name": "x", "type": "double"}],
            metrics=[{"name": "loss"}],
        )
    assert refused.value.status_code == 400
    assert "bounds" in str(refused.value)


def test_a_wrong_token_is_refused(shared_server: Any) -> None:
    stranger = sigopt.Connection(client_token="olt_wrong")
    stranger.set_api_url(shared_server.url)
    with pytest.raises(ApiException) as refused:
        stranger.experiments().fetch()
    assert refused.value.status_code == 401
