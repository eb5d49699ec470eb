"""Bayesian optimization with Gaussian processes: the ``offline`` type.

One call of ``BayesianOptimizer.suggest`` goes through these steps.

1. Initial design.  Until ``n_initial`` points are observed or pending, the
   points come from the experiment's Sobol sequence (as ``SobolOptimizer``).
2. Models, all Gaussian-process regressions on the unit cube (Rasmussen and
   Williams 2006), with a Matern 5/2 kernel with one length scale per input
   feature (ARD) times a constant amplitude:
   - the objective: the optimized metric on its ``to_minimize`` scale,
     standardized; the reported ``value_stddev`` is the known noise of each
     observation.  Two optimized metrics are folded into one by a random
     scalarization per suggestion (see ``_objective_model``);
   - one model per metric with a threshold, giving the probability that the
     threshold holds (Schonlau, Welch and Jones 1998; Gardner et al. 2014);
   - when some runs failed, a model of the chance of success (see
     ``_success_model``).  Failed runs carry no values, so they enter no
     other model.
   Features: one column per numeric parameter (its cube coordinate, ints
   and grids at their bin centres) and one 0/1 column per category of each
   categorical parameter (one-hot), so that categories have no false order.
   Feature arrays have shape ``(n_points, n_features)``; cube points have
   shape ``(n_points, n_dims)``, one coordinate per parameter.
3. Acquisition, in log space so that tiny values still rank: log expected
   improvement (Jones, Schonlau and Welch 1998) over the best feasible
   point, plus the log chance that every threshold holds and the run
   succeeds.  Before anything is feasible, only the chance counts: the
   search looks for a feasible region first.
4. Batches: points pending evaluation (and those already chosen in this
   batch) join the models as if observed at their posterior mean, the
   "kriging believer" of Ginsbourger, Le Riche and Carraro (2010).  The
   models' uncertainty collapses there, so the next point goes elsewhere.
5. Maximizing the acquisition: score about three thousand Sobol, uniform
   and local candidates (perturbations of the best observed points), then
   polish the best few with L-BFGS-B on the continuous coordinates.  A
   finite space small enough is scored exhaustively instead.

No point identical (by ``Space.key``) to an observed, pending or already
suggested point is returned while the space has unseen points left.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular
from scipy.optimize import minimize
from scipy.special import erfcx, log_ndtr, ndtr
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Kernel, Matern
from threadpoolctl import threadpool_limits

from optiloop.experiment import (
    ExperimentSpec,
    MetricSpec,
    Observation,
    is_feasible,
)
from optiloop.optimizers.sobol import sobol_points
from optiloop.space import (
    Assignments,
    CategoricalParameter,
    DoubleParameter,
    Space,
    Value,
)

logger = logging.getLogger(__name__)

Key = tuple[Value, ...]

# Variance added to every observation in standardized units, so that the
# kernel matrix stays positive definite when points nearly coincide.
JITTER = 1e-6

# Bounds of the kernel hyperparameters.  Inputs live in the unit cube and
# targets are standardized, so both are in units of order one.
LENGTH_SCALE_BOUNDS = (1e-2, 1e2)

# Random restarts of the kernel fit guard against a poor local optimum of
# the likelihood while data are few; past this many observations the
# likelihood is sharp enough that one start suffices, and each restart costs
# a full fit (most of a suggestion's time at hundreds of observations).
MAX_OBSERVATIONS_FOR_RESTARTS = 64
AMPLITUDE_BOUNDS = (1e-2, 1e2)

# The success model (see ``_success_model``).  A failing region is a
# region, not a spike: with shorter length scales the estimate would climb
# back to 1/2 between neighbouring failures.  The label noise lets a point
# that both failed and succeeded (a flaky run) sit at its average.  The
# floor keeps the log finite, so candidates in a failing region still rank
# among themselves when nothing else is left.
SUCCESS_SHORTEST_LENGTH_SCALE = 0.1
SUCCESS_LABEL_NOISE = 0.01
SUCCESS_FLOOR = 1e-6

# A finite space with at most this many points is scored point by point;
# larger ones are only enumerated when random candidates find nothing new.
MAX_ENUMERATED_POINTS = 100_000

# Polishing: L-BFGS-B iterations per start, and the step of the finite
# differences that give it gradients, in cube units.
POLISH_ITERATIONS = 30
FINITE_DIFFERENCE_STEP = 1e-6

# Local candidates: around how many of the best observed points, with which
# step sizes (standard deviations in cube units), and how many per step.
N_ANCHORS = 5
LOCAL_STEPS = (0.01, 0.05, 0.2)
LOCAL_CANDIDATES = 64

# Augmentation weight of the Chebyshev scalarization (Knowles 2006).
CHEBYSHEV_AUGMENTATION = 0.05


class BayesianOptimizer:
    """Gaussian-process Bayesian optimization; see the module docstring.

    ``n_initial`` is the size of the Sobol initial design (by default
    ``max(5, 2 * n_dims)``).  ``n_candidates`` is the number of Sobol and of
    uniform candidates scored per suggestion, ``n_polish`` how many of the
    best are polished, and ``n_restarts`` how many extra random starts the
    kernel hyperparameter fit gets.
    """

    def __init__(
        self,
        n_initial: int | None = None,
        n_candidates: int = 1024,
        n_polish: int = 3,
        n_restarts: int = 2,
    ) -> None:
        self.n_initial = n_initial
        self.n_candidates = n_candidates
        self.n_polish = n_polish
        self.n_restarts = n_restarts

    def suggest(
        self,
        spec: ExperimentSpec,
        observations: Sequence[Observation],
        pending: Sequence[Assignments],
        count: int,
        seed: int,
    ) -> list[Assignments]:
        # The matrices here are small (tens to hundreds of rows): BLAS threads
        # spend more time waiting on each other than computing, 6-20x slower
        # on a busy 2-core machine, so the whole suggestion runs on one.
        with threadpool_limits(limits=1):
            return self._suggest(spec, observations, pending, count, seed)

    def _suggest(
        self,
        spec: ExperimentSpec,
        observations: Sequence[Observation],
        pending: Sequence[Assignments],
        count: int,
        seed: int,
    ) -> list[Assignments]:
        space = spec.space()
        if count <= 0:
            return []

        seen = {space.key(o.assignments) for o in observations}
        seen.update(space.key(a) for a in pending)
        n_used = len(observations) + len(pending)
        n_initial = max(5, 2 * len(space)) if self.n_initial is None else self.n_initial
        n_with_values = sum(_has_values(spec, o) for o in observations)
        if n_used < n_initial or n_with_values < 2:
            logger.debug("bayesian: initial design, %d points used", n_used)
            return _initial_design(space, n_used, count, seed, seen)

        # Each call gets its own stream, so successive calls with the
        # experiment's one seed do not score the same candidates again.
        rng = np.random.default_rng([seed, len(observations), len(pending)])
        encoder = _Encoder(space)
        observed_cube = _to_cube(space, [o.assignments for o in observations])
        pending_cube = _to_cube(space, list(pending))
        problem = _Problem.build(
            spec, observations, encoder.features(observed_cube), self.n_restarts, rng
        )
        all_points = _small_space_points(space, self.n_candidates)

        suggestions: list[Assignments] = []
        chosen_cube: list[np.ndarray] = []
        for _ in range(count):
            believed = np.vstack([pending_cube, *chosen_cube])
            acquisition = problem.acquisition(encoder.features(believed), rng)
            if all_points is not None:
                candidates = all_points
            else:
                anchors = observed_cube[acquisition.anchor_rows]
                candidates = self._candidates(encoder, anchors, rng)
            point = self._maximize(acquisition, encoder, space, candidates, seen)
            if point is None:
                point = _best_unseen_enumerated(acquisition, encoder, space, seen)
            if point is None:
                logger.debug("bayesian: no unseen point left in the space")
                break

            assignments = space.from_unit(point)
            suggestions.append(assignments)
            seen.add(space.key(assignments))
            chosen_cube.append(point[np.newaxis, :])
        return suggestions

    def _candidates(
        self, encoder: _Encoder, anchors: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Global and local candidates in the cube, ``(n_candidates, n_dims)``."""
        n_dims = encoder.n_dims
        sobol_seed = int(rng.integers(2**31))
        spread = sobol_points(n_dims, 0, self.n_candidates, sobol_seed)
        uniform = rng.random((self.n_candidates, n_dims))

        # Around each of the best observed points: steps of three sizes, so
        # that both a fine refinement and a nearby basin get candidates.
        local = [
            anchor + rng.normal(scale=scale, size=(LOCAL_CANDIDATES, n_dims))
            for anchor in anchors
            for scale in LOCAL_STEPS
        ]
        cube = np.vstack([spread, uniform, *local])
        return encoder.snap(np.clip(cube, 0.0, 1.0))

    def _maximize(
        self,
        acquisition: _Acquisition,
        encoder: _Encoder,
        space: Space,
        candidates: np.ndarray,
        seen: set[Key],
    ) -> np.ndarray | None:
        """The best unseen candidate after polishing, or None if all are seen."""
        scores = acquisition(encoder.features(candidates))
        starts = _best_unseen(space, candidates, scores, seen, self.n_polish)
        if not starts:
            return None

        best_point = candidates[starts[0]]
        best_score = scores[starts[0]]
        for index in starts:
            point, score = _polish(acquisition, encoder, candidates[index])
            if score > best_score and space.key(space.from_unit(point)) not in seen:
                best_point, best_score = point, score
        logger.debug("bayesian: acquisition %.4g at %s", best_score, best_point)
        return best_point


