"""Bayesian optimization: numerics, published benchmarks and behaviours."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from scipy.stats import norm, skew, yeojohnson_normmax

from optiloop.errors import SpecError
from optiloop.experiment import ExperimentSpec, MetricValue, Observation, parse_spec
from optiloop.optimizers import BayesianOptimizer, SobolOptimizer
from optiloop.optimizers.bayesian import (
    _objective_targets,
    _warp_exact,
    _yeo_johnson_power,
    log_expected_hypervolume_improvement,
    log_expected_improvement,
    posterior_best,
    posterior_ranking,
)
from optiloop.space import Assignments
from optiloop.workloads import functions

# What a test's objective returns for a point: its metric values, or None
# for a run that failed.
Evaluate = Callable[[Assignments], tuple[MetricValue, ...] | None]


def _run(
    spec: ExperimentSpec, evaluate: Evaluate, n_evaluations: int, seed: int
) -> list[Observation]:
    """The sequential loop: suggest one point, evaluate it, record it."""
    optimizer = BayesianOptimizer()
    observations: list[Observation] = []
    for _ in range(n_evaluations):
        [point] = optimizer.suggest(spec, observations, [], 1, seed)
        values = evaluate(point)
        if values is None:
            observations.append(Observation(assignments=point, failed=True))
        else:
            observations.append(Observation(assignments=point, values=values))
    return observations


def _unit_square(metrics: list[dict[str, object]]) -> ExperimentSpec:
    return parse_spec(
        {
            "parameters": [
                {"name": name, "type": "double", "bounds": {"min": 0, "max": 1}}
                for name in ("x1", "x2")
            ],
            "metrics": metrics,
        }
    )


def _branin_spec(objective: str) -> ExperimentSpec:
    (x1_low, x1_high), (x2_low, x2_high) = functions.BRANIN_BOUNDS
    return parse_spec(
        {
            "parameters": [
                {
                    "name": "x1",
                    "type": "double",
                    "bounds": {"min": x1_low, "max": x1_high},
                },
                {
                    "name": "x2",
                    "type": "double",
                    "bounds": {"min": x2_low, "max": x2_high},
                },
            ],
            "metrics": [{"name": "y", "objective": objective}],
        }
    )


def _diagonal(x: float) -> Assignments:
    return {"x1": x, "x2": x}


def _branin(point: Assignments) -> float:
    return float(functions.branin([point["x1"], point["x2"]]))


# Numerics of the acquisition.


def test_log_ei_at_the_incumbent_is_std_times_phi_of_zero() -> None:
    # z = 0: EI = std * (phi(0) + 0) = std / sqrt(2 pi).
    std = np.array([0.5, 2.0])
    log_ei = log_expected_improvement(np.array([1.0, 1.0]), std, 1.0)
    np.testing.assert_allclose(log_ei, np.log(std / math.sqrt(2.0 * math.pi)))


def test_log_ei_matches_the_direct_formula_where_that_is_accurate() -> None:
    # Down to z = -10 the textbook std * (phi(z) + z Phi(z)) loses at most
    # two of its sixteen digits to cancellation.  The points straddle the
    # switch between formulas at z = -1.
    z = np.array([6.0, 2.0, 0.3, -0.5, -1.0 + 1e-9, -1.0 - 1e-9, -3.0, -10.0])
    std = 0.7
    mean = -z * std  # incumbent 0

    log_ei = log_expected_improvement(mean, np.full(z.shape, std), 0.0)

    direct = np.log(std * (norm.pdf(z) + z * norm.cdf(z)))
    np.testing.assert_allclose(log_ei, direct, rtol=1e-9)


def test_log_ei_follows_the_asymptotic_series_far_below_the_incumbent() -> None:
    # There EI underflows to 0 but its log must not: for z -> -infinity,
    # phi(z) + z Phi(z) = phi(z) / z^2 * (1 - 3/z^2 + 15/z^4 - 105/z^6
    # + 945/z^8 - ...) (the Mills-ratio series); at |z| >= 40 the first
    # omitted term is below 1e-12.
    z = np.array([-40.0, -1e3, -1e6, -1e9, -1e12])

    log_ei = log_expected_improvement(-z, np.ones_like(z), 0.0)

    correction = -3.0 / z**2 + 15.0 / z**4 - 105.0 / z**6 + 945.0 / z**8
    series = norm.logpdf(z) - 2.0 * np.log(-z) + np.log1p(correction)
    np.testing.assert_allclose(log_ei, series, rtol=1e-12)
    assert np.all(np.diff(log_ei) < 0)  # ever smaller as z falls


def _hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Area that ``(n, 2)`` points dominate below ``reference`` (minimizing),
    by a sweep along the first objective."""
    area, ceiling = 0.0, float(reference[1])
    for f1, f2 in points[np.argsort(points[:, 0])]:
        if f1 < reference[0] and f2 < ceiling:
            area += (reference[0] - f1) * (ceiling - f2)
            ceiling = f2
    return area


