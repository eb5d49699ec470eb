"""The benchmark functions reproduce their published optima."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optiloop.workloads import functions


@pytest.mark.parametrize("minimizer", functions.BRANIN_MINIMIZERS)
def test_branin_minimum_at_each_of_its_three_minimizers(
    minimizer: tuple[float, float],
) -> None:
    # Published minimum 0.397887 (Dixon and Szegő 1978), at pi-related
    # minimizers printed to 5 or 6 digits; the gradient vanishes there, so
    # the rounding moves the value far less than 1e-5.
    assert float(functions.branin(minimizer)) == pytest.approx(0.397887, abs=1e-5)


def test_hartmann_minima() -> None:
    # Published minima, at minimizers printed to 6 digits.
    assert float(functions.hartmann3(functions.HARTMANN3_MINIMIZER)) == pytest.approx(
        -3.86278, abs=1e-5
    )
    assert float(functions.hartmann6(functions.HARTMANN6_MINIMIZER)) == pytest.approx(
        -3.32237, abs=1e-5
    )


@pytest.mark.parametrize(
    ("function", "n_dims", "minimum"),
    [
        (functions.branin, 2, functions.BRANIN_MINIMUM),
        (functions.hartmann3, 3, functions.HARTMANN3_MINIMUM),
        (functions.hartmann6, 6, functions.HARTMANN6_MINIMUM),
    ],
)
def test_no_random_point_beats_the_published_minimum(
    function: functions.Benchmark, n_dims: int, minimum: float
) -> None:
    # A published minimum is a global minimum: 100,000 points drawn over the
    # domain all lie above it (less the 1e-5 its rounding may cost).
    bounds = {
        2: functions.BRANIN_BOUNDS,
        3: functions.HARTMANN3_BOUNDS,
        6: functions.HARTMANN6_BOUNDS,
    }[n_dims]
    low, high = np.array(bounds).T
    points = low + (high - low) * np.random.default_rng(0).random((100_000, n_dims))

    values = function(points)

    assert values.shape == (100_000,)
    assert values.min() >= minimum - 1e-5


def test_branin_at_a_hand_computed_point() -> None:
    # At (0, 0): (0 - 0 + 0 - 6)^2 + 10 (1 - 1/(8 pi)) cos 0 + 10
    expected = 36.0 + 10.0 * (1.0 - 1.0 / (8.0 * math.pi)) + 10.0
    assert float(functions.branin([0.0, 0.0])) == pytest.approx(expected, rel=1e-12)


def test_gramacy_optimum_is_on_the_first_constraint() -> None:
    objective, c1, c2 = functions.gramacy(functions.GRAMACY_MINIMIZER)

    assert float(objective) == pytest.approx(0.5998, abs=1e-5)
    # The published minimizer has 4 digits; c1's gradient there is of order
    # 10, so rounding leaves c1 within about 1e-3 of the boundary c1 = 0.
    assert abs(float(c1)) < 1e-3
    assert float(c2) < 0.0


def test_gramacy_optimum_matches_a_dense_grid_search() -> None:
    # Independent check: the best feasible point of a 2001 x 2001 grid.
    # The grid step is 5e-4, so its best point is within 2 x 5e-4 of the
    # true optimum in x1 + x2.
    axis = np.linspace(0.0, 1.0, 2001)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1)

    objective, c1, c2 = functions.gramacy(grid)
    feasible = (c1 <= 0.0) & (c2 <= 0.0)

    best = float(np.min(np.where(feasible, objective, np.inf)))
    assert best == pytest.approx(functions.GRAMACY_MINIMUM, abs=1e-3)


def test_a_point_of_the_wrong_dimension_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        functions.hartmann3([0.5, 0.5])