@dataclass
class _Encoder:
    """Maps cube points to model features (see the module docstring)."""

    space: Space

    @property
    def n_dims(self) -> int:
        return len(self.space)

    @property
    def continuous_dims(self) -> list[int]:
        return [i for i, p in enumerate(self.space) if isinstance(p, DoubleParameter)]

    def snap(self, cube: np.ndarray) -> np.ndarray:
        """Discrete coordinates moved to their bin centres, the points they
        stand for; continuous ones unchanged."""
        snapped = cube.copy()
        for i, parameter in enumerate(self.space):
            n_values = parameter.n_values
            if n_values is None:
                continue
            bins = np.clip(np.floor(cube[:, i] * n_values), 0, n_values - 1)
            snapped[:, i] = (bins + 0.5) / n_values
        return snapped

    def features(self, cube: np.ndarray) -> np.ndarray:
        """Features of snapped cube points, ``(n_points, n_features)``."""
        columns: list[np.ndarray] = []
        for i, parameter in enumerate(self.space):
            if isinstance(parameter, CategoricalParameter):
                n_values = parameter.n_values
                bins = np.clip(np.floor(cube[:, i] * n_values), 0, n_values - 1)
                columns.append(np.eye(n_values)[bins.astype(int)])
            else:
                columns.append(cube[:, i : i + 1])
        if not columns:
            return np.empty((len(cube), 0))
        return np.hstack(columns)


