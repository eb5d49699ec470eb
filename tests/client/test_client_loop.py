"""Whole loops as SigOpt users write them: suggest, evaluate, observe, best."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import pytest

from optiloop.client import Connection
from optiloop.errors import ExhaustedError

# The conftest fixture ``make_spec``: copies of a small spec, fields replaced.
SpecMaker = Callable[..., dict[str, Any]]


def bowl(assignments: dict[str, Any]) -> float:
    """A test objective with distinct values almost surely at random points."""
    bonus = 0.5 if assignments["kind"] == "fancy" else 0.0
    return (assignments["x"] - 0.3) ** 2 + assignments["n"] + bonus


@pytest.mark.parametrize(("objective", "pick"), [("minimize", min), ("maximize", max)])
def test_random_loop_finds_the_best_observation(
    conn: Connection,
    make_spec: SpecMaker,
    objective: str,
    pick: Callable[..., Any],
) -> None:
    spec = make_spec(metrics=[{"name": "y", "objective": objective}])
    experiment = conn.experiments().create(**spec)
    measured: list[tuple[float, dict[str, Any]]] = []

    for _ in range(10):
        suggestion = conn.experiments(experiment.id).suggestions().create()
        point = dict(suggestion.assignments)
        value = bowl(point)
        measured.append((value, point))
        conn.experiments(experiment.id).observations().create(
            suggestion=suggestion.id,
            values=[{"name": "y", "value": value, "value_stddev": 0.1}],
        )

    assert conn.experiments(experiment.id).observations().fetch().count == 10
    assert conn.experiments(experiment.id).fetch().progress.observation_count == 10

    best_value, best_point = pick(measured, key=lambda pair: pair[0])
    (best,) = conn.experiments(experiment.id).best_assignments().fetch()
    assert best.assignments == best_point
    assert best.values[0].value == best_value
    progress = conn.experiments(experiment.id).fetch().progress
    assert progress.best_observation is not None
    assert progress.best_observation.id == best.id


THRESHOLD_SPEC = {
    "metrics": [
        {"name": "acc", "strategy": "constraint", "threshold": 0.9},
        {"name": "loss", "objective": "minimize"},
    ]
}


def test_a_value_exactly_at_the_threshold_counts_as_met(
    conn: Connection, make_spec: SpecMaker
) -> None:
    experiment = conn.experiments().create(**make_spec(**THRESHOLD_SPEC))
    observations = conn.experiments(experiment.id).observations()
    points = [
        {"x": 0.0, "n": 1, "kind": "plain"},
        {"x": 0.1, "n": 1, "kind": "plain"},
        {"x": 0.2, "n": 1, "kind": "plain"},
    ]
    # (acc, loss): exactly at the threshold; below it with the lowest loss;
    # above it with a higher loss.  The first is the best feasible point.
    for point, (acc, loss) in zip(points, [(0.9, 0.2), (0.89, 0.1), (0.95, 0.3)]):
        observations.create(
            assignments=point,
            values=[{"name": "acc", "value": acc}, {"name": "loss", "value": loss}],
        )

    (best,) = conn.experiments(experiment.id).best_assignments().fetch()
    assert best.assignments == points[0]


def test_failed_observations_never_appear_in_best(
    conn: Connection, make_spec: SpecMaker
) -> None:
    experiment = conn.experiments().create(**make_spec())
    observations = conn.experiments(experiment.id).observations()
    for _ in range(3):
        suggestion = conn.experiments(experiment.id).suggestions().create()
        observations.create(suggestion=suggestion.id, failed=True)
    assert conn.experiments(experiment.id).best_assignments().fetch().count == 0

    point = {"x": 0.9, "n": 5, "kind": "fancy"}
    observations.create(assignments=point, values=[{"name": "y", "value": 99.0}])
    (best,) = conn.experiments(experiment.id).best_assignments().fetch()
    assert best.assignments == point
    assert best.values[0].value == 99.0


def test_grid_suggests_each_point_once_then_is_exhausted(conn: Connection) -> None:
    categories = ["a", "b"]
    spec = {
        "name": "2x2x2",
        "type": "grid",
        "parameters": [
            {"name": name, "type": "categorical", "categorical_values": categories}
            for name in ("p", "q", "r")
        ],
        "metrics": [{"name": "y"}],
        "parallel_bandwidth": 9,
    }
    experiment = conn.experiments().create(**spec)
    suggestions = conn.experiments(experiment.id).suggestions()

    seen = {tuple(suggestions.create().assignments.values()) for _ in range(8)}
    assert seen == set(itertools.product(categories, repeat=3))
    with pytest.raises(ExhaustedError, match="grid exhausted: all 8 points suggested"):
        suggestions.create()


def test_loop_resumes_on_a_new_connection(db_url: str, make_spec: SpecMaker) -> None:
    with Connection(db=db_url) as first:
        experiment = first.experiments().create(**make_spec())
        before = first.experiments(experiment.id).suggestions().create()

    # A new process would see the pending suggestion and carry on from it.
    with Connection(db=db_url) as second:
        (pending,) = second.experiments(experiment.id).suggestions().fetch("open")
        assert pending == before
        second.experiments(experiment.id).observations().create(
            suggestion=pending.id, values=[{"name": "y", "value": 1.0}]
        )
        after = second.experiments(experiment.id).suggestions().create()

    assert after.id != before.id
    assert after.assignments != before.assignments


def test_parallel_writers_on_one_file_lose_nothing(
    db_url: str, make_spec: SpecMaker
) -> None:
    with Connection(db=db_url) as setup:
        experiment = setup.experiments().create(**make_spec())

    # Each thread opens its own connection, as separate jobs would.
    errors: list[BaseException] = []

    def report_points(worker: int) -> None:
        try:
            with Connection(db=db_url) as conn:
                for step in range(10):
                    conn.experiments(experiment.id).observations().create(
                        assignments={"x": step / 10, "n": 1 + worker, "kind": "plain"},
                        values=[{"name": "y", "value": float(step)}],
                    )
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=report_points, args=(w,)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    with Connection(db=db_url) as check:
        assert check.experiments(experiment.id).observations().fetch().count == 40


def test_ranked_best_assignments_list_feasible_points_best_first(
    conn: Connection, make_spec: SpecMaker
) -> None:
    experiment = conn.experiments().create(**make_spec())
    observations = conn.experiments(experiment.id).observations()
    # Exact values (no stddev): the ranking is by the measured y, minimized.
    for x, y in [(0.1, 3.0), (0.2, 1.0), (0.3, 2.0)]:
        point = {"x": x, "n": 1, "kind": "plain"}
        observations.create(assignments=point, values=[{"name": "y", "value": y}])
    observations.create(assignments={"x": 0.4, "n": 1, "kind": "plain"}, failed=True)

    best = conn.experiments(experiment.id).best_assignments()

    assert [b.assignments["x"] for b in best.fetch(ranked=2)] == [0.2, 0.3]
    assert [b.assignments["x"] for b in best.fetch(ranked=10)] == [0.2, 0.3, 0.1]
    assert [b.assignments["x"] for b in best.fetch()] == [0.2]
