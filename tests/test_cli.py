"""The command line as a user runs it: run, best --json, status, bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from optiloop.cli import app

FAKE_JOB = Path(__file__).parent / "runner" / "fake_job.py"

runner = CliRunner()


def write_spec(tmp_path: Path, **overrides: object) -> Path:
    spec = {
        "name": "cli",
        "type": "grid",
        "parameters": [
            {"name": "epochs", "type": "int", "bounds": {"min": 2, "max": 4}}
        ],
        "metrics": [
            {"name": "eval_accuracy", "strategy": "constraint", "threshold": 0.8},
            {"name": "converge_epoch", "objective": "minimize"},
        ],
        "observation_budget": 3,
        "job": {
            "command": f"{sys.executable} {FAKE_JOB} --epochs {{epochs}} "
            "--seed {seed} --seed-shift 0.1",
            "converge": {"metric": "eval_accuracy", "target": 0.8},
        },
        "seeds_per_point": 2,
    } | overrides
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return path


def test_run_then_best_from_the_database(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    ran = runner.invoke(app, ["run", str(write_spec(tmp_path)), "--db", db])
    assert ran.exit_code == 0, ran.output
    assert "Best point of experiment 1" in ran.output
    # Two seeds a point: the values carry a spread, so the table says how
    # the point was chosen.
    assert "chosen by the models' posterior mean" in " ".join(ran.output.split())

    best = runner.invoke(app, ["best", "--db", db, "--json"])
    assert best.exit_code == 0, best.output
    [point] = json.loads(best.output)["best"]
    # Seed 0 reaches 0.8 at epoch 3 and seed 1 (shifted by 0.1) at epoch 2,
    # so every run of 3 or 4 epochs converges at 2.5 on average; 2 epochs
    # leaves seed 0 short.
    assert point["assignments"]["epochs"] in (3, 4)
    assert point["values"]["converge_epoch"]["value"] == 2.5

    status = runner.invoke(app, ["status", "--db", db])
    assert "3/3" in status.output


def test_bad_spec_exits_2_naming_the_field(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        parameters=[{"name": "epochs", "type": "int", "bounds": {"min": 4, "max": 2}}],
    )
    ran = runner.invoke(app, ["run", str(path), "--db", f"sqlite:///{tmp_path}/x.db"])
    assert ran.exit_code == 2
    assert "bounds.min < bounds.max must hold for parameter 'epochs'" in ran.output


def test_best_of_an_empty_database_says_so(tmp_path: Path) -> None:
    from optiloop.store import Store

    db = f"sqlite:///{tmp_path}/empty.db"
    Store(db).close()
    ran = runner.invoke(app, ["best", "--db", db])
    assert ran.exit_code == 2
    assert "no experiment in this database" in ran.output


@pytest.mark.parametrize("command", ["best", "status", "resume"])
def test_reading_commands_create_no_database_file(tmp_path: Path, command: str) -> None:
    path = tmp_path / "missing.db"
    ran = runner.invoke(app, [command, "--db", f"sqlite:///{path}"])
    assert ran.exit_code == 2
    assert "no database file at" in ran.output
    assert not path.exists()


def test_token_create_prints_a_token_that_the_server_takes(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'tokens.db'}"
    made = runner.invoke(app, ["token", "create", "alice", "--db", db])
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]

    from optiloop.store import Store

    with Store(db) as store:
        token = store.find_token(secret)
    assert token is not None and token.name == "alice"


def test_run_best_and_status_against_a_server(
    tmp_path: Path, start_server: Any
) -> None:
    db = f"sqlite:///{tmp_path / 'served.db'}"
    made = runner.invoke(app, ["token", "create", "runner", "--db", db])
    token = made.stdout.strip().splitlines()[-1]

    with start_server(db, tmp_path / "server.log") as url:
        remote = ["--server", url, "--token", token]
        ran = runner.invoke(app, ["run", str(write_spec(tmp_path)), *remote])
        assert ran.exit_code == 0, ran.output
        assert f"Created experiment 1 (cli) in {url}" in ran.output

        best = runner.invoke(app, ["best", "--json", *remote])
        assert best.exit_code == 0, best.output
        [point] = json.loads(best.output)["best"]
        # The same runs as in the database test above, so the same answer.
        assert point["values"]["converge_epoch"]["value"] == 2.5

        status = runner.invoke(app, ["status", *remote])
        assert "3/3" in status.output

        wrong = runner.invoke(app, ["status", "--server", url, "--token", "nope"])
        assert wrong.exit_code == 2
        assert "refused the token" in wrong.output


def test_names_are_shown_literally_not_as_markup(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'markup.db'}"
    spec = write_spec(
        tmp_path,
        name="exp[/]x",
        parameters=[
            {"name": "epochs", "type": "int", "bounds": {"min": 3, "max": 4}},
            {
                "name": "opt",
                "type": "categorical",
                "categorical_values": ["[bold]adam"],
            },
        ],
        observation_budget=1,
    )
    ran = runner.invoke(app, ["run", str(spec), "--db", db])
    assert ran.exit_code == 0, ran.output
    assert "exp[/]x" in ran.output
    assert "[bold]adam" in ran.output


def test_continuing_with_another_spec_is_refused(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'continue.db'}"
    first = runner.invoke(app, ["run", str(write_spec(tmp_path)), "--db", db])
    assert first.exit_code == 0, first.output

    other = write_spec(
        tmp_path,
        parameters=[{"name": "epochs", "type": "int", "bounds": {"min": 2, "max": 9}}],
    )
    ran = runner.invoke(app, ["run", str(other), "--db", db, "--experiment", "1"])
    assert ran.exit_code == 2
    assert "parameters:" in ran.output
    assert "differs from experiment 1 as stored" in ran.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["best", "--experiment", "7"], "no database file"),
        (["best", "--db", "bogus://x/y"], "cannot be opened"),
        (["status", "--db", "notaurl"], "cannot be opened"),
        (["status", "--db", "sqlite://"], "names no database file"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    if "--db" not in args:
        args = [*args, "--db", f"sqlite:///{tmp_path / 'x.db'}"]
    ran = runner.invoke(app, args)
    assert ran.exit_code == 2, ran.output
    assert message in ran.output
    assert "Traceback" not in ran.output


def test_a_spec_that_cannot_run_creates_nothing(tmp_path: Path) -> None:
    db_file = tmp_path / "nothing.db"
    spec = write_spec(tmp_path, observation_budget=None)
    ran = runner.invoke(app, ["run", str(spec), "--db", f"sqlite:///{db_file}"])
    assert ran.exit_code == 2
    assert "observation_budget" in ran.output
    assert not db_file.exists()


def test_report_writes_one_offline_html_file(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'report.db'}"
    ran = runner.invoke(app, ["run", str(write_spec(tmp_path)), "--db", db])
    assert ran.exit_code == 0, ran.output

    out = tmp_path / "report.html"
    made = runner.invoke(app, ["report", "--db", db, "--out", str(out)])
    assert made.exit_code == 0, made.output
    html = out.read_text(encoding="utf-8")
    assert html.count("<html") == 1
    assert "<script src=" not in html
    assert "Experiment 1: cli" in html


def test_an_unreachable_ray_cluster_stores_no_experiment(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed")
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    job = yaml.safe_load(write_spec(tmp_path).read_text(encoding="utf-8"))["job"]
    # Port 1 on loopback: nothing listens there.
    job["executor"] = {"kind": "ray", "address": "127.0.0.1:1"}
    spec = write_spec(tmp_path, job=job)

    ran = runner.invoke(app, ["run", str(spec), "--db", db])

    assert ran.exit_code == 2, ran.output
    assert "127.0.0.1:1" in ran.output
    listed = runner.invoke(app, ["status", "--db", db])
    assert "no experiment" in listed.output.lower(), listed.output
