"""Benchmark functions with published optima, for testing optimizers.

Each function takes points of shape ``(..., n_dims)`` (one point or a batch)
and returns values of shape ``(...)``; call ``float()`` on the result for one
point.  Points are given in the function's own domain, listed in its
docstring and in the ``*_BOUNDS`` constants.

The formulas are written from the definitions in the papers cited beside
each function; the constants of the Hartmann functions are the published
tables.  This module imports nothing from optiloop: a workload is an
ordinary program.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

# A benchmark maps points (..., n_dims) to values (...).
Benchmark = Callable[[npt.ArrayLike], np.ndarray]

# Per-dimension (low, high) bounds of each function's domain.
BRANIN_BOUNDS = ((-5.0, 10.0), (0.0, 15.0))
HARTMANN3_BOUNDS = ((0.0, 1.0),) * 3
HARTMANN6_BOUNDS = ((0.0, 1.0),) * 6
GRAMACY_BOUNDS = ((0.0, 1.0), (0.0, 1.0))

# Published minima and minimizers.
BRANIN_MINIMUM = 0.397887
BRANIN_MINIMIZERS = ((-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475))
HARTMANN3_MINIMUM = -3.86278
HARTMANN3_MINIMIZER = (0.114614, 0.555649, 0.852547)
HARTMANN6_MINIMUM = -3.32237
HARTMANN6_MINIMIZER = (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573)
GRAMACY_MINIMUM = 0.5998
GRAMACY_MINIMIZER = (0.1954, 0.4044)


def branin(x: npt.ArrayLike) -> np.ndarray:
    """The Branin-Hoo function on x1 in [-5, 10], x2 in [0, 15].

    Source: Dixon and Szegő, "The global optimization problem: an
    introduction", in Towards Global Optimisation 2 (1978), with the usual
    constants a = 1, b = 5.1 / (4 pi^2), c = 5 / pi, r = 6, s = 10,
    t = 1 / (8 pi).  Three global minima of 0.397887, at (-pi, 12.275),
    (pi, 2.275) and (9.42478, 2.475).
    """
    points = _points(x, 2)
    x1, x2 = points[..., 0], points[..., 1]

    b = 5.1 / (4.0 * math.pi**2)
    c = 5.0 / math.pi
    t = 1.0 / (8.0 * math.pi)
    valley = x2 - b * x1**2 + c * x1 - 6.0
    return np.asarray(valley**2 + 10.0 * (1.0 - t) * np.cos(x1) + 10.0)


# Hartmann functions: f(x) = -sum_i alpha_i exp(-sum_j A_ij (x_j - P_ij)^2).
# Source: Hartman, "Some experiments in global optimization", Naval Research
# Logistics Quarterly 20 (1973); tables as printed in Dixon and Szegő (1978).
_HARTMANN_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])

_HARTMANN3_A = np.array(
    [
        [3.0, 10.0, 30.0],
        [0.1, 10.0, 35.0],
        [3.0, 10.0, 30.0],
        [0.1, 10.0, 35.0],
    ]
)
_HARTMANN3_P = 1e-4 * np.array(
    [
        [3689, 1170, 2673],
        [4699, 4387, 7470],
        [1091, 8732, 5547],
        [381, 5743, 8828],
    ]
)

_HARTMANN6_A = np.array(
    [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ]
)
_HARTMANN6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def hartmann3(x: npt.ArrayLike) -> np.ndarray:
    """The 3-dimensional Hartmann function on [0, 1]^3; minimum -3.86278."""
    return _hartmann(_points(x, 3), _HARTMANN3_A, _HARTMANN3_P)


def hartmann6(x: npt.ArrayLike) -> np.ndarray:
    """The 6-dimensional Hartmann function on [0, 1]^6; minimum -3.32237."""
    return _hartmann(_points(x, 6), _HARTMANN6_A, _HARTMANN6_P)


def gramacy(x: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The toy constrained problem of Gramacy et al. (2016), on [0, 1]^2.

    Returns ``(objective, c1, c2)``; a point is feasible when both
    constraints are <= 0:

        objective = x1 + x2
        c1 = 3/2 - x1 - 2 x2 - 1/2 sin(2 pi (x1^2 - 2 x2))
        c2 = x1^2 + x2^2 - 3/2

    Source: Gramacy, Gray, Le Digabel, Lee, Ranjan, Wells and Wild,
    "Modeling an augmented Lagrangian for blackbox constrained
    optimization", Technometrics 58 (2016).  The constrained minimum is
    0.5998, at (0.1954, 0.4044), where c1 is active.
    """
    points = _points(x, 2)
    x1, x2 = points[..., 0], points[..., 1]

    objective = x1 + x2
    c1 = 1.5 - x1 - 2.0 * x2 - 0.5 * np.sin(2.0 * math.pi * (x1**2 - 2.0 * x2))
    c2 = x1**2 + x2**2 - 1.5
    return np.asarray(objective), np.asarray(c1), np.asarray(c2)


def _hartmann(points: np.ndarray, a: np.ndarray, p: np.ndarray) -> np.ndarray:
    # (..., 4, n_dims) squared distances to the four centres, weighted by A.
    weighted = np.sum(a * (points[..., np.newaxis, :] - p) ** 2, axis=-1)
    return np.asarray(-np.sum(_HARTMANN_ALPHA * np.exp(-weighted), axis=-1))


def _points(x: npt.ArrayLike, n_dims: int) -> np.ndarray:
    points = np.asarray(x, dtype=float)
    if points.shape[-1:] != (n_dims,):
        raise ValueError(f"points must have shape (..., {n_dims}), got {points.shape}")
    return points
