"""Gaussian-process regression with a Matern 5/2 ARD kernel, on scipy.

The kernel is ``amplitude * m(r)`` with ``m(r) = (1 + s + s^2 / 3) e^-s``,
``s = sqrt(5) r`` and ``r`` the distance scaled by one length scale per
feature (Rasmussen and Williams 2006, eq. 4.17).  The noise of every
training value is known and sits on the diagonal.  Hyperparameters are the
maximum a posteriori estimate under weak log-normal priors, found by
L-BFGS-B with the analytic gradient of the log marginal likelihood
(Rasmussen and Williams 2006, eq. 5.9).

Written on scipy rather than with scikit-learn's regressor, whose
likelihood gradient builds an ``(n, n, n_features)`` array at every step
and took 93% of a suggestion's time.

Shapes: ``features`` ``(n_train, n_features)``; ``targets`` and ``noise``
``(n_train,)``; points to predict ``(n_points, n_features)``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_solve, cholesky, solve_triangular
from scipy.linalg.lapack import dpotri, dtrtri
from scipy.optimize import minimize

logger = logging.getLogger(__name__)

SQRT5 = math.sqrt(5.0)

# Bounds of the hyperparameters.  Inputs live in the unit cube and targets
# are standardized, so both are of order one.
LENGTH_SCALE_BOUNDS = (1e-2, 1e2)
AMPLITUDE_BOUNDS = (1e-2, 1e2)

# Log-normal priors (mean and spread of the log).  Targets are
# standardized, so an amplitude near 1 is the guess; a length scale near
# half the cube, within a factor e or so.  The length-scale prior has a
# cost on Hartmann-6: over 8 runs, 3 reached the global basin with it and
# 5 without, but without it batches crowded together and the search went
# back into failing regions more often.
AMPLITUDE_PRIOR = (0.0, 1.5)
LENGTH_SCALE_PRIOR = (math.log(0.5), 1.0)

# Past this many points, the hyperparameters are fitted on a random subset
# of this size (the likelihood costs n^3 per step); the final model then
# uses every point with those hyperparameters.
MAX_FIT_POINTS = 250

# Likelihood steps per start.
MAX_FIT_ITERATIONS = 100

# Predictions need the kernel factor's inverse applied to thousands of
# points: multiplying by the inverse is twice as fast as a triangular solve,
# but forming it costs n^3 / 3, which past about 500 points outweighs what
# it saves; larger models solve instead.
INVERSE_FACTOR_MAX_POINTS = 500

# Variance added to the diagonal when a kernel matrix is not numerically
# positive definite (points nearly coinciding), in the targets' units.
JITTERS = (0.0, 1e-8, 1e-6, 1e-4, 1e-2)


@dataclass
class GaussianProcess:
    """A fitted model; see the module docstring for the shapes."""

    features: np.ndarray
    targets: np.ndarray
    noise: np.ndarray
    amplitude: float
    length_scales: np.ndarray
    factor: np.ndarray
    # The factor's inverse, for models of at most INVERSE_FACTOR_MAX_POINTS
    # points, else None (see there).
    inverse_factor: np.ndarray | None
    weights: np.ndarray

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        targets: np.ndarray,
        noise: np.ndarray,
        n_restarts: int,
        rng: np.random.Generator,
        shortest_length_scale: float = LENGTH_SCALE_BOUNDS[0],
        length_scale_prior: tuple[float, float] | None = LENGTH_SCALE_PRIOR,
    ) -> GaussianProcess:
        """Fit hyperparameters, then condition on every point.

        ``n_restarts`` extra starts are drawn at random around the first.
        ``length_scale_prior`` is the mean and spread of log length scales,
        or None for none.
        """
        rows = np.arange(len(targets))
        if len(rows) > MAX_FIT_POINTS:
            rows = np.sort(rng.choice(rows, MAX_FIT_POINTS, replace=False))
        n_features = features.shape[1]
        low = np.log([AMPLITUDE_BOUNDS[0]] + [shortest_length_scale] * n_features)
        high = np.log([AMPLITUDE_BOUNDS[1]] + [LENGTH_SCALE_BOUNDS[1]] * n_features)

        first_length = LENGTH_SCALE_PRIOR[0]
        starts = [np.concatenate([[0.0], np.full(n_features, first_length)])]
        for _ in range(n_restarts):
            starts.append(rng.normal(0.0, 1.0, 1 + n_features) + starts[0])

        objective = _Evidence(
            features[rows], targets[rows], noise[rows], length_scale_prior
        )
        best_theta, best_value = np.clip(starts[0], low, high), math.inf
        for start in starts:
            result = minimize(
                objective,
                np.clip(start, low, high),
                jac=True,
                method="L-BFGS-B",
                bounds=list(zip(low, high)),
                options={"maxiter": MAX_FIT_ITERATIONS},
            )
            if np.isfinite(result.fun) and result.fun < best_value:
                best_theta, best_value = result.x, float(result.fun)

        amplitude = float(np.exp(best_theta[0]))
        length_scales = np.exp(best_theta[1:])
        logger.debug("gp: amplitude %.3g, length scales %s", amplitude, length_scales)
        return cls.condition(features, targets, noise, amplitude, length_scales)

    @classmethod
    def condition(
        cls,
        features: np.ndarray,
        targets: np.ndarray,
        noise: np.ndarray,
        amplitude: float,
        length_scales: np.ndarray,
    ) -> GaussianProcess:
        """The posterior given the points, with fixed hyperparameters."""
        gram = amplitude * matern52(features, features, length_scales)
        factor = _cholesky(gram, noise)
        weights = cho_solve((factor, True), targets, check_finite=False)
        inverse_factor = None
        if len(targets) <= INVERSE_FACTOR_MAX_POINTS:
            inverse_factor, info = dtrtri(factor, lower=1)
            if info != 0:
                raise np.linalg.LinAlgError(f"trtri failed with info {info}")
        return cls(
            features,
            targets,
            noise,
            amplitude,
            length_scales,
            factor,
            inverse_factor,
            weights,
        )

    def predict(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation, each ``(n_points,)``
        (Rasmussen and Williams 2006, algorithm 2.1)."""
        cross = self.amplitude * matern52(points, self.features, self.length_scales)
        mean = cross @ self.weights
        if self.inverse_factor is not None:
            solved = self.inverse_factor @ cross.T
        else:
            solved = solve_triangular(
                self.factor, cross.T, lower=True, check_finite=False
            )
        variance = self.amplitude - np.einsum("ij,ij->j", solved, solved)
        # Round-off can make a variance slightly negative; it is floored.
        return mean, np.sqrt(np.maximum(variance, 1e-18))

    def leave_one_out_mean(self) -> np.ndarray:
        """The posterior mean at each training point given all the others,
        ``(n_train,)``: ``y_i - [K^-1 y]_i / [K^-1]_ii`` (Rasmussen and
        Williams 2006, eq. 5.12)."""
        inverse_factor = self.inverse_factor
        if inverse_factor is None:
            inverse_factor = solve_triangular(
                self.factor, np.eye(len(self.targets)), lower=True, check_finite=False
            )
        inverse_diagonal = np.einsum("ij,ij->j", inverse_factor, inverse_factor)
        return self.targets - self.weights / inverse_diagonal

    def believing(self, points: np.ndarray, noise: float) -> GaussianProcess:
        """This model with ``points`` added at their posterior mean (the
        kriging believer), hyperparameters kept."""
        if len(points) == 0:
            return self
        mean, _ = self.predict(points)
        return self.condition(
            np.vstack([self.features, points]),
            np.concatenate([self.targets, mean]),
            np.concatenate([self.noise, np.full(len(points), noise)]),
            self.amplitude,
            self.length_scales,
        )


