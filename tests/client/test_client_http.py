"""The HTTP driver's own behaviour: retried creates, errors from answers.

The loops themselves run through both drivers in the other client tests;
here a stand-in transport plays the server, so that failures can be staged.
"""

from __future__ import annotations

import httpx
import pytest

from optiloop.client import HttpDriver
from optiloop.errors import BudgetSpentError, NotFoundError, OptiloopError


def test_a_dropped_post_is_sent_again_with_the_same_key() -> None:
    keys: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["Idempotency-Key"])
        if len(keys) == 1:
            raise httpx.ConnectError("connection reset", request=request)
        return httpx.Response(200, json={"object": "suggestion", "id": 5})

    driver = HttpDriver(
        "http://127.0.0.1:9", "t", transport=httpx.MockTransport(server)
    )
    assert driver.create_suggestion(1)["id"] == 5
    assert len(keys) == 2 and keys[0] == keys[1]

    # A new create is a new object, so it gets a new key.
    driver.create_suggestion(1)
    assert keys[2] != keys[1]


def test_a_post_that_never_gets_through_raises_after_three_tries() -> None:
    tries = 0

    def server(request: httpx.Request) -> httpx.Response:
        nonlocal tries
        tries += 1
        raise httpx.ConnectError("refused", request=request)

    driver = HttpDriver(
        "http://127.0.0.1:9", "t", transport=httpx.MockTransport(server)
    )
    with pytest.raises(OptiloopError, match="could not reach the optiloop server"):
        driver.create_experiment({"name": "x"})
    assert tries == 3


@pytest.mark.parametrize(
    ("status", "body", "kind", "words"),
    [
        (
            409,
            {"message": "budget spent", "type": "BudgetSpentError"},
            BudgetSpentError,
            "budget",
        ),
        (404, {"message": "experiment 3 not found", "status": 404}, NotFoundError, "3"),
        (401, {"message": "invalid API token"}, OptiloopError, "refused the token"),
    ],
)
def test_error_answers_become_optiloop_errors(
    status: int, body: dict[str, object], kind: type[Exception], words: str
) -> None:
    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    driver = HttpDriver(
        "http://127.0.0.1:9", "t", transport=httpx.MockTransport(server)
    )
    with pytest.raises(kind, match=words):
        driver.get_experiment(3)
