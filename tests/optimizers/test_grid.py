"""Grid search: every grid point once, in order, parallel-safe, bounded."""

from __future__ import annotations

import itertools

import pytest

from optiloop.errors import SpecError
from optiloop.experiment import ExperimentSpec, MetricValue, Observation, parse_spec
from optiloop.optimizers import GridOptimizer
from optiloop.space import Assignments


def _cube_spec() -> ExperimentSpec:
    """Three categoricals of two values each: a grid of 2 x 2 x 2 = 8 points."""
    return parse_spec(
        {
            "type": "grid",
            "parameters": [
                {
                    "name": name,
                    "type": "categorical",
                    "categorical_values": ["lo", "hi"],
                }
                for name in ("a", "b", "c")
            ],
            "metrics": [{"name": "y"}],
        }
    )


def _observation(assignments: Assignments) -> Observation:
    return Observation(assignments=assignments, values=(MetricValue("y", 1.0),))


def test_one_by_one_gives_every_point_once_then_none() -> None:
    spec = _cube_spec()
    optimizer = GridOptimizer()
    observations: list[Observation] = []

    for _ in range(8):
        [point] = optimizer.suggest(spec, observations, [], 1, seed=0)
        observations.append(_observation(point))

    every_point = {
        tuple(values) for values in itertools.product(["lo", "hi"], repeat=3)
    }
    suggested = [
        (o.assignments["a"], o.assignments["b"], o.assignments["c"])
        for o in observations
    ]
    assert set(suggested) == every_point
    assert len(suggested) == 8
    assert optimizer.suggest(spec, observations, [], 1, seed=0) == []


def test_points_come_in_the_space_order() -> None:
    spec = _cube_spec()

    suggested = GridOptimizer().suggest(spec, [], [], 8, seed=0)

    assert suggested == list(spec.space().finite_points())


def test_parallel_requests_never_share_a_point() -> None:
    spec = _cube_spec()
    space = spec.space()
    optimizer = GridOptimizer()

    # Five workers ask one point each while the others are still running.
    pending: list[Assignments] = []
    for _ in range(5):
        pending.extend(optimizer.suggest(spec, [], pending, 1, seed=0))
    assert len({space.key(a) for a in pending}) == 5

    # The next batch of five finds only the three points left.
    rest = optimizer.suggest(spec, [], pending, 5, seed=0)
    assert len(rest) == 3
    assert not {space.key(a) for a in rest} & {space.key(a) for a in pending}

    # Once everything is observed or pending, nothing is left.
    observed = [_observation(a) for a in pending[:2]]
    assert optimizer.suggest(spec, observed, pending[2:] + rest, 5, seed=0) == []


def test_a_continuous_double_gets_evenly_spaced_values_ends_included() -> None:
    spec = parse_spec(
        {
            "parameters": [
                {"name": "x", "type": "double", "bounds": {"min": -1, "max": 1}}
            ],
            "metrics": [{"name": "y"}],
        }
    )

    suggested = GridOptimizer().suggest(spec, [], [], 10, seed=0)

    assert [a["x"] for a in suggested] == [-1.0, -0.5, 0.0, 0.5, 1.0]


def test_a_huge_grid_is_refused_with_its_size() -> None:
    parameters = [
        {"name": "steps", "type": "int", "bounds": {"min": 1, "max": 10**9}},
        {"name": "flag", "type": "categorical", "categorical_values": ["a", "b"]},
    ]
    spec = parse_spec({"parameters": parameters, "metrics": [{"name": "y"}]})
    size = r"2,000,000,000 points \(steps: 1000000000 x flag: 2 values\)"

    # The optimizer refuses it, and so does a grid experiment's spec.
    with pytest.raises(SpecError, match=size):
        GridOptimizer().suggest(spec, [], [], 1, seed=0)
    with pytest.raises(SpecError, match=r"^type: grid search would need " + size):
        parse_spec(
            {"type": "grid", "parameters": parameters, "metrics": [{"name": "y"}]}
        )