def matern52(a: np.ndarray, b: np.ndarray, length_scales: np.ndarray) -> np.ndarray:
    """The unit-amplitude kernel between rows of ``a`` and ``b``,
    ``(n_a, n_b)``."""
    return _matern_of_distance(_scaled_distance(a, b, length_scales))


def _scaled_distance(
    a: np.ndarray, b: np.ndarray, length_scales: np.ndarray
) -> np.ndarray:
    # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b avoids an (n_a, n_b, n_features)
    # array; cancellation can leave tiny negatives, which are floored.
    a = a / length_scales
    b = b / length_scales
    squared = (
        np.einsum("ij,ij->i", a, a)[:, np.newaxis]
        + np.einsum("ij,ij->i", b, b)[np.newaxis, :]
        - 2.0 * (a @ b.T)
    )
    return np.sqrt(np.maximum(squared, 0.0))


def _matern_of_distance(distance: np.ndarray) -> np.ndarray:
    s = SQRT5 * distance
    return (1.0 + s + s**2 / 3.0) * np.exp(-s)


def _cholesky(gram: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of ``gram + diag(noise)``, with the smallest
    jitter that makes it positive definite."""
    for jitter in JITTERS:
        matrix = gram + np.diag(noise + jitter)
        try:
            return cholesky(matrix, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            logger.debug("gp: kernel matrix not positive definite, adding jitter")
    raise np.linalg.LinAlgError("kernel matrix is singular even with jitter")


def _inverse_from_factor(factor: np.ndarray) -> np.ndarray:
    """``K^-1`` from the lower Cholesky factor of ``K``: LAPACK's potri
    takes about half the time of solving against the identity."""
    lower, info = dpotri(factor, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"potri failed with info {info}")
    # potri fills the lower triangle only; the upper one still holds the
    # factor's zeros.
    lower = np.tril(lower)
    return lower + lower.T - np.diag(np.diag(lower))


class _Evidence:
    """Negative log posterior of the hyperparameters and its gradient.

    ``theta`` is ``[log amplitude, log length scale per feature]``.  With
    ``K = a M + diag(noise)`` and ``alpha = K^-1 y``, the gradient of
    ``-log p(y)`` along ``theta_j`` is ``-tr((alpha alpha^T - K^-1)
    dK/dtheta_j) / 2`` (Rasmussen and Williams 2006, eq. 5.9), with
    ``dK/dlog a = a M`` and ``dK/dlog l_k = a (5/3) (1 + s) e^-s d_k^2``,
    ``d_k`` the scaled difference along feature ``k``.
    """

    def __init__(
        self,
        features: np.ndarray,
        targets: np.ndarray,
        noise: np.ndarray,
        length_scale_prior: tuple[float, float] | None,
    ) -> None:
        self.features = features
        self.targets = targets
        self.noise = noise
        self.length_scale_prior = length_scale_prior
        # Squared differences per feature, (n_features, n, n), reused by
        # every step; contiguous, so that the sums over features below run
        # at memory speed (a strided view made them half of a step's time).
        differences = features[:, np.newaxis, :] - features[np.newaxis, :, :]
        self.squared_differences = np.ascontiguousarray(
            np.moveaxis(differences**2, 2, 0)
        )

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        amplitude = math.exp(theta[0])
        inverse_squared_lengths = np.exp(-2.0 * theta[1:])
        distance = np.sqrt(
            np.einsum("k,kij->ij", inverse_squared_lengths, self.squared_differences)
        )
        s = SQRT5 * distance
        decay = np.exp(-s)
        unit_gram = (1.0 + s + s**2 / 3.0) * decay

        try:
            factor = _cholesky(amplitude * unit_gram, self.noise)
        except np.linalg.LinAlgError:
            # Singular even with jitter: a value so poor that the line
            # search backs off.
            return 1e10, np.zeros_like(theta)
        alpha = cho_solve((factor, True), self.targets, check_finite=False)
        inverse = _inverse_from_factor(factor)
        n = len(self.targets)
        value = (
            0.5 * float(self.targets @ alpha)
            + float(np.log(np.diag(factor)).sum())
            + 0.5 * n * math.log(2.0 * math.pi)
        )

        # W = K^-1 - alpha alpha^T; the gradient is tr(W dK) / 2.
        w = inverse - np.outer(alpha, alpha)
        gradient = np.empty_like(theta)
        gradient[0] = 0.5 * float(np.sum(w * unit_gram)) * amplitude
        slope = amplitude * (5.0 / 3.0) * (1.0 + s) * decay
        weighted = w * slope
        n_features = len(inverse_squared_lengths)
        per_feature = self.squared_differences.reshape(n_features, -1)
        gradient[1:] = 0.5 * (per_feature @ weighted.ravel()) * inverse_squared_lengths

        # Log-normal priors, constants dropped.
        if self.length_scale_prior is not None:
            mean, spread = self.length_scale_prior
            value += float(np.sum((theta[1:] - mean) ** 2)) / (2.0 * spread**2)
            gradient[1:] += (theta[1:] - mean) / spread**2
        mean, spread = AMPLITUDE_PRIOR
        value += (theta[0] - mean) ** 2 / (2.0 * spread**2)
        gradient[0] += (theta[0] - mean) / spread**2
        return value, gradient
