"""The inner loop end to end: a real process per seed, the embedded store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from optiloop.client import Connection
from optiloop.errors import SpecError
from optiloop.experiment import parse_spec
from optiloop.runner import LocalExecutor, LoopEvent, run_experiment

FAKE_JOB = Path(__file__).with_name("fake_job.py")


def spec_dict(job_flags: str = "", **overrides: Any) -> dict[str, Any]:
    # Accuracy 0.5 + 0.1 * epoch reaches the 0.8 target at epoch 3, so a run
    # of 3 or more epochs converges at 3 and a shorter one never does.
    command = f"{sys.executable} {FAKE_JOB} --epochs {{epochs}} --seed {{seed}}"
    spec: dict[str, Any] = {
        "name": "fake",
        "type": "grid",
        "parameters": [
            {"name": "epochs", "type": "int", "bounds": {"min": 1, "max": 5}}
        ],
        "metrics": [
            {"name": "eval_accuracy", "strategy": "constraint", "threshold": 0.8},
            {"name": "converge_epoch", "objective": "minimize"},
        ],
        "observation_budget": 5,
        "parallel_bandwidth": 2,
        "seeds_per_point": 2,
        "job": {
            "command": f"{command} {job_flags}",
            "converge": {"metric": "eval_accuracy", "target": 0.8},
        },
    }
    spec.update(overrides)
    return spec


def run(tmp_path: Path, spec: dict[str, Any], **kwargs: Any) -> tuple[Any, int]:
    conn = Connection(db=f"sqlite:///{tmp_path / 'runs.db'}")
    experiment_id = conn.experiments().create(**spec).id
    executor = LocalExecutor(slots=2)
    try:
        run_experiment(conn, experiment_id, parse_spec(spec), executor, **kwargs)
    finally:
        executor.shutdown()
    return conn, experiment_id


def test_grid_of_real_jobs_stores_converge_epochs(tmp_path: Path) -> None:
    events: list[LoopEvent] = []
    conn, experiment_id = run(tmp_path, spec_dict(), on_event=events.append)
    observations = conn.experiments(experiment_id).observations().fetch().data

    by_epochs = {o.assignments["epochs"]: o for o in observations}
    assert sorted(by_epochs) == [1, 2, 3, 4, 5]
    for epochs, observation in by_epochs.items():
        values = {v.name: v.value for v in observation.values}
        converged = epochs >= 3
        # Unconverged runs report one past their last epoch.
        assert values["converge_epoch"] == (3.0 if converged else epochs + 1)
        assert observation.metadata["converged"] is converged
        assert observation.metadata["seeds"] == [0, 1]

    # Two seeds per point: ten finished seeds, five observations.
    assert sum(e.kind == "seed_finished" for e in events) == 10
    assert [e.observation_count for e in events if e.kind == "observed"] == [
        1,
        2,
        3,
        4,
        5,
    ]
    [best] = conn.experiments(experiment_id).best_assignments().fetch().data
    assert best.assignments["epochs"] in (3, 4, 5)


def test_failing_job_becomes_a_failed_observation(tmp_path: Path) -> None:
    spec = spec_dict("--fail", observation_budget=2)
    conn, experiment_id = run(tmp_path, spec)
    observations = conn.experiments(experiment_id).observations().fetch().data

    assert len(observations) == 2
    for observation in observations:
        if observation.assignments["epochs"] >= 2:
            assert observation.failed
            assert "CUDA out of memory" in observation.metadata["stderr_tail"]
            assert observation.metadata["exit_code"] == 3
    assert conn.experiments(experiment_id).best_assignments().fetch().data == []


def test_open_suggestions_of_an_interrupted_run_are_trained_first(
    tmp_path: Path,
) -> None:
    conn = Connection(db=f"sqlite:///{tmp_path / 'runs.db'}")
    spec = spec_dict(observation_budget=2)
    experiment_id = conn.experiments().create(**spec).id
    left_open = conn.experiments(experiment_id).suggestions().create()

    executor = LocalExecutor(slots=2)
    try:
        summary = run_experiment(conn, experiment_id, parse_spec(spec), executor)
    finally:
        executor.shutdown()

    observations = conn.experiments(experiment_id).observations().fetch().data
    assert summary.observation_count == 2
    assert left_open.id in {o.suggestion for o in observations}
    assert conn.experiments(experiment_id).suggestions().fetch(state="open").data == []


def test_grid_exhaustion_ends_the_loop(tmp_path: Path) -> None:
    conn, experiment_id = run(
        tmp_path, spec_dict(observation_budget=None), max_observations=50
    )
    observations = conn.experiments(experiment_id).observations().fetch().data
    assert len(observations) == 5


def test_no_budget_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="observation_budget"):
        run(tmp_path, spec_dict(observation_budget=None))


def test_a_point_behind_the_converged_ones_is_pruned_and_infeasible(
    tmp_path: Path,
) -> None:
    # delay 0 reaches 0.8 at epoch 3 (0.6, 0.7, 0.8) and stops.  delay 5 has 0.1 at
    # epoch 1, below the 0.6 both converged seeds had there less the 0.05
    # margin, so it is stopped at epoch 1 instead of running 20 epochs.  One
    # slot: the first point is stored before the second is launched, so its
    # two seeds are the references.
    command = (
        f"{sys.executable} {FAKE_JOB} --epochs 20 --sleep 0.1 "
        "--delay {delay} --seed {seed}"
    )
    spec = spec_dict(
        parameters=[{"name": "delay", "type": "int", "grid": [0, 5]}],
        observation_budget=2,
        parallel_bandwidth=1,
        job={
            "command": command,
            "converge": {"metric": "eval_accuracy", "target": 0.8, "stop": True},
            "prune": {"enabled": True, "margin": 0.05, "min_reference_runs": 2},
        },
    )
    conn = Connection(db=f"sqlite:///{tmp_path / 'runs.db'}")
    experiment_id = conn.experiments().create(**spec).id
    executor = LocalExecutor(slots=1)
    try:
        run_experiment(conn, experiment_id, parse_spec(spec), executor)
    finally:
        executor.shutdown()

    first, second = conn.experiments(experiment_id).observations().fetch().data
    assert first.assignments["delay"] == 0
    assert first.metadata["converge_epochs"] == [3.0, 3.0]
    assert first.metadata["stopped_at_target"] == [0, 1]
    assert "pruned" not in first.metadata

    assert second.assignments["delay"] == 5
    assert not second.failed
    assert second.metadata["converged"] is False
    assert [p["seed"] for p in second.metadata["pruned"]] == [0, 1]
    assert (
        "epoch 1 is behind all 2 converged runs"
        in (second.metadata["pruned"][0]["reason"])
    )
    assert second.metadata["curves"] == [[[1.0, 0.1]], [[1.0, 0.1]]]
    # Two seeds of 20 epochs at 0.1 s each would take 4 s.
    assert second.metadata["compute_seconds"] < 2.0


def test_spare_slots_never_open_more_points_than_the_bandwidth(
    tmp_path: Path,
) -> None:
    # Four slots, one point at a time: each point's two seeds run together
    # and the next suggestion waits for the point to be observed.
    conn = Connection(db=f"sqlite:///{tmp_path / 'runs.db'}")
    spec = spec_dict(parallel_bandwidth=1, observation_budget=3)
    experiment = conn.experiments(conn.experiments().create(**spec).id)
    open_counts: list[int] = []

    def count_open(event: LoopEvent) -> None:
        open_counts.append(experiment.suggestions().fetch(state="open").count)

    executor = LocalExecutor(slots=4)
    try:
        run_experiment(
            conn, experiment.fetch().id, parse_spec(spec), executor, None, count_open
        )
    finally:
        executor.shutdown()

    assert experiment.fetch().progress.observation_count == 3
    assert max(open_counts) == 1


def test_a_stop_request_finishes_started_points_and_leaves_the_rest_open(
    tmp_path: Path,
) -> None:
    # Two open points of two seeds, one slot: the stop comes when the first
    # seed of the first point ends, so that point finishes (its second seed
    # runs) and the second point, not started, stays open.
    conn = Connection(db=f"sqlite:///{tmp_path / 'runs.db'}")
    spec = spec_dict(observation_budget=4, parallel_bandwidth=2)
    experiment = conn.experiments(conn.experiments().create(**spec).id)
    first = experiment.suggestions().create()
    second = experiment.suggestions().create()
    finished: list[LoopEvent] = []

    executor = LocalExecutor(slots=1)
    try:
        summary = run_experiment(
            conn,
            first.experiment,
            parse_spec(spec),
            executor,
            on_event=finished.append,
            should_stop=lambda: bool(finished),
        )
    finally:
        executor.shutdown()

    [observed] = experiment.observations().fetch().data
    assert observed.suggestion == first.id
    assert observed.metadata["seeds"] == [0, 1]
    assert [s.id for s in experiment.suggestions().fetch(state="open").data] == [
        second.id
    ]
    assert summary.stopped_because == "stopped on request"
    assert summary.observation_count == 1
