"""`optiloop token create / list / revoke` as an operator runs them."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from optiloop.cli import app
from optiloop.service import create_app

runner = CliRunner()

SPEC = {
    "name": "kept",
    "type": "random",
    "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
    "metrics": [{"name": "y"}],
}


def make_token(db: str, name: str) -> str:
    made = runner.invoke(app, ["token", "create", name, "--db", db])
    assert made.exit_code == 0, made.output
    return made.stdout.strip().splitlines()[-1]


def test_list_shows_names_and_ids_but_never_the_token(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'tokens.db'}"
    secrets = [make_token(db, "alice"), make_token(db, "ci runner")]

    listed = runner.invoke(app, ["token", "list", "--db", db])

    assert listed.exit_code == 0, listed.output
    rows = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in listed.stdout.splitlines()
        if "active" in line
    ]
    assert [(row[0], row[1], row[3]) for row in rows] == [
        ("1", "alice", "active"),
        ("2", "ci runner", "active"),
    ]
    assert all(row[2].endswith("UTC") for row in rows)
    for secret in secrets:
        assert secret not in listed.output


def test_a_revoked_token_answers_401_and_its_experiments_stay(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'tokens.db'}"
    secret = make_token(db, "leaving")
    keeper = make_token(db, "keeper")

    with TestClient(create_app(db)) as client:
        client.auth = httpx.BasicAuth(secret, "")
        made = client.post("/v1/experiments", json=SPEC)
        assert made.status_code == 200, made.text

        revoked = runner.invoke(app, ["token", "revoke", "leaving", "--db", db])
        assert revoked.exit_code == 0, revoked.output
        assert "revoked" in revoked.output

        refused = client.get(f"/v1/experiments/{made.json()['id']}")
        assert refused.status_code == 401
        assert "or it was revoked" in refused.json()["message"]
        # Another token still works, and the store kept the experiment.
        client.auth = httpx.BasicAuth(keeper, "")
        assert client.get("/v1/experiments").status_code == 200

    from optiloop.store import Store

    with Store(db) as store:
        (kept,) = store.list_experiments()
    assert kept.spec.name == "kept"

    listed = runner.invoke(app, ["token", "list", "--db", db])
    assert "revoked" in listed.stdout


def test_empty_duplicate_and_unknown_names_are_refused(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'tokens.db'}"
    make_token(db, "alice")

    empty = runner.invoke(app, ["token", "create", "", "--db", db])
    twice = runner.invoke(app, ["token", "create", "alice", "--db", db])
    unknown = runner.invoke(app, ["token", "revoke", "bob", "--db", db])

    assert empty.exit_code == twice.exit_code == unknown.exit_code == 2
    assert "must not be empty" in empty.output
    assert "'alice' is taken" in twice.output
    assert "'bob' not found" in unknown.output