def test_log_ehvi_of_a_nearly_certain_point_is_its_hypervolume_gain() -> None:
    # Front (0, 0.5) and (0.5, 0) below the reference (1, 1): a point at
    # (0.25, 0.25) adds exactly the square [0.25, 0.5]^2, area 1/16.  A
    # point behind the front adds nothing: its log is very negative.
    front = np.array([[0.0, 0.5], [0.5, 0.0]])
    reference = np.array([1.0, 1.0])
    means = np.array([[0.25, 0.25], [0.75, 0.75]])
    stds = np.full((2, 2), 1e-9)

    log_ehvi = log_expected_hypervolume_improvement(means, stds, front, reference)

    assert log_ehvi[0] == pytest.approx(math.log(1 / 16), abs=1e-6)
    assert log_ehvi[1] < -30.0


def test_log_ehvi_matches_a_monte_carlo_estimate() -> None:
    # 40,000 draws of independent Gaussian objectives; the mean gain has a
    # relative standard error under 1% here, so 4% is a 4-sigma band.
    front = np.array([[0.0, 1.0], [0.5, 0.4], [1.0, 0.0], [0.7, 0.7]])
    reference = np.array([2.0, 2.0])
    base = _hypervolume(front, reference)
    rng = np.random.default_rng(0)
    for mean, std in [((0.2, 0.2), (0.3, 0.5)), ((-1.0, 3.0), (1.0, 1.0))]:
        draws = rng.normal(mean, std, size=(40_000, 2))
        gains = [_hypervolume(np.vstack([front, y]), reference) - base for y in draws]

        log_ehvi = log_expected_hypervolume_improvement(
            np.array([mean]), np.array([std]), front, reference
        )

        assert math.exp(log_ehvi[0]) == pytest.approx(np.mean(gains), rel=0.04)


# Published benchmarks.


def test_branin_within_0_1_of_its_minimum_in_40_evaluations() -> None:
    # The published minimum is 0.397887.  A gap of 0.1 separates search
    # from luck: the best of 40 uniform random points has a median gap of
    # 0.9, and only 8% of random seeds come within 0.1.  Measured on this
    # implementation, all 10 seeds end within 3e-4; the test asks 8 of 10
    # so that another platform's rounding in the linear algebra, which can
    # change a trajectory, cannot fail it.
    spec = _branin_spec("minimize")

    def evaluate(point: Assignments) -> tuple[MetricValue, ...]:
        return (MetricValue("y", _branin(point)),)

    best = [
        min(_branin(o.assignments) for o in _run(spec, evaluate, 40, seed))
        for seed in range(10)
    ]

    close = [value for value in best if value - functions.BRANIN_MINIMUM < 0.1]
    assert len(close) >= 8, best
    assert min(best) >= functions.BRANIN_MINIMUM - 1e-6


def test_maximizing_minus_branin_is_the_same_search() -> None:
    # On the to_minimize scale both directions give identical numbers, so
    # the suggestions must be identical, not merely similar.
    def minimized(point: Assignments) -> tuple[MetricValue, ...]:
        return (MetricValue("y", _branin(point)),)

    def maximized(point: Assignments) -> tuple[MetricValue, ...]:
        return (MetricValue("y", -_branin(point)),)

    down = _run(_branin_spec("minimize"), minimized, 20, seed=7)
    up = _run(_branin_spec("maximize"), maximized, 20, seed=7)

    assert [o.assignments for o in up] == [o.assignments for o in down]


def _gramacy_spec() -> ExperimentSpec:
    return _unit_square(
        [
            {"name": "y", "objective": "minimize"},
            {
                "name": "c1",
                "objective": "minimize",
                "strategy": "constraint",
                "threshold": 0.0,
            },
            {
                "name": "c2",
                "objective": "minimize",
                "strategy": "constraint",
                "threshold": 0.0,
            },
        ]
    )


def _gramacy_outcome(point: Assignments) -> tuple[float, float, float]:
    objective, c1, c2 = functions.gramacy([point["x1"], point["x2"]])
    return float(objective), float(c1), float(c2)


def _gramacy(point: Assignments) -> tuple[MetricValue, ...]:
    objective, c1, c2 = _gramacy_outcome(point)
    return (MetricValue("y", objective), MetricValue("c1", c1), MetricValue("c2", c2))