@dataclass
class _Gp:
    """A Gaussian process fitted to standardized targets.

    ``features`` is ``(n_train, n_features)``; ``targets`` and ``noise``
    (variances in the targets' units) are ``(n_train,)``.
    """

    regressor: GaussianProcessRegressor
    features: np.ndarray
    targets: np.ndarray
    noise: np.ndarray

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        targets: np.ndarray,
        noise: np.ndarray,
        n_restarts: int,
        rng: np.random.Generator,
        shortest_length_scale: float = LENGTH_SCALE_BOUNDS[0],
    ) -> _Gp:
        amplitude = ConstantKernel(1.0, AMPLITUDE_BOUNDS)
        matern = Matern(
            length_scale=np.full(features.shape[1], 0.3),
            length_scale_bounds=(shortest_length_scale, LENGTH_SCALE_BOUNDS[1]),
            nu=2.5,
        )
        kernel = amplitude * matern
        if len(targets) > MAX_OBSERVATIONS_FOR_RESTARTS:
            n_restarts = 0
        regressor = _fitted(
            kernel, features, targets, noise, n_restarts, int(rng.integers(2**31))
        )
        logger.debug("bayesian: fitted kernel %s", regressor.kernel_)
        return cls(regressor, features, targets, noise)

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation, each ``(n_points,)``.

        The textbook formulas (Rasmussen and Williams 2006, algorithm 2.1)
        on the regressor's fitted Cholesky factor, without the input checks
        of ``GaussianProcessRegressor.predict``, which cost more than the
        arithmetic for the single points that the polishing step asks for.
        """
        regressor = self.regressor
        cross = regressor.kernel_(features, regressor.X_train_)
        mean = cross @ regressor.alpha_
        solved = solve_triangular(regressor.L_, cross.T, lower=True, check_finite=False)
        variance = regressor.kernel_.diag(features) - np.sum(solved**2, axis=0)
        # Round-off can make a variance slightly negative; it is floored.
        return mean, np.sqrt(np.maximum(variance, 1e-18))

    def believing(self, features: np.ndarray) -> _Gp:
        """This model with points added at their posterior mean (kriging
        believer), keeping the fitted kernel."""
        if len(features) == 0:
            return self
        mean, _ = self.predict(features)
        all_features = np.vstack([self.features, features])
        targets = np.concatenate([self.targets, mean])
        noise = np.concatenate([self.noise, np.full(len(features), JITTER)])
        regressor = _fitted(self.regressor.kernel_, all_features, targets, noise)
        return _Gp(regressor, all_features, targets, noise)


def _fitted(
    kernel: Kernel,
    features: np.ndarray,
    targets: np.ndarray,
    noise: np.ndarray,
    n_restarts: int | None = None,
    random_state: int = 0,
) -> GaussianProcessRegressor:
    """A regressor fitted with ``noise`` on the diagonal; ``n_restarts=None``
    keeps the kernel's hyperparameters as they are."""
    for extra_jitter in (0.0, 1e-4, 1e-2):
        regressor = GaussianProcessRegressor(
            kernel=kernel,
            alpha=noise + extra_jitter,
            optimizer=None if n_restarts is None else "fmin_l_bfgs_b",
            n_restarts_optimizer=n_restarts or 0,
            normalize_y=False,
            random_state=random_state,
        )
        try:
            with warnings.catch_warnings():
                # A length scale at its bound is a valid fit: that input
                # does not matter (upper) or the data are rough (lower).
                warnings.simplefilter("ignore", ConvergenceWarning)
                return regressor.fit(features, targets)
        except np.linalg.LinAlgError:
            logger.debug("bayesian: kernel matrix singular, adding jitter")
    raise np.linalg.LinAlgError("kernel matrix is singular even with jitter")


