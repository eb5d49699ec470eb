"""The Gaussian-process regression under the Bayesian optimizer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from optiloop.optimizers import gaussian_process
from optiloop.optimizers.gaussian_process import (
    MAX_FIT_POINTS,
    GaussianProcess,
    _Evidence,
    matern52,
)


def _data(n: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    features = rng.random((n, 2))
    targets = np.sin(4.0 * features[:, 0]) + features[:, 1]
    targets = (targets - targets.mean()) / targets.std()
    return features, targets, np.full(n, 1e-4)


def test_matern52_matches_its_formula() -> None:
    # Along one axis at distance d with length scale l: s = sqrt(5) d / l and
    # k = (1 + s + s^2 / 3) e^-s; 1 at distance 0.  The second feature's
    # length scale of 2 halves its contribution.
    a = np.array([[0.0, 0.0]])
    b = np.array([[0.0, 0.0], [0.3, 0.0], [0.0, 0.6]])

    kernel = matern52(a, b, np.array([0.5, 1.0]))[0]

    s = math.sqrt(5.0) * 0.6
    expected = (1.0 + s + s**2 / 3.0) * math.exp(-s)
    np.testing.assert_allclose(kernel, [1.0, expected, expected], rtol=1e-12)


def test_the_evidence_gradient_matches_finite_differences() -> None:
    features, targets, noise = _data()
    # With a length-scale prior, so that its gradient is checked too.
    evidence = _Evidence(features, targets, noise, (math.log(0.5), 1.0))
    theta = np.array([0.3, -1.0, 0.4])

    _, gradient = evidence(theta)
    numeric = approx_fprime(theta, lambda t: evidence(t)[0], 1e-6)

    np.testing.assert_allclose(gradient, numeric, rtol=1e-4, atol=1e-4)


def test_the_posterior_interpolates_nearly_exact_values() -> None:
    # With noise variance 1e-4, the mean at a training point is within a
    # few noise standard deviations of its value, and so is the spread.
    features, targets, noise = _data()
    model = GaussianProcess.fit(features, targets, noise, 1, np.random.default_rng(1))

    mean, std = model.predict(features)

    np.testing.assert_allclose(mean, targets, atol=0.05)
    assert np.all(std < 0.05)


def test_predictions_by_the_inverse_factor_match_triangular_solves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Small models predict by multiplying with the factor's inverse, large
    # ones by solving against the factor: both give one posterior.
    features, targets, noise = _data(40)
    points = np.random.default_rng(5).random((50, 2))
    by_inverse = GaussianProcess.condition(
        features, targets, noise, 1.3, np.array([0.4, 0.7])
    )
    monkeypatch.setattr(gaussian_process, "INVERSE_FACTOR_MAX_POINTS", 0)
    by_solves = GaussianProcess.condition(
        features, targets, noise, 1.3, np.array([0.4, 0.7])
    )

    assert by_inverse.inverse_factor is not None
    assert by_solves.inverse_factor is None
    for expected, actual in zip(by_solves.predict(points), by_inverse.predict(points)):
        np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        by_inverse.leave_one_out_mean(), by_solves.leave_one_out_mean(), rtol=1e-9
    )


def test_leave_one_out_mean_is_the_fit_without_that_point() -> None:
    features, targets, noise = _data()
    model = GaussianProcess.fit(features, targets, noise, 0, np.random.default_rng(2))

    left_out = model.leave_one_out_mean()

    for i in (0, 7, 14):
        others = np.arange(len(targets)) != i
        without = GaussianProcess.condition(
            features[others],
            targets[others],
            noise[others],
            model.amplitude,
            model.length_scales,
        )
        mean, _ = without.predict(features[i : i + 1])
        assert left_out[i] == pytest.approx(float(mean[0]), rel=1e-6, abs=1e-9)


def test_hyperparameters_come_from_a_subset_past_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 400 points, more than MAX_FIT_POINTS: the likelihood sees a subset of
    # that size, yet the model conditions on every point, so the posterior
    # passes near each of them.
    likelihood_sizes: list[int] = []

    class RecordingEvidence(_Evidence):
        def __init__(self, features: np.ndarray, *rest: object) -> None:
            likelihood_sizes.append(len(features))
            super().__init__(features, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(gaussian_process, "_Evidence", RecordingEvidence)
    rng = np.random.default_rng(3)
    features = rng.random((400, 2))
    targets = np.sin(3.0 * features[:, 0])
    targets = (targets - targets.mean()) / targets.std()

    model = GaussianProcess.fit(features, targets, np.full(400, 1e-4), 0, rng)

    assert likelihood_sizes == [MAX_FIT_POINTS]
    assert len(model.targets) == 400
    mean, _ = model.predict(features)
    np.testing.assert_allclose(mean, targets, atol=0.05)