def test_constrained_gramacy_problem_reaches_its_optimum() -> None:
    # The published constrained minimum is 0.5998, on the boundary of a
    # feasible set covering 46% of the square.  The best feasible point of
    # 30 uniform random points has a median gap of 0.2, and 1% of random
    # seeds come within 0.01.  Measured on this implementation with 30
    # evaluations: all of 10 seeds within 1e-3 (within 2e-4 by 40).  The
    # test asks 4 of 5 seeds within 0.01.
    spec = _gramacy_spec()

    best = []
    for seed in range(5):
        observations = _run(spec, _gramacy, 30, seed)
        feasible_values = [
            objective
            for objective, c1, c2 in (
                _gramacy_outcome(o.assignments) for o in observations
            )
            if c1 <= 0.0 and c2 <= 0.0
        ]
        best.append(min(feasible_values))

    close = [v for v in best if abs(v - functions.GRAMACY_MINIMUM) < 0.01]
    assert len(close) >= 4, best


def test_hartmann6_comes_within_0_25_of_its_minimum_in_50_evaluations() -> None:
    # The published minimum is -3.32237 (Dixon and Szego 1978).  Its two
    # next-best basins lie 0.12 and 0.19 above it (-3.2032 and about -3.14
    # as measured here); a run that reaches either has found a basin about as
    # deep as the global one, and the tolerance of 0.25 accepts them.  The
    # best of 50 uniform random points has a median gap of about 1.7 and
    # none of 200 random seeds came within 0.25.  Measured on this
    # implementation: 8 of 8 seeds within 0.2 by 50 evaluations, 3 of 8 in
    # the global basin (within 2e-3).  The test asks 4 of 5 seeds.
    names = [f"x{i}" for i in range(1, 7)]
    spec = parse_spec(
        {
            "parameters": [
                {"name": n, "type": "double", "bounds": {"min": 0, "max": 1}}
                for n in names
            ],
            "metrics": [{"name": "y", "objective": "minimize"}],
        }
    )

    def value(point: Assignments) -> float:
        return float(functions.hartmann6([float(point[n]) for n in names]))

    def evaluate(point: Assignments) -> tuple[MetricValue, ...]:
        return (MetricValue("y", value(point)),)

    gaps = [
        min(value(o.assignments) for o in _run(spec, evaluate, 50, seed))
        - functions.HARTMANN6_MINIMUM
        for seed in range(5)
    ]

    assert sum(gap < 0.25 for gap in gaps) >= 4, gaps
    assert min(gaps) >= -1e-6


# Behaviours.


def test_initial_design_is_the_experiment_sobol_sequence() -> None:
    # Until max(5, 2 dims) = 5 points exist, suggestions are the Sobol
    # strategy's own points, continuing across calls.
    spec = _branin_spec("minimize")

    def evaluate(point: Assignments) -> tuple[MetricValue, ...]:
        return (MetricValue("y", _branin(point)),)

    observations = _run(spec, evaluate, 5, seed=3)

    sobol = SobolOptimizer().suggest(spec, [], [], 5, seed=3)
    assert [o.assignments for o in observations] == sobol


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_a_value_exactly_at_the_threshold_meets_it(direction: str) -> None:
    # Every observation has c exactly at its threshold.  Counted as met,
    # they are all feasible and the search minimizes y = (x - 0.3)^2,
    # suggesting near x = 0.3.  With the threshold a hair stricter, nothing
    # is feasible and the search only seeks feasibility: c looks constant
    # and just infeasible, so the chance of meeting the threshold is
    # largest where the model is least sure, at an end of the interval.
    xs = [0.05 + 0.1 * i for i in range(10)]
    observations = [
        Observation(
            assignments={"x": x},
            values=(MetricValue("y", (x - 0.3) ** 2), MetricValue("c", 0.25)),
        )
        for x in xs
    ]
    stricter = 1e-9 if direction == "maximize" else -1e-9

    [at_threshold] = BayesianOptimizer().suggest(
        _threshold_spec(direction, 0.25), observations, [], 1, seed=0
    )
    [past_threshold] = BayesianOptimizer().suggest(
        _threshold_spec(direction, 0.25 + stricter), observations, [], 1, seed=0
    )

    assert abs(float(at_threshold["x"]) - 0.3) < 0.05
    assert abs(float(past_threshold["x"]) - 0.3) > 0.2