@dataclass
class _Threshold:
    """A model of one thresholded metric and its threshold, both on the
    model's standardized ``to_minimize`` scale."""

    gp: _Gp
    threshold: float


@dataclass
class _Problem:
    """The models of one call, fitted on the observations only.

    ``features`` holds every observation, ``(n_observations, n_features)``;
    ``feasible`` marks those that succeeded and meet every threshold.
    """

    spec: ExperimentSpec
    observations: Sequence[Observation]
    features: np.ndarray
    feasible: np.ndarray
    thresholds: list[_Threshold]
    success: _Gp | None
    objective: _Gp | None
    n_restarts: int

    @classmethod
    def build(
        cls,
        spec: ExperimentSpec,
        observations: Sequence[Observation],
        features: np.ndarray,
        n_restarts: int,
        rng: np.random.Generator,
    ) -> _Problem:
        thresholds = []
        for metric in spec.metrics:
            if metric.threshold is None:
                continue
            model = _threshold_model(metric, observations, features, n_restarts, rng)
            if model is not None:
                thresholds.append(model)
        success = _success_model(observations, features, n_restarts, rng)
        feasible = np.array([is_feasible(spec, o) for o in observations])

        # With one optimized metric the objective model serves every slot
        # of a batch; with two, each slot draws its own scalarization.
        objective = None
        if len(spec.optimized_metrics) == 1:
            objective = _objective_model(
                spec, observations, features, None, n_restarts, rng
            )
        return cls(
            spec,
            observations,
            features,
            feasible,
            thresholds,
            success,
            objective,
            n_restarts,
        )

    def acquisition(
        self, believed: np.ndarray, rng: np.random.Generator
    ) -> _Acquisition:
        """The acquisition of one batch slot, with ``believed`` features
        ``(n_believed, n_features)`` added as kriging believers."""
        feasibility = _Feasibility(
            [
                _Threshold(t.gp.believing(believed), t.threshold)
                for t in self.thresholds
            ],
            None if self.success is None else self.success.believing(believed),
        )
        likely_feasible = np.argsort(-feasibility.log_probability(self.features))
        feasible_rows = np.flatnonzero(self.feasible)
        believed_feasible = feasibility.believed_met(believed)
        if len(feasible_rows) == 0 and not believed_feasible.any():
            logger.debug("bayesian: no feasible observation, seeking one")
            return _Acquisition(
                feasibility, None, math.inf, likely_feasible[:N_ANCHORS]
            )

        objective = self.objective
        if objective is None:
            weights = rng.dirichlet(np.ones(len(self.spec.optimized_metrics)))
            objective = _objective_model(
                self.spec,
                self.observations,
                self.features,
                weights,
                self.n_restarts,
                rng,
            )
        objective = objective.believing(believed)

        # The incumbent is the best posterior mean at a feasible point:
        # with noisy observations, the best single measurement would be
        # biased low (Picheny et al. 2013, "plug-in" EI).  Believed points
        # join it, as in Ginsbourger et al.: otherwise a believed point the
        # model thinks better than the incumbent keeps its improvement, and
        # the next slot of the batch lands on it again.
        observed_means, _ = objective.predict(self.features[feasible_rows])
        believed_means, _ = objective.predict(believed[believed_feasible])
        incumbent = float(np.min(np.concatenate([observed_means, believed_means])))

        if len(feasible_rows) > 0:
            anchors = feasible_rows[np.argsort(observed_means)[:N_ANCHORS]]
        else:
            anchors = likely_feasible[:N_ANCHORS]
        return _Acquisition(feasibility, objective, incumbent, anchors)


