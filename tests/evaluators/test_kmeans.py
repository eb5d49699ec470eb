"""The K-means evaluator, branch by branch, against bounds worked out by hand.

Most tests use one double ``x`` on [0, 10]: its width is 10, so the default
margin (10% of the width) is 1 and every expected bound is a short sum.
Unless a test is about ``keep_fraction``, it keeps every feasible point, so
that the chosen cluster is exactly the points the test builds.

Tolerances: a linear bound is one product and one sum away from the inputs,
so it is compared to 1e-12 absolute; a log-scale bound goes through log and
exp, so it is compared to 1e-12 relative.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from optiloop.errors import SpecError
from optiloop.evaluators import (
    KMeansEvaluator,
    ParameterBounds,
    Refinement,
    load_evaluator,
)
from optiloop.experiment import (
    ExperimentSpec,
    MetricValue,
    Observation,
    parse_spec,
)
from optiloop.space import GridParameter, IntParameter, Value

LINEAR = 1e-12
RELATIVE = 1e-12

X: dict[str, Any] = {"name": "x", "type": "double", "bounds": {"min": 0, "max": 10}}

MINIMIZE_EPOCHS: list[dict[str, Any]] = [
    {"name": "acc", "strategy": "constraint", "threshold": 0.9},
    {"name": "epochs", "objective": "minimize"},
]


def make_spec(
    *parameters: dict[str, Any],
    metrics: list[dict[str, Any]] = MINIMIZE_EPOCHS,
) -> ExperimentSpec:
    return parse_spec(
        {"name": "refine-me", "parameters": list(parameters), "metrics": metrics}
    )


def observe(epochs: float, acc: float = 0.95, **assignments: Value) -> Observation:
    """A successful observation of ``epochs`` (minimized) and ``acc``."""
    values = (MetricValue("acc", acc), MetricValue("epochs", epochs))
    return Observation(assignments=dict(assignments), values=values)


def steps(start: float, stop: float, count: int = 11) -> list[float]:
    """``count`` evenly spaced values from start to stop, both ends exact."""
    inner = [start + i * (stop - start) / (count - 1) for i in range(1, count - 1)]
    return [start, *inner, stop]


def refine_x(xs: Sequence[float], epochs: float = 30.0, **settings: Any) -> Refinement:
    """Refine x on [0, 10] from one feasible point per value in ``xs``."""
    observations = [observe(epochs, x=x) for x in xs]
    evaluator = KMeansEvaluator(keep_fraction=1.0, **settings)
    return evaluator.refine(make_spec(X), observations)


def assert_bounds(bounds: ParameterBounds, low: float, high: float) -> None:
    assert bounds.min == pytest.approx(low, abs=LINEAR)
    assert bounds.max == pytest.approx(high, abs=LINEAR)


# Step 5 on a plain double: near a bound widen past it, far from it narrow.


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [
        # 4 - 0 > 1 and 10 - 6 > 1: both far, so [4 - 1, 6 + 1].
        pytest.param((4.0, 6.0), (3.0, 7.0), id="middle-narrows-both"),
        # 0 - 0 <= 1: the min widens to 0 - 1; 10 - 2 > 1: max to 2 + 1.
        pytest.param((0.0, 2.0), (-1.0, 3.0), id="touching-min-widens-min"),
        # 10 - 10 <= 1: the max widens to 10 + 1; the min narrows to 8 - 1.
        pytest.param((8.0, 10.0), (7.0, 11.0), id="touching-max-widens-max"),
        # Exactly one margin away counts as near: 1 - 0 = 1 <= 1.
        pytest.param((1.0, 9.0), (-1.0, 11.0), id="at-the-margin-widens"),
        # Just over one margin away is far: [1.5 - 1, 8.5 + 1].
        pytest.param((1.5, 8.5), (0.5, 9.5), id="past-the-margin-narrows"),
    ],
)
def test_each_bound_moves_by_one_margin(
    cluster: tuple[float, float], expected: tuple[float, float]
) -> None:
    refinement = refine_x(steps(*cluster))

    assert_bounds(refinement.bounds["x"], *expected)
    assert refinement.bounds["x"].grid is None
    assert refinement.stop is False


def test_reason_names_the_cluster_and_each_move() -> None:
    reason = refine_x(steps(0.0, 2.0)).reasons["x"]

    assert "cluster [0, 2] in [0, 10], margin 1" in reason
    assert "min near, widened to -1" in reason
    assert "max far, narrowed to 3" in reason


def test_margin_fraction_sets_the_margin() -> None:
    # A fraction of 0.25 makes the margin 2.5: [4 - 2.5, 6 + 2.5].
    refinement = refine_x(steps(4.0, 6.0), margin_fraction=0.25)

    assert_bounds(refinement.bounds["x"], 1.5, 8.5)


# Hard limits and the never-invert rule.


def test_hard_limits_clip_a_widened_bound() -> None:
    # Unclipped the bounds would be [-1, 3] (cluster [0, 2]).
    refinement = refine_x(steps(0.0, 2.0), hard_bounds={"x": {"min": -0.5}})

    assert_bounds(refinement.bounds["x"], -0.5, 3.0)
    assert "min clipped to the hard limit -0.5" in refinement.reasons["x"]


def test_hard_limits_clip_the_max() -> None:
    # Unclipped [7, 11] (cluster [8, 10]); the limit caps the max at 10.
    refinement = refine_x(steps(8.0, 10.0), hard_bounds={"x": {"max": 10}})

    assert_bounds(refinement.bounds["x"], 7.0, 10.0)


def test_bounds_that_would_invert_stay_as_they_were() -> None:
    # Cluster [4, 6] gives [3, 7]; a hard max of 2 would make it [3, 2].
    refinement = refine_x(steps(4.0, 6.0), hard_bounds={"x": {"min": 0, "max": 2}})

    assert refinement.bounds["x"] == ParameterBounds(0, 10)
    assert refinement.reasons["x"].startswith("unchanged:")
    assert "range is empty" in refinement.reasons["x"]


# Ints: rounded outward, and still ints.

EPOCHS_INT: dict[str, Any] = {
    "name": "n",
    "type": "int",
    "bounds": {"min": 41, "max": 50},
}


def refine_n(values: Sequence[int], **settings: Any) -> Refinement:
    observations = [observe(30.0, n=n) for n in values]
    evaluator = KMeansEvaluator(keep_fraction=1.0, **settings)
    return evaluator.refine(make_spec(EPOCHS_INT), observations)


def test_int_bounds_round_outward_and_stay_ints() -> None:
    # Width 9, margin 0.9.  Cluster [41, 44]: 41 - 41 <= 0.9 widens the min
    # to 40.1, floored to 40; 50 - 44 > 0.9 narrows the max to 44.9, ceiled
    # to 45.
    refinement = refine_n([41, 42, 43, 44] * 3)

    bounds = refinement.bounds["n"]
    assert (bounds.min, bounds.max) == (40, 45)
    assert isinstance(bounds.min, int)
    assert isinstance(bounds.max, int)
    assert "rounded outward to [40, 45]" in refinement.reasons["n"]


def test_int_bounds_ignore_float_noise_in_the_margin() -> None:
    # Width 100, margin 0.07 * 100 = 7 (7.000000000000001 in floats).
    # Cluster [10, 20] is far from both ends: [10 - 7, 20 + 7] = [3, 27],
    # not the [2, 27] that flooring 2.999999999999999 would give.
    spec = make_spec({"name": "n", "type": "int", "bounds": {"min": 0, "max": 100}})
    observations = [observe(30.0, n=n) for n in range(10, 21)]

    evaluator = KMeansEvaluator(keep_fraction=1.0, margin_fraction=0.07)
    refinement = evaluator.refine(spec, observations)

    bounds = refinement.bounds["n"]
    assert (bounds.min, bounds.max) == (3, 27)


def test_int_hard_limits_round_inward() -> None:
    # The widened min 40 would cross the limit 40.5, whose int is 41.
    refinement = refine_n([41, 42, 43, 44] * 3, hard_bounds={"n": {"min": 40.5}})

    bounds = refinement.bounds["n"]
    assert (bounds.min, bounds.max) == (41, 45)
    assert isinstance(bounds.min, int)


def test_applied_int_bounds_give_an_int_parameter() -> None:
    spec = make_spec(EPOCHS_INT)
    refinement = refine_n([41, 42, 43, 44] * 3)

    parameter = refinement.apply(spec).space()["n"]

    assert isinstance(parameter, IntParameter)
    assert (parameter.low, parameter.high) == (40, 45)
    assert isinstance(parameter.low, int)


# Log scale: margins are taken on log(value).

LEARNING_RATE: dict[str, Any] = {
    "name": "lr",
    "type": "double",
    "bounds": {"min": 1e-3, "max": 1e-1},
    "transformation": "log",
}


def refine_lr(values: Sequence[float]) -> Refinement:
    observations = [observe(30.0, lr=lr) for lr in values]
    spec = make_spec(LEARNING_RATE)
    return KMeansEvaluator(keep_fraction=1.0).refine(spec, observations)


def test_log_scale_narrows_by_a_factor() -> None:
    # The log-width is ln(1e-1 / 1e-3) = ln 100, so the margin is
    # 0.1 * ln 100 = ln(10 ** 0.2): one margin is a factor 10 ** 0.2.
    # Cluster [1e-2, 2e-2] is a factor 10 above the min and 5 below the max,
    # both more than 10 ** 0.2 = 1.585, so both bounds narrow.
    refinement = refine_lr([1e-2 * (1 + i / 10) for i in range(11)])

    bounds = refinement.bounds["lr"]
    assert bounds.min == pytest.approx(1e-2 / 10**0.2, rel=RELATIVE)
    assert bounds.max == pytest.approx(2e-2 * 10**0.2, rel=RELATIVE)
    assert bounds.min == pytest.approx(6.309573e-3, rel=1e-6)
    assert bounds.max == pytest.approx(3.169786e-2, rel=1e-6)
    assert "in log space" in refinement.reasons["lr"]


def test_log_scale_widens_below_the_min_and_stays_positive() -> None:
    # Cluster [1e-3, 2e-3] touches the min: it moves one factor down.
    refinement = refine_lr([1e-3 * (1 + i / 10) for i in range(11)])

    bounds = refinement.bounds["lr"]
    assert bounds.min == pytest.approx(1e-3 / 10**0.2, rel=RELATIVE)
    assert bounds.max == pytest.approx(2e-3 * 10**0.2, rel=RELATIVE)
    assert bounds.min > 0


# Grids: the members inside the new bounds are kept.

POWERS: dict[str, Any] = {"name": "g", "type": "double", "grid": [1, 2, 4, 8, 16, 32]}


def refine_grid(
    parameter: dict[str, Any], values: Sequence[float], **settings: Any
) -> Refinement:
    observations = [observe(30.0, g=value) for value in values]
    evaluator = KMeansEvaluator(keep_fraction=1.0, **settings)
    return evaluator.refine(make_spec(parameter), observations)


def test_grid_keeps_members_inside_widened_bounds() -> None:
    # The grid's ends [1, 32] are its bounds: width 31, margin 3.1.
    # Cluster {4, 8}: 4 - 1 = 3 <= 3.1 widens the min to 1 - 3.1 = -2.1;
    # 32 - 8 > 3.1 narrows the max to 8 + 3.1 = 11.1.  1 and 2 were not
    # used by the cluster but lie inside, so they stay.
    refinement = refine_grid(POWERS, [4, 8] * 5)

    bounds = refinement.bounds["g"]
    assert_bounds(bounds, -2.1, 11.1)
    assert bounds.grid == (1, 2, 4, 8)
    assert "grid keeps [1, 2, 4, 8]" in refinement.reasons["g"]


def test_grid_drops_members_outside_narrowed_bounds() -> None:
    # Cluster {8, 16}: far from both ends, so [8 - 3.1, 16 + 3.1].
    refinement = refine_grid(POWERS, [8, 16] * 5)

    bounds = refinement.bounds["g"]
    assert_bounds(bounds, 4.9, 19.1)
    assert bounds.grid == (8, 16)


def test_applied_grid_lists_only_the_kept_members() -> None:
    refinement = refine_grid(POWERS, [8, 16] * 5)

    parameter = refinement.apply(make_spec(POWERS)).parameters[0]

    assert parameter.grid == [8, 16]
    assert parameter.bounds is not None
    assert parameter.bounds.min == pytest.approx(4.9, abs=LINEAR)


DECADES: dict[str, Any] = {"name": "g", "type": "double", "grid": [1, 10, 100]}


def test_grid_with_one_member_left_keeps_the_clusters_member() -> None:
    # Width 99, margin 9.9.  Cluster {100}: the min narrows to 90.1 and the
    # max widens to 109.9; only 100 lies inside, the member the cluster used.
    refinement = refine_grid(DECADES, [100] * 10)

    bounds = refinement.bounds["g"]
    assert_bounds(bounds, 90.1, 109.9)
    assert bounds.grid == (100,)


def test_grid_keeps_the_clusters_members_when_limits_cut_them() -> None:
    # As above, but a hard max of 95 leaves [90.1, 95], with no member in
    # it: the cluster's own member 100 is kept and the max reaches it.
    refinement = refine_grid(DECADES, [100] * 10, hard_bounds={"g": {"max": 95}})

    bounds = refinement.bounds["g"]
    assert_bounds(bounds, 90.1, 100.0)
    assert bounds.grid == (100,)
    assert "kept the cluster's members" in refinement.reasons["g"]


WEIGHT_DECAY: dict[str, Any] = {
    "name": "g",
    "type": "double",
    "grid_pow2": {"base": 1e-4, "min": 1e-5, "max": 4e-4},
}


def test_pow2_grid_is_refined_in_log_space() -> None:
    # The module docstring's example: the log-width is ln 40, one margin a
    # factor 40 ** 0.1 = 1.446.  Cluster {5e-5, 1e-4} is a factor 5 above
    # the min and 4 below the max, so the range becomes
    # [5e-5 / 1.446, 1e-4 * 1.446] = [3.457e-5, 1.446e-4].
    refinement = refine_grid(WEIGHT_DECAY, [5e-5, 1e-4] * 5)

    bounds = refinement.bounds["g"]
    assert bounds.min == pytest.approx(5e-5 / 40**0.1, rel=RELATIVE)
    assert bounds.max == pytest.approx(1e-4 * 40**0.1, rel=RELATIVE)
    assert bounds.grid == pytest.approx((5e-5, 1e-4), rel=RELATIVE)


def test_widened_pow2_grid_gains_the_next_power_of_two() -> None:
    # margin_fraction 0.2 makes one margin a factor 40 ** 0.2 = 2.091.
    # Cluster {2e-4, 4e-4} touches the max, which widens to 4e-4 * 2.091 =
    # 8.36e-4, so 8e-4 joins the grid; the min narrows to 2e-4 / 2.091 =
    # 9.56e-5, which keeps 1e-4.
    refinement = refine_grid(WEIGHT_DECAY, [2e-4, 4e-4] * 5, margin_fraction=0.2)

    bounds = refinement.bounds["g"]
    assert bounds.min == pytest.approx(2e-4 / 40**0.2, rel=RELATIVE)
    assert bounds.max == pytest.approx(4e-4 * 40**0.2, rel=RELATIVE)
    assert bounds.grid == pytest.approx((1e-4, 2e-4, 4e-4, 8e-4), rel=RELATIVE)


def test_applied_pow2_grid_keeps_its_base_and_takes_the_new_range() -> None:
    refinement = refine_grid(WEIGHT_DECAY, [5e-5, 1e-4] * 5)

    spec = refinement.apply(make_spec(WEIGHT_DECAY))

    pow2 = spec.parameters[0].grid_pow2
    assert pow2 is not None
    assert pow2.base == 1e-4
    assert pow2.min == pytest.approx(5e-5 / 40**0.1, rel=RELATIVE)
    grid = spec.space()["g"]
    assert isinstance(grid, GridParameter)
    assert grid.values() == pytest.approx([5e-5, 1e-4], rel=RELATIVE)


# Categoricals take no part and stay as they are.

BLOCK: dict[str, Any] = {
    "name": "block",
    "type": "categorical",
    "categorical_values": ["basic", "wide"],
}


def test_categoricals_are_unchanged_and_do_not_steer_the_cluster() -> None:
    # The categories alternate across the points; x alone decides.
    observations = [
        observe(30.0, x=x, block=["basic", "wide"][i % 2])
        for i, x in enumerate(steps(4.0, 6.0))
    ]
    spec = make_spec(X, BLOCK)

    refinement = KMeansEvaluator(keep_fraction=1.0).refine(spec, observations)

    assert "block" not in refinement.bounds
    assert refinement.reasons["block"] == "categorical: unchanged"
    assert_bounds(refinement.bounds["x"], 3.0, 7.0)
    assert refinement.apply(spec).parameters[1].categories == ["basic", "wide"]


# Steps 1 and 2: which observations count.


def test_too_few_points_keep_the_bounds_and_say_why() -> None:
    spec = make_spec(X, BLOCK)
    observations = [observe(30.0, x=x, block="basic") for x in steps(4.0, 6.0, 9)]

    refinement = KMeansEvaluator(keep_fraction=1.0).refine(spec, observations)

    assert refinement.bounds == {"x": ParameterBounds(0, 10)}
    assert refinement.stop is False
    for reason in [*refinement.reasons.values(), refinement.summary]:
        assert "only 9 of 9 feasible observations" in reason
        assert "min_cluster_size=10" in reason
    assert refinement.reasons["block"].startswith("categorical: unchanged")
    assert refinement.apply(spec) == spec


def test_keep_fraction_can_leave_too_few_points() -> None:
    # 12 feasible points, the best ceil(0.75 * 12) = 9 kept: fewer than 10.
    observations = [observe(30.0, x=x) for x in steps(4.0, 6.0, 12)]

    refinement = KMeansEvaluator().refine(make_spec(X), observations)

    assert refinement.bounds["x"] == ParameterBounds(0, 10)
    assert "only 9 of 12 feasible observations" in refinement.summary


def test_infeasible_points_never_steer_the_bounds() -> None:
    good = [observe(40.0, x=x) for x in steps(4.0, 6.0)]
    # Far better objectives, but each breaks a rule of feasibility.
    below_threshold = [observe(1.0, acc=0.5, x=9.5) for _ in range(5)]
    failed = [Observation(assignments={"x": 0.5}, failed=True)]
    never_converged = [
        Observation(
            assignments={"x": 0.5},
            values=(MetricValue("acc", 0.95), MetricValue("epochs", 1.0)),
            metadata={"converged": False},
        )
    ]
    observations = good + below_threshold + failed + never_converged

    evaluator = KMeansEvaluator(keep_fraction=1.0)
    refinement = evaluator.refine(make_spec(X), observations)

    assert_bounds(refinement.bounds["x"], 3.0, 7.0)
    assert "11 of 11 feasible observations (of 18) kept" in refinement.summary


def test_keep_fraction_drops_the_worst_points() -> None:
    # 11 points at [4, 6] with 30 epochs and 11 at [7.5, 9.5] with 50: half
    # of 22 is 11, exactly the good ones.
    good = [observe(30.0, x=x) for x in steps(4.0, 6.0)]
    poor = [observe(50.0, x=x) for x in steps(7.5, 9.5)]

    refinement = KMeansEvaluator(keep_fraction=0.5).refine(make_spec(X), poor + good)

    assert_bounds(refinement.bounds["x"], 3.0, 7.0)


def test_keep_fraction_rounds_the_count_up() -> None:
    # 13 feasible points: ceil(0.75 * 13) = ceil(9.75) = 10 are kept, enough
    # for one cluster (rounding down would keep 9, too few).  The 3 worst
    # sit at x = 9.9 and are dropped; the kept 10 span [4, 5.8].
    good = [observe(30.0, x=x) for x in steps(4.0, 5.8, 10)]
    worst = [observe(60.0, x=9.9) for _ in range(3)]

    refinement = KMeansEvaluator().refine(make_spec(X), worst + good)

    assert_bounds(refinement.bounds["x"], 3.0, 6.8)
    assert "10 of 13 feasible observations" in refinement.summary


def test_keep_fraction_count_ignores_float_noise() -> None:
    # 0.28 * 25 is 7.000000000000001 in floats; the count meant is 7, so
    # the 18 points at x = 9.5 (the worst) stay out and [4, 6] gives [3, 7].
    good = [observe(30.0, x=x) for x in steps(4.0, 6.0, 7)]
    worst = [observe(50.0, x=9.5) for _ in range(18)]
    evaluator = KMeansEvaluator(keep_fraction=0.28, min_cluster_size=7)

    refinement = evaluator.refine(make_spec(X), worst + good)

    assert_bounds(refinement.bounds["x"], 3.0, 7.0)


# Steps 3 and 4: the cluster with the best mean wins.

SCORE_MAXIMIZED: list[dict[str, Any]] = [
    {"name": "acc", "strategy": "constraint", "threshold": 0.9},
    {"name": "epochs", "objective": "maximize"},
]


def two_clusters() -> list[Observation]:
    """Left, x in [1.5, 2.5], holds the single best point (10 epochs) but
    its mean is 41.8; right, x in [7.5, 8.5], has a mean of 30."""
    left = [
        observe(10.0 if i == 0 else 45.0, x=x) for i, x in enumerate(steps(1.5, 2.5))
    ]
    right = [observe(30.0, x=x) for x in steps(7.5, 8.5)]
    return left + right


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        # Fewest epochs: the right cluster's mean 30 beats 41.8 despite the
        # left's best point; [7.5 - 1, 8.5 + 1].
        pytest.param(MINIMIZE_EPOCHS, (6.5, 9.5), id="minimize"),
        # Most epochs: the left cluster's mean 41.8 wins; [1.5 - 1, 2.5 + 1].
        pytest.param(SCORE_MAXIMIZED, (0.5, 3.5), id="maximize"),
    ],
)
def test_the_cluster_with_the_best_mean_is_chosen(
    metrics: list[dict[str, Any]], expected: tuple[float, float]
) -> None:
    spec = make_spec(X, metrics=metrics)

    refinement = KMeansEvaluator(keep_fraction=1.0).refine(spec, two_clusters())

    assert_bounds(refinement.bounds["x"], *expected)
    assert "2 cluster(s)" in refinement.summary
    assert "with 11 points" in refinement.summary


def test_clusters_are_found_on_every_numeric_parameter() -> None:
    # Both groups share x in [4, 6]; only y tells them apart.  The better
    # group has y in [3, 4]: far from both ends of [0, 10], so [2, 5].
    y = {"name": "y", "type": "double", "bounds": {"min": 0, "max": 10}}
    better = [observe(30.0, x=x, y=3 + i / 10) for i, x in enumerate(steps(4, 6))]
    worse = [observe(50.0, x=x, y=8 + i / 10) for i, x in enumerate(steps(4, 6))]

    refinement = KMeansEvaluator(keep_fraction=1.0).refine(
        make_spec(X, y), worse + better
    )

    assert_bounds(refinement.bounds["x"], 3.0, 7.0)
    assert_bounds(refinement.bounds["y"], 2.0, 5.0)


def test_a_too_small_cluster_lowers_the_number_of_clusters() -> None:
    # 26 points allow floor(26 / 10) = 2 clusters, but the natural split is
    # 20 and 6, and 6 < 10: one cluster of all 26 remains.  It spans
    # [1.5, 8.5], far from both ends: [0.5, 9.5].
    many = [observe(40.0, x=x) for x in steps(1.5, 2.5, 20)]
    few = [observe(30.0, x=x) for x in steps(7.5, 8.5, 6)]

    refinement = KMeansEvaluator(keep_fraction=1.0).refine(make_spec(X), many + few)

    assert_bounds(refinement.bounds["x"], 0.5, 9.5)
    assert "1 cluster(s)" in refinement.summary


def test_refinement_is_deterministic() -> None:
    evaluator = KMeansEvaluator(keep_fraction=1.0)
    spec = make_spec(X)

    first = evaluator.refine(spec, two_clusters())
    second = evaluator.refine(spec, two_clusters())

    assert first == second


# The stop flag.


def test_stop_only_when_configured_and_nothing_moved() -> None:
    # With a zero margin, a cluster spanning all of [0, 10] moves nothing.
    xs = steps(0.0, 10.0)

    assert refine_x(xs, margin_fraction=0).stop is False
    assert refine_x(xs, margin_fraction=0, stop_when_unchanged=True).stop is True
    assert refine_x(steps(4.0, 6.0), stop_when_unchanged=True).stop is False


# Settings and loading.


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"keep_fraction": 0}, r"evaluator_settings\.keep_fraction: "),
        ({"keep_fraction": 1.5}, r"evaluator_settings\.keep_fraction: "),
        ({"min_cluster_size": 0}, r"evaluator_settings\.min_cluster_size: "),
        ({"margin_fraction": -0.1}, r"evaluator_settings\.margin_fraction: "),
        ({"n_init": 0}, r"evaluator_settings\.n_init: "),
        ({"keep_fracton": 0.5}, r"evaluator_settings\.keep_fracton: unknown"),
        (
            {"hard_bounds": {"x": {"min": 2, "max": 1}}},
            r"evaluator_settings\.hard_bounds\.x: min < max must hold",
        ),
    ],
)
def test_bad_settings_name_their_field(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        KMeansEvaluator(**settings)


def test_hard_bounds_must_name_a_numeric_parameter() -> None:
    evaluator = KMeansEvaluator(hard_bounds={"block": {"min": 0}})

    with pytest.raises(SpecError, match=r"evaluator_settings\.hard_bounds\.block"):
        evaluator.refine(make_spec(X, BLOCK), [])


@pytest.mark.parametrize(
    "name",
    [
        "kmeans",
        "optiloop.evaluators.kmeans:KMeansEvaluator",
        "optiloop.evaluators.kmeans.KMeansEvaluator",
    ],
)
def test_load_evaluator_builds_with_settings(name: str) -> None:
    evaluator = load_evaluator(name, {"keep_fraction": 0.5})

    assert isinstance(evaluator, KMeansEvaluator)
    assert evaluator.settings.keep_fraction == 0.5


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("kmean", {}, r"^evaluator: 'kmean' is neither a built-in"),
        ("no_such_package.mod:Thing", {}, r"^evaluator: cannot import module"),
        ("optiloop.evaluators:Missing", {}, r"^evaluator: module .* has no"),
        ("optiloop.evaluators.base:SETTINGS_FIELD", {}, r"^evaluator: .* not a"),
        ("collections:OrderedDict", {}, r"^evaluator: .* no refine"),
        ("kmeans", {"keep_fraction": 2}, r"^evaluator_settings\.keep_fraction"),
        ("decimal:Decimal", {"nope": 1}, r"^evaluator_settings: decimal:Decimal"),
    ],
)
def test_load_evaluator_errors_name_the_field(
    name: str, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        load_evaluator(name, settings)


# Refinement.apply.


def test_apply_changes_only_the_bounds() -> None:
    spec = make_spec(X, BLOCK)
    refinement = Refinement(
        stop=False,
        bounds={"x": ParameterBounds(3.0, 7.0)},
        reasons={},
        summary="",
    )

    applied = refinement.apply(spec)

    assert applied.parameters[0].bounds is not None
    assert applied.parameters[0].bounds.min == 3.0
    assert applied.parameters[0].bounds.max == 7.0
    assert applied.parameters[1] == spec.parameters[1]
    assert applied.metrics == spec.metrics
    assert applied.name == spec.name


def test_apply_filters_a_grid_when_the_refinement_lists_no_members() -> None:
    # An evaluator may give only the range of a grid parameter.
    refinement = Refinement(False, {"g": ParameterBounds(3, 20)}, {}, "")

    applied = refinement.apply(make_spec(POWERS))

    assert applied.parameters[0].grid == [4, 8, 16]


def test_apply_refuses_bounds_for_an_unknown_parameter() -> None:
    refinement = Refinement(False, {"z": ParameterBounds(0, 1)}, {}, "")

    with pytest.raises(SpecError, match=r"parameters\.z"):
        refinement.apply(make_spec(X))