def _threshold_spec(direction: str, threshold: float) -> ExperimentSpec:
    return parse_spec(
        {
            "parameters": [
                {"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}
            ],
            "metrics": [
                {"name": "y", "objective": "minimize"},
                {
                    "name": "c",
                    "objective": direction,
                    "strategy": "constraint",
                    "threshold": threshold,
                },
            ],
        }
    )


def test_a_batch_with_pending_points_is_spread_out() -> None:
    # Without the believer, all four slots would maximize the same
    # acquisition and crowd onto one spot.
    spec = _branin_spec("minimize")
    space = spec.space()
    points = SobolOptimizer().suggest(spec, [], [], 12, seed=3)
    observations = [
        Observation(assignments=p, values=(MetricValue("y", _branin(p)),))
        for p in points[:10]
    ]
    pending = points[10:]

    batch = BayesianOptimizer().suggest(spec, observations, pending, 4, seed=3)

    assert len(batch) == 4
    keys = [space.key(p) for p in batch]
    assert len(set(keys)) == 4
    assert not set(keys) & {space.key(p) for p in points}
    cube = space.to_unit_many(batch + pending)
    gaps = [np.linalg.norm(a - b) for a, b in itertools.combinations(cube, 2)]
    assert min(gaps) > 0.05


def test_a_failing_region_is_avoided() -> None:
    # Runs with x1 > 0.5 fail (think: a learning rate that diverges); the
    # bowl's minimum is at (0.3, 0.5).  The objective model has no values
    # in the failing half, so without the success model its expected
    # improvement stays high there: measured, 20-24 of the 25 suggestions
    # after the initial design then fail.  With it, 0-4 of 25 did.
    spec = _unit_square([{"name": "y", "objective": "minimize"}])

    def evaluate(point: Assignments) -> tuple[MetricValue, ...] | None:
        x1, x2 = float(point["x1"]), float(point["x2"])
        if x1 > 0.5:
            return None
        return (MetricValue("y", (x1 - 0.3) ** 2 + (x2 - 0.5) ** 2),)

    for seed in range(3):
        observations = _run(spec, evaluate, 30, seed)

        after_initial = observations[5:]
        failures = sum(o.failed for o in after_initial)
        assert failures <= len(after_initial) // 3, (seed, failures)
        best = min(o.value("y") or math.inf for o in observations)
        assert best < 1e-3


def test_a_small_discrete_space_is_covered_once_then_exhausted() -> None:
    spec = parse_spec(
        {
            "parameters": [
                {"name": n, "type": "categorical", "categorical_values": ["lo", "hi"]}
                for n in ("a", "b", "c")
            ],
            "metrics": [{"name": "y", "objective": "minimize"}],
        }
    )
    space = spec.space()

    def evaluate(point: Assignments) -> tuple[MetricValue, ...]:
        return (MetricValue("y", sum(v == "hi" for v in point.values())),)

    observations = _run(spec, evaluate, 8, seed=0)

    assert len({space.key(o.assignments) for o in observations}) == 8
    assert BayesianOptimizer().suggest(spec, observations, [], 1, seed=0) == []


def test_noisy_repeats_and_failures_at_one_point_are_handled() -> None:
    # Repeated points with different values, stddevs and a failure at the
    # same place must not break the models (a singular kernel matrix).
    spec = _unit_square([{"name": "y", "objective": "minimize"}])
    here: Assignments = {"x1": 0.5, "x2": 0.5}
    observations = [
        Observation(assignments=here, values=(MetricValue("y", v, 0.1),))
        for v in (1.0, 1.2, 0.9)
    ]
    observations.append(Observation(assignments=here, failed=True))
    observations += [
        Observation(assignments=_diagonal(x), values=(MetricValue("y", 2.0 * x),))
        for x in (0.1, 0.9)
    ]

    batch = BayesianOptimizer().suggest(spec, observations, [], 2, seed=0)

    # Two distinct points, neither the repeated one: the models held.
    assert len(batch) == 2
    assert batch[0] != batch[1]
    assert here not in batch


def _square_with_one_bad_observation(
    bad: Observation,
) -> tuple[ExperimentSpec, list[Observation]]:
    spec = _unit_square([{"name": "y", "objective": "minimize"}])
    observations = [
        Observation(assignments=_diagonal(x), values=(MetricValue("y", x),))
        for x in (0.1, 0.4, 0.7, 0.9)
    ]
    return spec, [*observations[:2], bad, *observations[2:]]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            Observation(_diagonal(0.5), (MetricValue("y", math.nan),)),
            r"observations\[2\]\.values\[0\]\.value must be finite, got nan",
        ),
        (
            Observation(_diagonal(0.5), (MetricValue("y", -math.inf),)),
            r"observations\[2\]\.values\[0\]\.value must be finite, got -inf",
        ),
        (
            Observation(_diagonal(0.5), (MetricValue("y", 1.0, -0.1),)),
            r"observations\[2\]\.values\[0\]\.value_stddev must be >= 0",
        ),
        (
            Observation({"x1": 5.0, "x2": 0.5}, (MetricValue("y", 1.0),)),
            r"observations\[2\]\.assignments\.x1: value must lie within bounds",
        ),
        (
            Observation({"x1": 0.5}, (MetricValue("y", 1.0),)),
            r"observations\[2\]\.assignments\.x2: a value is required",
        ),
        (
            Observation(_diagonal(0.5), ()),
            r"observations\[2\]\.values: a value is required for metric 'y'",
        ),
        (
            Observation(_diagonal(0.5), (MetricValue("z", 1.0),)),
            r"observations\[2\]\.values\[0\]\.name: metric 'z' is not defined",
        ),
        (
            Observation(_diagonal(0.5), (MetricValue("y", 1.0),) * 2),
            r"observations\[2\]\.values\[1\]\.name: metric 'y' is reported twice",
        ),
    ],
)
def test_a_bad_observation_is_refused_by_name(bad: Observation, message: str) -> None:
    # One NaN would make every posterior mean NaN, a success without its
    # objective could be reported best, and a point off the space would be
    # clipped to its edge: all are refused, naming the observation and the
    # field, by suggest and by posterior_best alike.
    spec, observations = _square_with_one_bad_observation(bad)

    with pytest.raises(SpecError, match=message):
        BayesianOptimizer().suggest(spec, observations, [], 1, seed=0)
    with pytest.raises(SpecError, match=message):
        posterior_best(spec, observations)