@dataclass
class _Feasibility:
    """The threshold and success models of one batch slot."""

    thresholds: list[_Threshold]
    success: _Gp | None

    def log_probability(self, features: np.ndarray) -> np.ndarray:
        """Log chance that every threshold holds and the run succeeds,
        ``(n_points, n_features) -> (n_points,)``."""
        score = np.zeros(len(features))
        for threshold in self.thresholds:
            mean, std = threshold.gp.predict(features)
            score += log_ndtr((threshold.threshold - mean) / std)
        if self.success is not None:
            mean, _ = self.success.predict(features)
            score += np.log(np.clip(0.5 + mean, SUCCESS_FLOOR, 1.0))
        return score

    def believed_met(self, features: np.ndarray) -> np.ndarray:
        """Whether the models' means meet every threshold and make success
        at least as likely as not, ``(n_points,)`` booleans.

        A believer also believes these models: such a believed point counts
        as a feasible result.
        """
        met = np.ones(len(features), dtype=bool)
        for threshold in self.thresholds:
            mean, _ = threshold.gp.predict(features)
            met &= mean <= threshold.threshold
        if self.success is not None:
            mean, _ = self.success.predict(features)
            met &= mean >= 0.0
        return met


@dataclass
class _Acquisition:
    """Log acquisition, ``(n_points, n_features) -> (n_points,)``.

    With an objective model: log EI below ``incumbent`` plus the log chance
    of feasibility.  Without one (nothing feasible yet): the log chance
    only.  ``anchor_rows`` are the observations to search around: the best
    feasible ones, or while none is feasible, the likeliest to be.
    """

    feasibility: _Feasibility
    objective: _Gp | None
    incumbent: float
    anchor_rows: np.ndarray

    def __call__(self, features: np.ndarray) -> np.ndarray:
        score = self.feasibility.log_probability(features)
        if self.objective is not None:
            mean, std = self.objective.predict(features)
            score += log_expected_improvement(mean, std, self.incumbent)
        return score


