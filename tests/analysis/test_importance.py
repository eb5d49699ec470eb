"""Parameter importance against cases whose answer can be argued by hand.

The arguments rest on one fact about regression trees: the split of a node
that most reduces the squared error cuts the node's values, sorted, into a
low and a high group (a cut that interleaves them never does better).  So
when a metric is a strictly increasing function of one parameter, a cut on
that parameter is always the best split available, and a parameter the
metric does not depend on can win a split only by cutting the very same
groups (a tie, which the tree breaks at random).  Without ties it gets a
share of 0 and the driving parameter all of it.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from optiloop.analysis import (
    Importance,
    NotEnoughData,
    metric_importance,
    parameter_importance,
)
from optiloop.experiment import ExperimentSpec, MetricValue, Observation, parse_spec
from optiloop.space import Value

X1: dict[str, Any] = {"name": "x1", "type": "double", "bounds": {"min": 0, "max": 1}}
X2: dict[str, Any] = {"name": "x2", "type": "double", "bounds": {"min": 0, "max": 1}}


def make_spec(*parameters: dict[str, Any]) -> ExperimentSpec:
    return parse_spec(
        {
            "name": "importance",
            "parameters": list(parameters),
            "metrics": [{"name": "y", "objective": "minimize"}],
        }
    )


def observe(y: float, **assignments: Value) -> Observation:
    return Observation(assignments=dict(assignments), values=(MetricValue("y", y),))


def fitted(result: Importance | NotEnoughData) -> Importance:
    assert isinstance(result, Importance), result
    return result


def test_a_step_in_x1_gives_x1_everything() -> None:
    # One cut at x1 = 0.5 leaves two leaves of equal y, so the tree stops
    # after that split.  x2 alternates, so no cut on it separates the steps.
    spec = make_spec(X1, X2)
    observations = [
        observe(float(i >= 10), x1=(i + 0.5) / 20, x2=float(i % 2)) for i in range(20)
    ]

    result = fitted(metric_importance(spec, observations, "y"))

    assert result.shares == {"x1": 1.0, "x2": 0.0}
    assert result.n_observations == 20


@pytest.mark.parametrize("stride", [7, 11, 13])
def test_a_smooth_function_of_x1_leaves_x2_near_zero(stride: int) -> None:
    # y = exp(3 x1) increases strictly with x1; x2 visits the same 30 values
    # in a shuffled order (i * stride mod 30, stride prime to 30), so by the
    # argument at the top x1 takes every split.  The bound 0.9 leaves room
    # for an exact tie between a cut on x2 and one on x1 at a deep node.
    spec = make_spec(X1, X2)
    n = 30
    observations = [
        observe(math.exp(3 * i / n), x1=i / n, x2=(i * stride % n) / n)
        for i in range(n)
    ]

    result = fitted(metric_importance(spec, observations, "y"))

    assert result.shares["x1"] > 0.9
    assert sum(result.shares.values()) == pytest.approx(1.0)


def test_a_log_parameter_that_drives_the_metric_takes_it_all() -> None:
    lr = {
        "name": "lr",
        "type": "double",
        "bounds": {"min": 1e-4, "max": 1},
        "transformation": "log",
    }
    spec = make_spec(lr, X2)
    observations = [
        observe(
            -math.log10(10.0 ** (-i / 4)), lr=10.0 ** (-i / 4), x2=(i * 7 % 16) / 16
        )
        for i in range(16)
    ]

    result = fitted(metric_importance(spec, observations, "y"))

    assert result.shares["lr"] > 0.9


def test_a_categorical_shares_its_columns_as_one_parameter() -> None:
    # y is 0, 1 or 5 by category.  The best root split sets c (5) apart; the
    # next sets a apart from b; both cut a one-hot column and leave leaves
    # of equal y.  x2 cycles through 4 values, so no cut on it is as good.
    block = {
        "name": "block",
        "type": "categorical",
        "categorical_values": ["a", "b", "c"],
    }
    spec = make_spec(block, X2)
    level = {"a": 0.0, "b": 1.0, "c": 5.0}
    observations = [
        observe(level[cat], block=cat, x2=(i % 4) / 4)
        for i, cat in enumerate(["a", "b", "c"] * 8)
    ]

    result = fitted(metric_importance(spec, observations, "y"))

    assert result.shares == {"block": 1.0, "x2": 0.0}


def test_a_constant_parameter_gets_zero() -> None:
    constant = {"name": "c", "type": "int", "bounds": {"min": 1, "max": 9}}
    spec = make_spec(X1, X2, constant)
    observations = [
        observe(float(i * i), x1=i / 12, x2=(i * 5 % 12) / 12, c=4) for i in range(12)
    ]

    result = fitted(metric_importance(spec, observations, "y"))

    assert result.shares["c"] == 0.0
    assert sum(result.shares.values()) == pytest.approx(1.0)


def test_every_metric_gets_shares_that_sum_to_one() -> None:
    spec = parse_spec(
        {
            "name": "two-metrics",
            "parameters": [X1, X2],
            "metrics": [
                {"name": "acc", "strategy": "constraint", "threshold": 0.5},
                {"name": "epochs", "objective": "minimize"},
            ],
        }
    )
    observations = [
        Observation(
            assignments={"x1": i / 10, "x2": (i * 3 % 10) / 10},
            values=(
                MetricValue("acc", 0.4 + 0.05 * i),
                MetricValue("epochs", float((i * 7) % 10 + i % 3)),
            ),
        )
        for i in range(10)
    ]

    results = parameter_importance(spec, observations)

    assert [r.metric for r in results] == ["acc", "epochs"]
    for result in results:
        assert sum(fitted(result).shares.values()) == pytest.approx(1.0)


def test_too_few_observations_is_not_enough_data() -> None:
    spec = make_spec(X1, X2)
    observations = [observe(float(i), x1=i / 4, x2=0.5) for i in range(4)]

    result = metric_importance(spec, observations, "y")

    assert result == NotEnoughData(
        "y", "4 observations with a value for y, need at least 5"
    )


def test_failed_observations_do_not_count() -> None:
    spec = make_spec(X1, X2)
    observations = [observe(float(i), x1=i / 4, x2=0.5) for i in range(3)]
    observations += [Observation({"x1": 0.9, "x2": 0.1}, failed=True)] * 3

    result = metric_importance(spec, observations, "y")

    assert isinstance(result, NotEnoughData)
    assert result.reason.startswith("3 observations")


def test_all_equal_values_are_not_enough_data() -> None:
    spec = make_spec(X1, X2)
    observations = [observe(2.5, x1=i / 8, x2=(i % 3) / 3) for i in range(8)]

    result = metric_importance(spec, observations, "y")

    assert result == NotEnoughData("y", "every observation has the same y (2.5)")


def test_no_varying_parameter_is_not_enough_data() -> None:
    spec = make_spec(X1, X2)
    observations = [observe(float(i), x1=0.3, x2=0.6) for i in range(8)]

    result = metric_importance(spec, observations, "y")

    assert isinstance(result, NotEnoughData)
    assert "no split" in result.reason
