"""Properties every search strategy shares, and the strategy registry."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from optiloop.errors import SpecError
from optiloop.experiment import ExperimentSpec, MetricValue, Observation, parse_spec
from optiloop.optimizers import (
    BayesianOptimizer,
    GridOptimizer,
    Optimizer,
    RandomOptimizer,
    SobolOptimizer,
    get_optimizer,
)
from optiloop.space import (
    Assignments,
    CategoricalParameter,
    DoubleParameter,
    GridParameter,
    IntParameter,
)

STRATEGIES = ["offline", "random", "sobol", "grid"]


def _loss(assignments: Assignments) -> float:
    """Any deterministic function of every parameter will do."""
    block_cost = {"basic": 0.0, "wide": 0.5, "deep": 1.0}[str(assignments["block"])]
    return (
        (float(assignments["layers"]) - 2.0) ** 2
        + float(assignments["dropout"])
        + math.log10(float(assignments["lr"])) ** 2 / 10.0
        + float(assignments["batch"]) / 128.0
        + float(assignments["weight_decay"]) * 1e3
        + block_cost
    )


def _observed(spec: ExperimentSpec, n: int) -> list[Observation]:
    """``n`` observations at random points of the space."""
    points = RandomOptimizer().suggest(spec, [], [], n, seed=99)
    return [
        Observation(assignments=a, values=(MetricValue("loss", _loss(a)),))
        for a in points
    ]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("n_observed", [0, 14])
def test_suggestions_lie_exactly_inside_the_space(
    strategy: str, n_observed: int, mixed_spec: ExperimentSpec
) -> None:
    # 14 observations take the Bayesian strategy past its initial design
    # (max(5, 2 * 6 dims) = 12 points), so both of its paths are covered.
    space = mixed_spec.space()
    observations = _observed(mixed_spec, n_observed)

    suggestions = get_optimizer(strategy).suggest(
        mixed_spec, observations, [], 4, seed=3
    )

    assert len(suggestions) == 4
    for assignments in suggestions:
        assert set(assignments) == set(space.names)
        for parameter in space:
            value = assignments[parameter.name]
            if isinstance(parameter, IntParameter):
                assert type(value) is int
                assert parameter.low <= value <= parameter.high
            elif isinstance(parameter, DoubleParameter):
                assert isinstance(value, float)
                assert parameter.low <= value <= parameter.high
            elif isinstance(parameter, GridParameter):
                assert value in parameter.grid
            else:
                assert isinstance(parameter, CategoricalParameter)
                assert value in parameter.categories
        assert space.check_assignments(assignments) == assignments


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("n_observed", [0, 14])
def test_same_seed_gives_same_suggestions(
    strategy: str, n_observed: int, mixed_spec: ExperimentSpec
) -> None:
    observations = _observed(mixed_spec, n_observed)
    pending = _observed(mixed_spec, 2)[0].assignments

    first = get_optimizer(strategy).suggest(
        mixed_spec, observations, [pending], 3, seed=11
    )
    second = get_optimizer(strategy).suggest(
        mixed_spec, observations, [pending], 3, seed=11
    )

    assert first == second


@pytest.mark.parametrize("strategy", ["offline", "random", "sobol"])
def test_another_seed_gives_other_suggestions(
    strategy: str, mixed_spec: ExperimentSpec
) -> None:
    observations = _observed(mixed_spec, 14)
    optimizer = get_optimizer(strategy)

    first = optimizer.suggest(mixed_spec, observations, [], 3, seed=1)
    second = optimizer.suggest(mixed_spec, observations, [], 3, seed=2)

    assert first != second


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_no_suggestion_when_none_is_asked(
    strategy: str, mixed_spec: ExperimentSpec
) -> None:
    assert get_optimizer(strategy).suggest(mixed_spec, [], [], 0, seed=0) == []


def test_random_draws_an_int_uniformly_ends_included() -> None:
    # An int on [0, 2] must come out 0, 1 and 2 equally often; a map that
    # rounds low + u * (high - low) would give the ends half the chance.
    # Pearson's chi-square statistic of 3,000 draws against 1,000 per value
    # has 2 degrees of freedom, whose 99.9% quantile is -2 ln(0.001) =
    # 13.8; the seeds are fixed, so the test is deterministic, and a
    # uniform sampler exceeds the bound for only 1 seed in 1,000.  The
    # rounding map would give a statistic near 750.
    spec = parse_spec(
        {
            "parameters": [
                {"name": "n", "type": "int", "bounds": {"min": 0, "max": 2}}
            ],
            "metrics": [{"name": "y"}],
        }
    )
    bound = -2.0 * math.log(0.001)

    for seed in range(3):
        draws = RandomOptimizer().suggest(spec, [], [], 3000, seed=seed)
        counts = np.bincount([int(d["n"]) for d in draws], minlength=3)
        statistic = float(np.sum((counts - 1000.0) ** 2 / 1000.0))
        assert statistic < bound, (seed, counts)


def test_random_draws_new_points_at_every_call(mixed_spec: ExperimentSpec) -> None:
    # The caller passes one seed per experiment; the points used so far
    # must still move the stream on.
    optimizer = RandomOptimizer()
    first = optimizer.suggest(mixed_spec, [], [], 2, seed=5)
    second = optimizer.suggest(mixed_spec, [], first, 2, seed=5)

    assert first != second


def test_sobol_continues_its_sequence_across_calls() -> None:
    spec = parse_spec(
        {
            "parameters": [
                {"name": "a", "type": "double", "bounds": {"min": 0, "max": 1}},
                {"name": "b", "type": "double", "bounds": {"min": -3, "max": 3}},
            ],
            "metrics": [{"name": "y"}],
        }
    )
    optimizer = SobolOptimizer()

    at_once = optimizer.suggest(spec, [], [], 8, seed=4)
    first = optimizer.suggest(spec, [], [], 3, seed=4)
    observed = [
        Observation(assignments=a, values=(MetricValue("y", 0.0),)) for a in first
    ]
    second = optimizer.suggest(spec, observed[:2], [first[2]], 5, seed=4)

    assert first + second == at_once


def test_get_optimizer_maps_every_type() -> None:
    expected: dict[str, type[Optimizer]] = {
        "offline": BayesianOptimizer,
        "random": RandomOptimizer,
        "sobol": SobolOptimizer,
        "grid": GridOptimizer,
    }
    for strategy, optimizer_class in expected.items():
        assert isinstance(get_optimizer(strategy), optimizer_class)


def test_get_optimizer_refuses_an_unknown_type() -> None:
    with pytest.raises(SpecError, match=r"^type: .*'annealing'.*offline"):
        get_optimizer("annealing")


def test_sobol_through_the_client_stratifies_like_one_sequence(
    tmp_path: Path,
) -> None:
    # A scrambled Sobol sequence puts its first 2^k points one in each
    # interval of width 2^-k; eight suggestions must hit all eight eighths.
    from optiloop.client import Connection

    conn = Connection(db=f"sqlite:///{tmp_path / 'sobol.db'}")
    spec = {
        "type": "sobol",
        # Eight suggestions stay open at once.
        "parallel_bandwidth": 8,
        "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
        "metrics": [{"name": "y"}],
    }
    for _ in range(5):
        experiment = conn.experiments().create(**spec)
        suggestions = conn.experiments(experiment.id).suggestions()
        xs = [suggestions.create().assignments["x"] for _ in range(8)]
        assert sorted(int(x * 8) for x in xs) == list(range(8))
