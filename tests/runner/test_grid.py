"""Grid campaigns: stored as a campaign, stopped cleanly, continued to the end."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from optiloop.client import Connection
from optiloop.errors import SpecError
from optiloop.experiment import ExperimentSpec, parse_spec
from optiloop.optimizers.grid_points import grid_search_spec
from optiloop.runner import LocalExecutor
from optiloop.runner.grid import grid_experiment_id, run_grid, stored_grid_spec

FAKE_JOB = Path(__file__).parent / "fake_job.py"


def fake_grid(points: int) -> ExperimentSpec:
    spec = parse_spec(
        {
            "name": "fake",
            "parameters": [
                {"name": "epochs", "type": "int", "bounds": {"min": 2, "max": 4}}
            ],
            "metrics": [
                {"name": "eval_accuracy", "strategy": "constraint", "threshold": 0.8},
                {"name": "converge_epoch", "objective": "minimize"},
            ],
            "job": {
                "command": f"{sys.executable} {FAKE_JOB} --epochs {{epochs}} "
                "--start 0.5 --seed {seed}",
                "converge": {"metric": "eval_accuracy", "target": 0.8},
            },
        }
    )
    return grid_search_spec(spec, points)


def local(spec: ExperimentSpec) -> LocalExecutor:
    return LocalExecutor(slots=1)


def test_a_stopped_grid_continues_where_it_stopped(tmp_path: Path) -> None:
    conn = Connection(db=f"sqlite:///{tmp_path / 'grid.db'}")
    grid = fake_grid(3)  # epochs 2, 3, 4

    # Asked to stop before it starts: no point is trained.
    stopped = run_grid(conn, grid, local, should_stop=lambda: True)

    assert (stopped.observation_count, stopped.finished) == (0, False)
    assert conn.campaigns(stopped.campaign_id).fetch().state == "stopped"

    finished = run_grid(conn, grid, local, stopped.campaign_id)

    assert finished.experiment_id == stopped.experiment_id
    assert (finished.observation_count, finished.points) == (3, 3)
    campaign = conn.campaigns(stopped.campaign_id).fetch()
    assert campaign.state == "done"
    # 0.5 + 0.1 x epoch reaches 0.8 at epoch 3: 2 epochs never converge.
    assert campaign.result is not None
    [best] = campaign.result["best"]
    assert best["values"]["converge_epoch"] == 3.0
    assert best["assignments"]["epochs"] in (3, 4)


def test_the_stored_spec_is_the_grid(tmp_path: Path) -> None:
    conn = Connection(db=f"sqlite:///{tmp_path / 'grid.db'}")
    grid = fake_grid(2)
    summary = run_grid(conn, grid, local)

    assert stored_grid_spec(conn, summary.campaign_id) == grid
    assert grid_experiment_id(conn, summary.campaign_id) == summary.experiment_id


def test_a_spec_that_is_not_a_grid_is_refused(tmp_path: Path) -> None:
    conn = Connection(db=f"sqlite:///{tmp_path / 'grid.db'}")
    spec = fake_grid(2).model_copy(update={"type": "offline"})
    with pytest.raises(SpecError, match="a grid search needs type grid"):
        run_grid(conn, spec, local)