def log_expected_improvement(
    mean: np.ndarray, std: np.ndarray, incumbent: float
) -> np.ndarray:
    """log E[max(incumbent - f, 0)] for f ~ N(mean, std^2), minimizing.

    EI = std * h(z) with z = (incumbent - mean) / std and
    h(z) = phi(z) + z Phi(z) (Jones, Schonlau and Welch 1998).  The log is
    taken through ``_log_h``, which stays finite and accurate far below the
    incumbent, where EI underflows to 0 and every candidate would tie.
    """
    z = (incumbent - mean) / std
    return np.log(std) + _log_h(z)


def _log_h(z: np.ndarray) -> np.ndarray:
    """log(phi(z) + z Phi(z)) without underflow or cancellation.

    Following Ament et al., "Unexpected improvements to expected
    improvement for Bayesian optimization" (NeurIPS 2023): for z > -1 the
    direct formula is exact enough; below, write Phi(z) with the scaled
    complementary error function erfcx, which gives
    h(z) = phi(z) (1 - |z| erfcx(|z| / sqrt 2) sqrt(pi / 2)); far below,
    where that bracket is under machine precision, its asymptote 1 / z^2.
    """
    z = np.asarray(z, dtype=float)
    log_h = np.empty_like(z)
    log_phi = -0.5 * z**2 - 0.5 * math.log(2.0 * math.pi)

    direct = z > -1.0
    zd = z[direct]
    log_h[direct] = np.log(np.exp(log_phi[direct]) + zd * ndtr(zd))

    far = z < -1.0 / math.sqrt(np.finfo(float).eps)
    log_h[far] = log_phi[far] - 2.0 * np.log(-z[far])

    middle = ~direct & ~far
    zm = -z[middle]
    log_ratio = np.log(zm * erfcx(zm / math.sqrt(2.0))) + 0.5 * math.log(math.pi / 2)
    log_h[middle] = log_phi[middle] + _log1mexp(log_ratio)
    return log_h


def _log1mexp(x: np.ndarray) -> np.ndarray:
    """log(1 - exp(x)) for x < 0, accurate at both ends (Mächler 2012)."""
    near_zero = x > -math.log(2.0)
    return np.where(
        near_zero,
        np.log(-np.expm1(np.minimum(x, -1e-300))),
        np.log1p(-np.exp(np.minimum(x, 0.0))),
    )


def _objective_model(
    spec: ExperimentSpec,
    observations: Sequence[Observation],
    features: np.ndarray,
    weights: np.ndarray | None,
    n_restarts: int,
    rng: np.random.Generator,
) -> _Gp:
    """The model of the (scalarized) objective on the observations with values.

    With two optimized metrics, ``weights`` picks one augmented Chebyshev
    scalarization of the two, each scaled to [0, 1] over the observations
    (ParEGO, Knowles 2006).  A new draw per suggestion spreads suggestions
    along the Pareto front; this is simpler and weaker than a proper
    multi-objective acquisition such as expected hypervolume improvement.
    """
    metrics = spec.optimized_metrics
    rows = [i for i, o in enumerate(observations) if _has_values(spec, o)]
    # (n_rows, n_metrics) values on the to_minimize scale and their stddevs.
    values = np.array(
        [[m.to_minimize(_value(observations[i], m)) for m in metrics] for i in rows]
    )
    stddevs = np.array([[_stddev(observations[i], m) for m in metrics] for i in rows])

    if weights is None:
        scalar, scalar_std = values[:, 0], stddevs[:, 0]
    else:
        low, high = values.min(axis=0), values.max(axis=0)
        span = np.where(high > low, high - low, 1.0)
        weighted = weights * (values - low) / span
        scalar = weighted.max(axis=1) + CHEBYSHEV_AUGMENTATION * weighted.sum(axis=1)
        # Noise through the scalarization, to first order: the slope of
        # each metric is at most (1 + augmentation) * weight / span.
        slopes = (1.0 + CHEBYSHEV_AUGMENTATION) * weights / span
        scalar_std = np.sqrt(np.sum((slopes * stddevs) ** 2, axis=1))

    targets, noise, _ = _standardize(scalar, scalar_std)
    return _Gp.fit(features[rows], targets, noise, n_restarts, rng)