def test_a_bad_observation_is_refused_for_two_objectives_too() -> None:
    spec = _unit_square(
        [
            {"name": "y", "objective": "minimize"},
            {"name": "z", "objective": "minimize"},
        ]
    )
    observations = [
        Observation(_diagonal(x), (MetricValue("y", x), MetricValue("z", 1 - x)))
        for x in (0.1, 0.5, 0.9)
    ]
    observations.append(Observation(_diagonal(0.3), (MetricValue("y", 0.3),)))

    message = r"observations\[3\]\.values: a value is required for metric 'z'"
    with pytest.raises(SpecError, match=message):
        posterior_best(spec, observations)


def test_a_pending_point_off_the_space_is_refused_by_name() -> None:
    spec, observations = _square_with_one_bad_observation(
        Observation(_diagonal(0.5), (MetricValue("y", 0.5),))
    )

    with pytest.raises(SpecError, match=r"pending\[0\]\.assignments\.x2"):
        BayesianOptimizer().suggest(
            spec, observations, [{"x1": 0.5, "x2": -1.0}], 1, seed=0
        )


def test_when_every_run_failed_points_keep_coming() -> None:
    spec = _unit_square([{"name": "y", "objective": "minimize"}])
    space = spec.space()

    observations = _run(spec, lambda point: None, 8, seed=0)

    assert len({space.key(o.assignments) for o in observations}) == 8


def test_two_objectives_move_towards_their_pareto_front() -> None:
    # f1 = x1 and f2 = 1 - x1 + x2: every point with x2 = 0 is Pareto
    # optimal and no other is.  Uniform sampling would put 10% of points at
    # x2 < 0.1; the hypervolume improvement should put most there, spread
    # along the front.  Measured on seeds 0-2: all 20 points after the
    # initial design at x2 < 0.1, spanning 0.94-1.0 of x1 (with the random
    # scalarizations used before, 17-18 of 20).
    spec = _unit_square(
        [
            {"name": "f1", "objective": "minimize"},
            {"name": "f2", "objective": "minimize"},
        ]
    )

    def evaluate(point: Assignments) -> tuple[MetricValue, ...]:
        x1, x2 = float(point["x1"]), float(point["x2"])
        return (MetricValue("f1", x1), MetricValue("f2", 1.0 - x1 + x2))

    for seed in range(3):
        observations = _run(spec, evaluate, 25, seed)

        after_initial: Sequence[Observation] = observations[5:]
        near_front = [o for o in after_initial if float(o.assignments["x2"]) < 0.1]
        assert len(near_front) >= 0.8 * len(after_initial), seed
        spread = [float(o.assignments["x1"]) for o in near_front]
        assert max(spread) - min(spread) > 0.7, seed  # along the front


def test_a_heavy_tail_of_exact_values_is_warped_towards_a_normal_spread() -> None:
    # Hartmann-6 at random points: most values near 0, a few deep ones
    # (skewness -2.4 in this sample).  The warp must keep the order, so
    # that the best point stays the best, and take most of the skew out.
    rng = np.random.default_rng(0)
    values = np.array([functions.hartmann6(point) for point in rng.random((200, 6))])
    warped = _warp_exact(values)

    assert np.array_equal(np.argsort(values), np.argsort(warped))
    assert skew(values) < -2.0
    assert abs(skew(warped)) < 0.5


def test_normally_spread_values_are_left_nearly_as_they_are() -> None:
    values = np.random.default_rng(1).normal(3.0, 2.0, size=200)
    warped = _warp_exact(values)

    assert np.corrcoef(values, warped)[0, 1] > 0.999


@pytest.mark.parametrize("shape", ["cubed", "exponential", "negative squares"])
def test_the_warp_power_is_scipys_maximum_likelihood_power(shape: str) -> None:
    normal = np.random.default_rng(2).normal(size=150)
    values = {
        "cubed": normal**3,
        "exponential": np.exp(normal),
        "negative squares": -(normal**2),
    }[shape]
    standard = (values - values.mean()) / values.std()

    assert _yeo_johnson_power(standard) == pytest.approx(
        yeojohnson_normmax(standard), abs=1e-5
    )


