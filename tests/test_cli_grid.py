"""``optiloop grid`` and ``optiloop compare`` on a job fast enough to run here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from optiloop.cli import app
from optiloop.store import Store

FAKE_JOB = Path(__file__).parent / "runner" / "fake_job.py"

runner = CliRunner()


def write_spec(tmp_path: Path, **overrides: Any) -> Path:
    """Accuracy start + 0.1 x epoch + 0.1 x seed, target 0.8, seeds 0 and 1."""
    spec = {
        "name": "fake",
        "parameters": [
            {"name": "epochs", "type": "int", "bounds": {"min": 2, "max": 4}},
            {"name": "start", "type": "double", "bounds": {"min": 0.3, "max": 0.5}},
        ],
        "metrics": [
            {"name": "eval_accuracy", "strategy": "constraint", "threshold": 0.8},
            {"name": "converge_epoch", "objective": "minimize"},
        ],
        "seeds_per_point": 2,
        "parallel_bandwidth": 2,
        "job": {
            "command": f"{sys.executable} {FAKE_JOB} --epochs {{epochs}} "
            "--start {start} --seed {seed} --seed-shift 0.1",
            "converge": {"metric": "eval_accuracy", "target": 0.8},
            "executor": {"cluster": "k8s", "devices": 8},
        },
    } | overrides
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def grid(spec: Path, db: str, *options: str) -> Any:
    return runner.invoke(app, ["grid", str(spec), "--db", db, *options])


@pytest.fixture
def two_grids(tmp_path: Path) -> tuple[str, Path]:
    """Grid campaigns 1 (2 points per parameter) and 2 (3 points)."""
    db = f"sqlite:///{tmp_path / 'grid.db'}"
    spec = write_spec(tmp_path)
    for points in ("2", "3"):
        ran = grid(spec, db, "--points-per-parameter", points)
        assert ran.exit_code == 0, ran.output
    return db, spec


def test_grid_trains_every_point_and_stores_a_grid_campaign(
    two_grids: tuple[str, Path],
) -> None:
    db, _ = two_grids
    with Store(db) as store:
        [small] = store.campaign_experiments(1)
        [large] = store.campaign_experiments(2)
        assert store.get_campaign(1).state == "done"
        small_points = [o.assignments for o in store.list_observations(small.id)]
        large_count = len(store.list_observations(large.id))

    assert (small.campaign_role, large.campaign_role) == ("grid", "grid")
    # 2 x 2 and 3 x 3 points; start 0.3 and 0.5, the ends of its bounds.
    assert sorted((p["epochs"], p["start"]) for p in small_points) == [
        (2, 0.3),
        (2, 0.5),
        (4, 0.3),
        (4, 0.5),
    ]
    assert large_count == 9


def test_compare_prints_both_tables(two_grids: tuple[str, Path]) -> None:
    db, _ = two_grids
    shown = runner.invoke(
        app, ["compare", "1", "2", "--db", db, "--reference-value", "5"]
    )

    assert shown.exit_code == 0, shown.output
    assert "Compute (device-hours)" in shown.output
    assert "k8s" in shown.output and "total" in shown.output
    # At start 0.5 seed 0 reaches 0.8 at epoch 3 and seed 1 at epoch 2: 2.5
    # (with 3 or 4 epochs; 2 leaves seed 0 short), in both grids; 50% below
    # the reference 5.
    assert "2.5 ± 0.707" in shown.output
    assert "+50.0%" in shown.output
    assert "baseline" in shown.output


def test_compare_as_json(two_grids: tuple[str, Path]) -> None:
    db, _ = two_grids
    shown = runner.invoke(app, ["compare", "1", "2", "--db", db, "--json"])

    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    small, large = data["campaigns"]
    assert data["campaigns"] == {small: 1, large: 2}
    assert data["baseline"] == small
    hours = data["device_hours"]
    # One cluster, so its hours are the total; 9 points cost more than 4.
    assert hours["k8s"] == hours["total"]
    assert 0 < hours["total"][small] < hours["total"][large]
    assert data["unmeasured_observations"] == {small: 0, large: 0}
    answers = data["answers"]
    assert answers[small]["value"] == answers[large]["value"] == 2.5
    assert answers[large]["improvement_vs_baseline_percent"] == 0.0
    assert answers[small]["improvement_vs_baseline_percent"] is None


def test_continuing_a_finished_grid_trains_nothing_more(
    two_grids: tuple[str, Path],
) -> None:
    db, spec = two_grids
    ran = grid(spec, db, "--points-per-parameter", "2", "--campaign", "1")

    assert ran.exit_code == 0, ran.output
    assert "4 of 4 points observed" in ran.output
    with Store(db) as store:
        [experiment] = store.campaign_experiments(1)
        assert len(store.list_observations(experiment.id)) == 4


def test_continuing_with_other_points_is_refused(
    two_grids: tuple[str, Path],
) -> None:
    db, spec = two_grids
    ran = grid(spec, db, "--points-per-parameter", "3", "--campaign", "1")

    assert ran.exit_code == 2
    assert "describes another grid than campaign 1" in ran.output


def test_grid_of_a_campaign_file_searches_its_space(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'grid.db'}"
    spec = write_spec(tmp_path, rounds={"max": 2, "budget": 3})

    ran = grid(spec, db, "-n", "1")

    assert ran.exit_code == 0, ran.output
    # One point: epochs 3, start 0.4; seed 0 reaches 0.8 only at epoch 4.
    assert "1 of 1 points observed" in ran.output
    assert "no feasible point yet" in ran.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["1", "1"], "two different campaigns"),
        (["1", "2", "--baseline", "3"], "--baseline 3 is not one of"),
        (["1", "9"], "9"),
        (["1", "2", "--reference-value", "nan"], "must be a finite number"),
    ],
)
def test_compare_refuses_bad_ids(
    two_grids: tuple[str, Path], arguments: list[str], message: str
) -> None:
    db, _ = two_grids
    shown = runner.invoke(app, ["compare", *arguments, "--db", db])

    assert shown.exit_code == 2
    assert message in shown.output


def test_compare_a_grid_with_a_campaign(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'both.db'}"
    spec = write_spec(
        tmp_path,
        rounds={"max": 1, "budget": 2},
        validation={"top": 1, "seeds": 3},
    )
    assert grid(spec, db, "-n", "2").exit_code == 0
    ran = runner.invoke(app, ["run", str(spec), "--db", db])
    assert ran.exit_code == 0, ran.output

    shown = runner.invoke(app, ["compare", "1", "2", "--db", db, "--json"])

    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    grid_name, campaign_name = data["campaigns"]
    rounds = data["device_hours_by_round"][campaign_name]
    assert set(rounds) == {"round 1", "validation"}
    assert data["device_hours"]["total"][campaign_name] == pytest.approx(
        sum(rounds.values())
    )
    answers = data["answers"]
    assert answers[grid_name]["source"] == "search"
    campaign = answers[campaign_name]
    assert campaign["source"] == "validation"
    # The grid's best is 2.5 (see test_compare_prints_both_tables); the
    # campaign's point depends on the optimizer, its percent on the two.
    assert answers[grid_name]["value"] == 2.5
    expected = 100 * (2.5 - campaign["value"]) / 2.5
    assert campaign["improvement_vs_baseline_percent"] == pytest.approx(expected)


def test_resume_finishes_a_grid_search_whose_runner_died(tmp_path: Path) -> None:
    from optiloop.client import Connection
    from optiloop.experiment import load_spec
    from optiloop.optimizers.grid_points import grid_search_spec
    from optiloop.runner.grid import create_grid_campaign, grid_experiment_id

    db = f"sqlite:///{tmp_path / 'grid.db'}"
    spec = write_spec(tmp_path)
    with Connection(db=db) as conn:
        # What a runner killed at once leaves: the campaign, nothing run.
        campaign_id = create_grid_campaign(conn, grid_search_spec(load_spec(spec), 2))

    resumed = runner.invoke(app, ["resume", "--db", db])
    assert resumed.exit_code == 0, resumed.output
    assert f"Resuming grid search {campaign_id}" in resumed.output

    with Connection(db=db) as conn:
        experiment_id = grid_experiment_id(conn, campaign_id)
        observed = conn.experiments(experiment_id).observations().fetch().data
        assert conn.campaigns(campaign_id).fetch().state == "done"
    # 2 epochs x 2 starts, each once.
    points = {(o.assignments["epochs"], o.assignments["start"]) for o in observed}
    assert len(observed) == len(points) == 4


def test_compare_on_a_missing_database_creates_no_file(tmp_path: Path) -> None:
    path = tmp_path / "none.db"
    shown = runner.invoke(app, ["compare", "1", "2", "--db", f"sqlite:///{path}"])

    assert shown.exit_code == 2
    assert "no database file at" in shown.output
    assert not path.exists()