def _threshold_model(
    metric: MetricSpec,
    observations: Sequence[Observation],
    features: np.ndarray,
    n_restarts: int,
    rng: np.random.Generator,
) -> _Threshold | None:
    """The model of one thresholded metric, or None without any value.

    On the ``to_minimize`` scale the threshold holds when the value is at
    or below the threshold, whichever the metric's direction.
    """
    assert metric.threshold is not None
    rows = [
        i
        for i, o in enumerate(observations)
        if not o.failed and o.value(metric.name) is not None
    ]
    if not rows:
        return None
    values = np.array(
        [metric.to_minimize(_value(observations[i], metric)) for i in rows]
    )
    stddevs = np.array([_stddev(observations[i], metric) for i in rows])

    targets, noise, to_standard = _standardize(values, stddevs)
    gp = _Gp.fit(features[rows], targets, noise, n_restarts, rng)
    return _Threshold(gp, to_standard(metric.to_minimize(metric.threshold)))


def _success_model(
    observations: Sequence[Observation],
    features: np.ndarray,
    n_restarts: int,
    rng: np.random.Generator,
) -> _Gp | None:
    """A model of where runs succeed, or None when none failed.

    A regression on labels +1/2 (succeeded) and -1/2 (failed, or marked by
    the runner as never converged); 1/2 plus its posterior mean is the
    estimated chance of success, a kernel-weighted success rate around the
    point: 1/2 far from any run, near 0 among failures.  It is simpler
    than a Gaussian-process classifier, and unlike the probability that a
    latent label is positive, it does not climb back to 1/2 between
    failures, where the objective model, which has no values there, keeps
    promising large improvements.
    """
    succeeded = np.array(
        [
            not o.failed and o.metadata.get("converged") is not False
            for o in observations
        ]
    )
    if succeeded.all():
        return None
    labels = np.where(succeeded, 0.5, -0.5)
    noise = np.full(len(labels), SUCCESS_LABEL_NOISE)
    return _Gp.fit(
        features, labels, noise, n_restarts, rng, SUCCESS_SHORTEST_LENGTH_SCALE
    )


def _standardize(
    values: np.ndarray, stddevs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, Callable[[float], float]]:
    """Targets of zero mean and unit spread, their noise variances, and the
    map of one value onto that scale.

    ``stddevs`` are the noise of each value (see ``_stddev``), 0 when not
    reported.
    """
    centre = float(values.mean())
    spread = float(values.std())
    if not spread > 0:
        spread = 1.0
    targets = (values - centre) / spread
    noise = (stddevs / spread) ** 2 + JITTER
    return targets, noise, lambda value: (value - centre) / spread


def _polish(
    acquisition: _Acquisition, encoder: _Encoder, start: np.ndarray
) -> tuple[np.ndarray, float]:
    """Local ascent of the acquisition from ``start`` (shape ``(n_dims,)``)
    over the continuous coordinates, discrete ones held."""
    dims = encoder.continuous_dims
    start_score = float(acquisition(encoder.features(start[np.newaxis, :]))[0])
    if not dims:
        return start, start_score

    def negative_score_and_gradient(values: np.ndarray) -> tuple[float, np.ndarray]:
        # Forward differences, all in one call of the acquisition: rows are
        # the point, then one small step along each continuous coordinate
        # (backwards at the upper bound), shape (1 + n_continuous, n_dims).
        steps = np.where(values + FINITE_DIFFERENCE_STEP <= 1.0, 1.0, -1.0)
        steps *= FINITE_DIFFERENCE_STEP
        batch = np.tile(start, (len(dims) + 1, 1))
        batch[:, dims] = values
        batch[np.arange(1, len(dims) + 1), dims] += steps
        scores = acquisition(encoder.features(batch))
        gradient = (scores[1:] - scores[0]) / steps
        return -float(scores[0]), -gradient

    result = minimize(
        negative_score_and_gradient,
        start[dims],
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, 1.0)] * len(dims),
        options={"maxiter": POLISH_ITERATIONS},
    )
    if not np.isfinite(result.fun) or -result.fun <= start_score:
        return start, start_score
    point = start.copy()
    point[dims] = np.clip(result.x, 0.0, 1.0)
    return point, float(-result.fun)