def test_the_spread_of_seeds_becomes_the_noise_of_their_mean() -> None:
    from optiloop.optimizers.bayesian import _stddev

    metric = parse_spec(
        {
            "parameters": [
                {"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}
            ],
            "metrics": [{"name": "y"}],
        }
    ).metrics[0]
    values = (MetricValue("y", 1.0, 0.6),)
    # Four seeds with spread 0.6: their mean is known to 0.6 / sqrt(4).
    over_seeds = Observation({"x": 0.5}, values, metadata={"seeds": [0, 1, 2, 3]})
    reported_by_hand = Observation({"x": 0.5}, values)

    assert _stddev(over_seeds, metric) == pytest.approx(0.3)
    assert _stddev(reported_by_hand, metric) == pytest.approx(0.6)


def test_the_spread_of_few_seeds_is_moderated_towards_the_pooled_spread() -> None:
    from optiloop.optimizers.bayesian import POOLED_NOISE_WEIGHT, _noise_of_values

    metric = parse_spec(
        {
            "parameters": [
                {"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}
            ],
            "metrics": [{"name": "y"}],
        }
    ).metrics[0]
    seeds = {"seeds": [0, 1, 2]}
    observations = [
        # Three seeds that happened to agree, two with a spread of 1, and
        # a point whose user reported its own noise without seeds.
        Observation({"x": 0.1}, (MetricValue("y", 1.0, 0.0),), metadata=seeds),
        Observation({"x": 0.5}, (MetricValue("y", 1.0, 1.0),), metadata=seeds),
        Observation({"x": 0.9}, (MetricValue("y", 1.0, 1.0),), metadata=seeds),
        Observation({"x": 0.7}, (MetricValue("y", 1.0, 0.25),)),
    ]

    noise = _noise_of_values(observations, metric, [0, 1, 2, 3])

    # By hand: each seeded row has 2 degrees of freedom, so the pooled
    # per-seed variance is (0 + 1 + 1) / 3; a row's moderated variance is
    # (2 v + w pooled) / (2 + w), and its mean's is that over 3 seeds.
    assert POOLED_NOISE_WEIGHT == 4
    pooled = 2.0 / 3.0
    agreeing = (2 * 0.0 + 4 * pooled) / 6
    spread = (2 * 1.0 + 4 * pooled) / 6
    assert noise[0] == pytest.approx(math.sqrt(agreeing / 3))
    assert noise[1] == pytest.approx(math.sqrt(spread / 3))
    assert noise[2] == noise[1]
    assert noise[3] == pytest.approx(0.25)


def test_an_exact_optimum_is_refined_to_many_digits() -> None:
    # f = 3 (u - 0.3)^2 + 0.01 (k - 4)^2 on a log-scale rate and an int:
    # minimum 0 at u = 0.3, k = 4.  Exact values are interpolated with a
    # jitter of 1e-10: measured, 60 evaluations end with regrets of 7e-15
    # to 3.4e-12 over these 5 seeds, against 9e-12 to 7e-8 (2 of 5 below
    # 1e-10) with the noisy problems' floor of 1e-6 for every value.
    # The bound asks 1e-10 in 4 of 5 seeds.
    spec = parse_spec(
        {
            "parameters": [
                {
                    "name": "lr",
                    "type": "double",
                    "bounds": {"min": 1e-4, "max": 1e-1},
                    "transformation": "log",
                },
                {"name": "k", "type": "int", "bounds": {"min": 1, "max": 8}},
            ],
            "metrics": [{"name": "y", "objective": "minimize"}],
        }
    )

    def value(point: Assignments) -> float:
        u = (math.log10(float(point["lr"])) + 4.0) / 3.0
        return 3.0 * (u - 0.3) ** 2 + 0.01 * (int(point["k"]) - 4) ** 2

    def evaluate(point: Assignments) -> tuple[MetricValue, ...]:
        return (MetricValue("y", value(point)),)

    best = [
        min(value(o.assignments) for o in _run(spec, evaluate, 60, seed))
        for seed in range(5)
    ]
    assert sum(regret < 1e-10 for regret in best) >= 4, best


def _categorical_108_spec() -> ExperimentSpec:
    # 3 x 4 x 9 = 108 points, no order among the values.
    return parse_spec(
        {
            "parameters": [
                {
                    "name": name,
                    "type": "categorical",
                    "categorical_values": [f"{name}{i}" for i in range(size)],
                }
                for name, size in (("a", 3), ("b", 4), ("c", 9))
            ],
            "metrics": [{"name": "y", "objective": "minimize"}],
        }
    )


def _categorical_loss(point: Assignments) -> float:
    # Any deterministic value per point will do; this one has a best
    # category per parameter and an interaction between a and c.
    a, b, c = (int(str(point[n])[1:]) for n in ("a", "b", "c"))
    return (a - 1) ** 2 + 0.5 * (b - 2) ** 2 + 0.1 * (c - 3 * a) ** 2


@pytest.mark.parametrize("n_observed", [0, 20])
def test_a_batch_of_16_on_a_108_point_categorical_space_has_no_duplicates(
    n_observed: int,
) -> None:
    # With 20 observations and 4 pending, 84 points are unseen: the batch
    # must be 16 of them, all different.  Without observations the batch
    # comes from the initial design, which must not repeat itself either.
    spec = _categorical_108_spec()
    space = spec.space()
    assert space.size == 108
    points = SobolOptimizer().suggest(spec, [], [], n_observed + 4, seed=1)
    observations = [
        Observation(assignments=p, values=(MetricValue("y", _categorical_loss(p)),))
        for p in points[:n_observed]
    ]
    pending = points[n_observed:]
    used = {space.key(p) for p in points}

    batch = BayesianOptimizer().suggest(spec, observations, pending, 16, seed=2)

    keys = [space.key(p) for p in batch]
    assert len(batch) == 16
    assert len(set(keys)) == 16
    if n_observed:
        assert not set(keys) & used


def test_the_best_is_never_a_point_that_violates_a_threshold() -> None:
    # The lowest objective value sits at a point whose constraint misses
    # its threshold; the best reported must be the best point that meets
    # it, both with exact values and with noisy ones (where the models'
    # posterior means decide).
    spec = _unit_square(
        [
            {"name": "y", "objective": "minimize"},
            {
                "name": "c",
                "objective": "minimize",
                "strategy": "constraint",
                "threshold": 0.0,
            },
        ]
    )
    xs = np.linspace(0.0, 1.0, 11)
    for noise in (None, 0.05):
        observations = [
            Observation(
                assignments=_diagonal(float(x)),
                values=(
                    MetricValue("y", float(x), noise),
                    MetricValue("c", 0.35 - float(x), noise),
                ),
            )
            for x in xs
        ]
        # y = x is smallest at x = 0, but c <= 0 needs x >= 0.35.

        [best] = posterior_best(spec, observations)

        assert best.assignments == _diagonal(0.4)


def _noisy_bowl_with_a_lucky_mean() -> tuple[ExperimentSpec, list[Observation]]:
    """y = (x - 0.7)^2 measured with noise of sd 0.1 at 21 points; the mean
    at x = 0.1 (the third) came out 0.4 too low, below every other."""
    spec = parse_spec(
        {
            "parameters": [
                {"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}
            ],
            "metrics": [{"name": "y", "objective": "minimize"}],
        }
    )
    rng = np.random.default_rng(0)
    xs = np.linspace(0.0, 1.0, 21)
    measured = (xs - 0.7) ** 2 + 0.02 * rng.standard_normal(len(xs))
    measured[2] = (0.1 - 0.7) ** 2 - 0.4
    assert float(np.argmin(measured)) == 2
    observations = [
        Observation(assignments={"x": float(x)}, values=(MetricValue("y", v, 0.1),))
        for x, v in zip(xs, measured)
    ]
    return spec, observations


def test_the_posterior_best_is_not_one_lucky_noisy_mean() -> None:
    # Neighbours measured near 0.36 outvote the lucky mean: the posterior
    # mean there stays far above the values around x = 0.7, which the best
    # pick must come from.
    spec, observations = _noisy_bowl_with_a_lucky_mean()

    [best] = posterior_best(spec, observations)

    assert abs(float(best.assignments["x"]) - 0.7) <= 0.1


def test_the_posterior_ranking_puts_the_lucky_mean_behind_its_valley() -> None:
    # Ranked by posterior mean, the three best are the points nearest 0.7,
    # and the lucky x = 0.1 falls behind them; every observation is ranked
    # once.
    spec, observations = _noisy_bowl_with_a_lucky_mean()

    ranked = posterior_ranking(spec, observations)

    assert sorted(id(o) for o in ranked) == sorted(id(o) for o in observations)
    assert ranked[:1] == posterior_best(spec, observations)
    top = [float(o.assignments["x"]) for o in ranked[:3]]
    assert all(abs(x - 0.7) <= 0.1 for x in top)
    assert ranked.index(observations[2]) >= 3


def test_exact_measurements_rank_by_value_with_ties_kept_in_order() -> None:
    spec = _unit_square([{"name": "f", "objective": "maximize"}])
    values = [0.2, 0.9, 0.5, 0.9, 0.1]
    observations = [
        Observation(
            assignments={"x1": i / 10, "x2": 0.0}, values=(MetricValue("f", v),)
        )
        for i, v in enumerate(values)
    ]

    ranked = posterior_ranking(spec, observations)

    assert [observations.index(o) for o in ranked] == [1, 3, 2, 0, 4]


def test_the_posterior_front_of_two_objectives_is_non_dominated() -> None:
    # f1 = x, f2 = 1 - x on the diagonal: every point is on the front; a
    # point off the diagonal with f2 = 1.5 - x is dominated and must go.
    spec = _unit_square(
        [
            {"name": "f1", "objective": "minimize"},
            {"name": "f2", "objective": "minimize"},
        ]
    )
    observations = [
        Observation(
            assignments={"x1": x, "x2": x},
            values=(MetricValue("f1", x, 0.01), MetricValue("f2", 1.0 - x, 0.01)),
        )
        for x in (0.1, 0.3, 0.5, 0.7, 0.9)
    ]
    observations.append(
        Observation(
            assignments={"x1": 0.5, "x2": 0.0},
            values=(MetricValue("f1", 0.5, 0.01), MetricValue("f2", 1.0, 0.01)),
        )
    )

    front = posterior_best(spec, observations)

    assert [o.assignments["x1"] for o in front] == [0.1, 0.3, 0.5, 0.7, 0.9]


def _converge_spec() -> ExperimentSpec:
    return parse_spec(
        {
            "parameters": [
                {"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}
            ],
            "metrics": [{"name": "epochs", "objective": "minimize"}],
        }
    )


def test_a_censored_converge_epoch_counts_as_at_least_the_worst_real_one() -> None:
    # Three converged points (40, 44, 50 epochs) and two that never
    # converged, reported at 35 and 60.  The 35 is a lower bound, so it
    # enters as the worst real value, 50; the 60 is already worse and stays.
    spec = _converge_spec()
    reports = [(0.5, 40.0, True), (0.7, 44.0, True), (0.9, 50.0, True)]
    reports += [(0.1, 35.0, False), (0.2, 60.0, False)]
    observations = [
        Observation(
            assignments={"x": x},
            values=(MetricValue("epochs", epochs),),
            metadata={} if converged else {"converged": False},
        )
        for x, epochs, converged in reports
    ]

    values, _ = _objective_targets(
        spec, spec.metrics[0], observations, range(len(observations))
    )

    np.testing.assert_allclose(values, [40.0, 44.0, 50.0, 50.0, 60.0])


def test_short_schedules_that_never_converge_do_not_attract_the_search() -> None:
    # Epochs to converge grow with x (40 + 20 x), but below x = 0.3 the runs
    # never converge and are reported at the next evaluation, 30 epochs:
    # taken at face value the fastest region.  The search should settle
    # just above 0.3.  Measured on seeds 0-2: 1 of the 15 points after the
    # initial design fell below 0.3 in each run; without the censoring rule
    # (values taken as reported) 6, 5 and 5 did.
    spec = _converge_spec()

    for seed in range(3):
        observations: list[Observation] = []
        for _ in range(20):
            [point] = BayesianOptimizer().suggest(spec, observations, [], 1, seed)
            x = float(point["x"])
            converged = x >= 0.3
            observations.append(
                Observation(
                    assignments=point,
                    values=(
                        MetricValue("epochs", 40.0 + 20.0 * x if converged else 30.0),
                    ),
                    metadata={} if converged else {"converged": False},
                )
            )

        after_initial = observations[5:]
        missed = sum(float(o.assignments["x"]) < 0.3 for o in after_initial)
        assert missed <= 2, (seed, missed)
        [best] = posterior_best(spec, observations)
        assert 0.3 <= float(best.assignments["x"]) < 0.4, seed


def test_a_lucky_success_among_misses_is_not_reported_best() -> None:
    # Around x = 0.15 four runs never converged and one, at 0.15, did in 30
    # epochs: the fastest measured, but its neighbours say such a run
    # usually misses.  From x = 0.5 on every run converges, in 40 + 20 x
    # epochs.  The best reported must be the reliable x = 0.5.
    spec = _converge_spec()
    observations = [
        Observation(
            assignments={"x": x},
            values=(MetricValue("epochs", 32.0, 1.0),),
            metadata={"converged": False},
        )
        for x in (0.05, 0.1, 0.2, 0.25)
    ]
    observations.append(
        Observation(assignments={"x": 0.15}, values=(MetricValue("epochs", 30.0, 1.0),))
    )
    observations += [
        Observation(
            assignments={"x": x}, values=(MetricValue("epochs", 40.0 + 20.0 * x, 1.0),)
        )
        for x in (0.5, 0.6, 0.7, 0.8, 0.9)
    ]

    [best] = posterior_best(spec, observations)

    assert best.assignments == {"x": 0.5}