def _best_unseen(
    space: Space,
    candidates: np.ndarray,
    scores: np.ndarray,
    seen: set[Key],
    limit: int,
) -> list[int]:
    """Rows of the ``limit`` best-scoring candidates at distinct unseen points."""
    rows: list[int] = []
    keys: set[Key] = set()
    for row in np.argsort(-scores, kind="stable"):
        key = space.key(space.from_unit(candidates[row]))
        if key in seen or key in keys:
            continue
        rows.append(int(row))
        keys.add(key)
        if len(rows) == limit:
            break
    return rows


def _best_unseen_enumerated(
    acquisition: _Acquisition, encoder: _Encoder, space: Space, seen: set[Key]
) -> np.ndarray | None:
    """The best unseen point of a finite space, scoring every point; None
    when every point is seen or the space is too large to enumerate."""
    size = space.size
    if size is None or size > MAX_ENUMERATED_POINTS:
        return None
    unseen = [a for a in space.finite_points() if space.key(a) not in seen]
    if not unseen:
        return None
    cube = space.to_unit_many(unseen)
    scores = acquisition(encoder.features(cube))
    return np.asarray(cube[int(np.argmax(scores))])


def _small_space_points(space: Space, limit: int) -> np.ndarray | None:
    """Every point of a finite space with at most ``limit`` points, as cube
    points ``(n_points, n_dims)``; None for larger or continuous spaces."""
    size = space.size
    if size is None or size > limit:
        return None
    return space.to_unit_many(list(space.finite_points()))


def _initial_design(
    space: Space, n_used: int, count: int, seed: int, seen: set[Key]
) -> list[Assignments]:
    """The next ``count`` unseen points of the experiment's Sobol sequence.

    In a small discrete space Sobol points can land on used points; those
    are skipped, and when the next stretch of the sequence has too few new
    points, the space's remaining points are taken in order.
    """
    taken = set(seen)
    chosen: list[Assignments] = []
    stretch = sobol_points(len(space), n_used, count + 256, seed)
    for point in stretch:
        assignments = space.from_unit(point)
        key = space.key(assignments)
        if key not in taken:
            chosen.append(assignments)
            taken.add(key)
        if len(chosen) == count:
            return chosen

    size = space.size
    if size is not None and size <= MAX_ENUMERATED_POINTS:
        for assignments in space.finite_points():
            key = space.key(assignments)
            if key not in taken:
                chosen.append(assignments)
                taken.add(key)
            if len(chosen) == count:
                break
    return chosen


def _to_cube(space: Space, batch: Sequence[Assignments]) -> np.ndarray:
    """Cube points of assignments, ``(n_points, n_dims)``, clipped to the cube."""
    return np.clip(space.to_unit_many(batch), 0.0, 1.0)


def _has_values(spec: ExperimentSpec, observation: Observation) -> bool:
    """Whether an observation has a value for every optimized metric."""
    return not observation.failed and all(
        observation.value(m.name) is not None for m in spec.optimized_metrics
    )


def _value(observation: Observation, metric: MetricSpec) -> float:
    value = observation.value(metric.name)
    assert value is not None
    return value


def _stddev(observation: Observation, metric: MetricSpec) -> float:
    """The noise of the reported value.

    The runner reports the mean over seeds with the spread of the seeds as
    ``value_stddev``, and lists the seeds in the metadata; the noise of that
    mean is the spread over the square root of their number.  Any other
    ``value_stddev`` is the noise of the value itself, as SigOpt defines it.
    """
    spread = observation.stddev(metric.name) or 0.0
    seeds = observation.metadata.get("seeds")
    if isinstance(seeds, list) and len(seeds) > 1:
        return spread / math.sqrt(len(seeds))
    return spread
