"""Bayesian optimization with Gaussian processes: the ``offline`` type.

One call of ``BayesianOptimizer.suggest`` goes through these steps.

1. Initial design.  Until ``n_initial`` points are observed or pending, the
   points come from the experiment's Sobol sequence (as ``SobolOptimizer``).
2. Models, all Gaussian-process regressions on the unit cube (Rasmussen and
   Williams 2006) with a Matern 5/2 kernel, one length scale per input
   feature (ARD), see ``gaussian_process``:
   - one per optimized metric, on its ``to_minimize`` scale, standardized;
     the reported ``value_stddev`` is the known noise of each observation
     (for a mean over seeds, the seeds' spread moderated towards the spread
     pooled over all points, see ``_noise_of_values``).  Exact values of a
     single objective are first drawn towards a normal spread by a power
     transform that keeps their order (see ``_warp_exact``).
     A value from a point where some seed never converged is only a lower
     bound (the runner reports such a seed at the evaluation after its
     last), so it enters as at least the worst converged value; otherwise
     a schedule too short to converge would look fast (see
     ``_objective_targets``);
   - one per metric with a threshold, giving the probability that the
     threshold holds (Schonlau, Welch and Jones 1998; Gardner et al. 2014);
   - when some runs failed or never converged, a model of the chance of
     success (see ``_success_model``).  Failed runs carry no values, so
     they enter no other model.
   Features: one column per numeric parameter (its cube coordinate, ints
   and grids at their bin centres) and one 0/1 column per category of each
   categorical parameter (one-hot), so that categories have no false order.
   Feature arrays have shape ``(n_points, n_features)``; cube points have
   shape ``(n_points, n_dims)``, one coordinate per parameter.
3. Acquisition, in log space so that tiny values still rank: log expected
   improvement (Jones, Schonlau and Welch 1998) over the best posterior
   mean at a feasible point, or with two optimized metrics the log
   expected hypervolume improvement over the front of those means (exact
   in two dimensions, see ``log_expected_hypervolume_improvement``); plus
   the log chance that every threshold holds and the run succeeds.  Before
   anything is feasible, only the chance counts: the search looks for a
   feasible region first.
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

``posterior_best`` picks the best observations by the same models'
posterior means, for ``best_assignments`` on noisy metrics.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import erfcx, log_ndtr, logsumexp, ndtr
from scipy.stats import yeojohnson
from threadpoolctl import threadpool_limits

from optiloop.errors import SpecError
from optiloop.experiment import (
    ExperimentSpec,
    MetricSpec,
    Observation,
    best_observations,
    check_values,
    is_feasible,
)
from optiloop.optimizers.gaussian_process import GaussianProcess
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
# kernel matrix stays positive definite when points nearly coincide: the
# larger where values are noisy, the smaller where every value is exact
# (see ``_standardize``).  A matrix that still fails gets more, see
# ``gaussian_process``.
JITTER = 1e-6
EXACT_JITTER = 1e-10

# The weight, in degrees of freedom, of the noise pooled over every point
# against each point's own spread of seeds (see ``_noise_of_values``).
POOLED_NOISE_WEIGHT = 4

# Random restarts of the kernel fit guard against a poor local optimum of
# the likelihood while data are few; past this many observations the
# likelihood is sharp enough that one start suffices, and each restart costs
# a full fit.
MAX_OBSERVATIONS_FOR_RESTARTS = 64

# The success model (see ``_success_model``).  A failing region is a
# region, not a spike: with shorter length scales the estimate would climb
# back to 1/2 between neighbouring failures.  The label noise lets a point
# that both failed and succeeded (a flaky run) sit at its average.  The
# floor keeps the log finite, so candidates in a failing region still rank
# among themselves when nothing else is left.
SUCCESS_SHORTEST_LENGTH_SCALE = 0.1
SUCCESS_LABEL_NOISE = 0.01
SUCCESS_FLOOR = 1e-6

# A point the success model gives less than this chance ranks after every
# likelier one (its log score drops by the penalty, a factor of e^-50):
# once the optimum is pinned down and improvements elsewhere are tiny, a
# corner of a failing region would otherwise win on its wide uncertainty,
# and each such run costs a whole training job for a one-in-five chance.
UNLIKELY_SUCCESS = 0.2
UNLIKELY_PENALTY = 50.0

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
LOCAL_STEPS = (0.001, 0.01, 0.05, 0.2)
LOCAL_CANDIDATES = 64

# The hypervolume's reference point lies this fraction of each objective's
# observed range (at least of one standard deviation) past its worst
# observed value, so that the ends of the front still gain volume.
REFERENCE_MARGIN = 0.1


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
        check_inputs(spec, observations, pending)
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
            acquisition = problem.acquisition(encoder.features(believed))
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

        # Around each of the best observed points: steps of several sizes,
        # so that both a fine refinement and a nearby basin get candidates.
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
class _Threshold:
    """A model of one thresholded metric and its threshold, both on the
    model's standardized ``to_minimize`` scale."""

    gp: GaussianProcess
    threshold: float


@dataclass
class _Problem:
    """The models of one call, fitted on the observations only.

    ``features`` holds every observation, ``(n_observations, n_features)``;
    ``feasible`` marks those that succeeded and meet every threshold.
    ``objectives`` holds one model per optimized metric, or none when no
    observation has values yet.
    """

    features: np.ndarray
    feasible: np.ndarray
    thresholds: list[_Threshold]
    success: GaussianProcess | None
    objectives: list[GaussianProcess]

    @classmethod
    def build(
        cls,
        spec: ExperimentSpec,
        observations: Sequence[Observation],
        features: np.ndarray,
        n_restarts: int,
        rng: np.random.Generator,
    ) -> _Problem:
        if len(observations) > MAX_OBSERVATIONS_FOR_RESTARTS:
            n_restarts = 0
        thresholds = []
        for metric in spec.metrics:
            if metric.threshold is None:
                continue
            model = _threshold_model(metric, observations, features, n_restarts, rng)
            if model is not None:
                thresholds.append(model)
        success = _success_model(observations, features, n_restarts, rng)
        feasible = np.array([is_feasible(spec, o) for o in observations])
        objectives = _objective_models(spec, observations, features, n_restarts, rng)
        return cls(features, feasible, thresholds, success, objectives)

    def acquisition(self, believed: np.ndarray) -> _Acquisition:
        """The acquisition of one batch slot, with ``believed`` features
        ``(n_believed, n_features)`` added as kriging believers."""
        feasibility = _Feasibility(
            [
                _Threshold(t.gp.believing(believed, JITTER), t.threshold)
                for t in self.thresholds
            ],
            None
            if self.success is None
            else self.success.believing(believed, SUCCESS_LABEL_NOISE),
        )
        likely_feasible = np.argsort(-feasibility.log_probability(self.features))
        feasible_rows = np.flatnonzero(self.feasible)
        believed_feasible = feasibility.believed_met(believed)
        if not self.objectives or (
            len(feasible_rows) == 0 and not believed_feasible.any()
        ):
            logger.debug("bayesian: no feasible observation, seeking one")
            return _Acquisition(feasibility, [], likely_feasible[:N_ANCHORS])

        objectives = [gp.believing(believed, JITTER) for gp in self.objectives]

        # The best is judged by posterior means at feasible points: with
        # noisy observations, the best single measurement would be biased
        # low (Picheny et al. 2013, "plug-in" EI).  Believed points join
        # them, as in Ginsbourger et al.: otherwise a believed point the
        # model thinks better than the incumbent keeps its improvement, and
        # the next slot of the batch lands on it again.
        points = np.vstack([self.features[feasible_rows], believed[believed_feasible]])
        means = np.column_stack([gp.predict(points)[0] for gp in objectives])
        n_observed = len(feasible_rows)

        if len(objectives) == 1:
            incumbent = np.array([float(means[:, 0].min())])
            order = np.argsort(means[:n_observed, 0])
            anchors = feasible_rows[order[:N_ANCHORS]]
            return _Acquisition(feasibility, objectives, anchors, incumbent)

        on_front = _pareto_mask(means)
        front = means[on_front]
        # The reference point: past the worst of every observed target.
        targets = np.column_stack([gp.targets for gp in self.objectives])
        worst, best = targets.max(axis=0), targets.min(axis=0)
        reference = worst + REFERENCE_MARGIN * np.maximum(worst - best, 1.0)
        front_rows = feasible_rows[on_front[:n_observed]]
        anchors = front_rows[np.argsort(means[:n_observed][on_front[:n_observed], 0])]
        if len(anchors) > N_ANCHORS:
            spaced = np.linspace(0, len(anchors) - 1, N_ANCHORS).round().astype(int)
            anchors = anchors[spaced]
        return _Acquisition(feasibility, objectives, anchors, front, reference)


@dataclass
class _Feasibility:
    """The threshold and success models of one batch slot."""

    thresholds: list[_Threshold]
    success: GaussianProcess | None

    def log_probability(self, features: np.ndarray) -> np.ndarray:
        """Log chance that every threshold holds and the run succeeds,
        ``(n_points, n_features) -> (n_points,)``."""
        score = np.zeros(len(features))
        for threshold in self.thresholds:
            mean, std = threshold.gp.predict(features)
            score += log_ndtr((threshold.threshold - mean) / std)
        if self.success is not None:
            mean, _ = self.success.predict(features)
            chance = np.clip(0.5 + mean, SUCCESS_FLOOR, 1.0)
            score += np.log(chance)
            score -= np.where(chance < UNLIKELY_SUCCESS, UNLIKELY_PENALTY, 0.0)
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

    With one objective model: log EI below ``best`` (shape ``(1,)``) plus
    the log chance of feasibility.  With two: log EHVI over the front
    ``best`` (``(n_front, 2)``) up to ``reference`` plus that chance.
    Without any (nothing feasible yet): the log chance only.
    ``anchor_rows`` are the observations to search around: the best
    feasible ones, or while none is feasible, the likeliest to be.
    """

    feasibility: _Feasibility
    objectives: list[GaussianProcess]
    anchor_rows: np.ndarray
    best: np.ndarray | None = None
    reference: np.ndarray | None = None

    def __call__(self, features: np.ndarray) -> np.ndarray:
        score = self.feasibility.log_probability(features)
        if not self.objectives:
            return score
        assert self.best is not None
        predictions = [gp.predict(features) for gp in self.objectives]
        if len(predictions) == 1:
            mean, std = predictions[0]
            return score + log_expected_improvement(mean, std, float(self.best[0]))
        assert self.reference is not None
        means = np.column_stack([mean for mean, _ in predictions])
        stds = np.column_stack([std for _, std in predictions])
        return score + log_expected_hypervolume_improvement(
            means, stds, self.best, self.reference
        )


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


def log_expected_hypervolume_improvement(
    means: np.ndarray, stds: np.ndarray, front: np.ndarray, reference: np.ndarray
) -> np.ndarray:
    """log E[HVI] of two independent Gaussian objectives, both minimized.

    ``means`` and ``stds`` are ``(n_points, 2)``; ``front`` holds the
    current points ``(n_front, 2)`` (dominated ones are ignored) and
    ``reference`` ``(2,)`` bounds the hypervolume.

    Sorted by the first objective, the front splits the region it does not
    dominate into vertical strips: strip i spans ``[a_i, b_i)`` in the
    first objective and lies below ``u_i`` in the second.  A point y gains
    ``(b_i - max(a_i, y1))+ (u_i - y2)+`` in strip i.  The two factors are
    independent, and ``(b - max(a, y))+ = (b - y)+ - (a - y)+`` for a <= b,
    so each expectation is a difference of expected improvements and the
    sum is exact (the cell decomposition of Emmerich, Giannakoglou and
    Naujoks 2006, written per strip).  Everything stays in log space.
    """
    inside = np.all(front < reference, axis=1)
    front = front[inside][_pareto_mask(front[inside])]
    front = front[np.argsort(front[:, 0])]

    lower = np.concatenate([[-np.inf], front[:, 0]])
    upper = np.concatenate([front[:, 0], [reference[0]]])
    height = np.concatenate([[reference[1]], front[:, 1]])

    # (n_points, n_strips) log expectations of each factor.
    mean1, std1 = means[:, :1], stds[:, :1]
    mean2, std2 = means[:, 1:], stds[:, 1:]
    log_upper = np.log(std1) + _log_h((upper - mean1) / std1)
    log_lower = np.log(std1) + _log_h((lower[1:] - mean1) / std1)
    width = log_upper.copy()
    # The first strip is unbounded below: its lower term is 0.
    width[:, 1:] += _log1mexp(np.minimum(log_lower - log_upper[:, 1:], -1e-300))
    log_height = np.log(std2) + _log_h((height - mean2) / std2)
    return np.asarray(logsumexp(width + log_height, axis=1))


def _pareto_mask(points: np.ndarray) -> np.ndarray:
    """Which rows of ``(n_points, n_objectives)`` no other row dominates
    (minimizing); of equal rows only the first counts."""
    n = len(points)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        no_worse = np.all(points <= points[i], axis=1)
        better = np.any(points < points[i], axis=1)
        equal_before = np.all(points == points[i], axis=1) & (np.arange(n) < i)
        if np.any(no_worse & better) or np.any(equal_before):
            mask[i] = False
    return mask


def posterior_best(
    spec: ExperimentSpec, observations: Sequence[Observation]
) -> list[Observation]:
    """The best feasible observations by the models' posterior means.

    A drop-in for ``experiment.best_observations`` (the same order and
    ties): one observation, or the Pareto front for two optimized metrics.
    A feasible observation is one whose measurements meet every threshold,
    so a point that violated one is never reported.  The objective models
    of ``suggest`` smooth each measured mean with its neighbours, weighing
    the reported noise, so one lucky mean among noisy seeds does not win.
    Likewise a point that succeeded while its neighbours mostly failed or
    never converged (the success model, fitted without that point, gives
    it less than even odds) is passed over while a likelier one exists: a
    short schedule whose few seeds all converged by luck is not a recipe.
    Without any reported noise the measurements are exact, and this is
    ``best_observations``.
    """
    if len(spec.optimized_metrics) == 1:
        return posterior_ranking(spec, observations)[:1]

    check_inputs(spec, observations, [])

    posterior = _posterior_means(spec, observations)
    if posterior is None:
        return best_observations(spec, observations)
    rows, means, likely = posterior
    if likely.any():
        rows, means = rows[likely], means[likely]
    return [observations[rows[i]] for i in np.flatnonzero(_pareto_mask(means))]


def posterior_ranking(
    spec: ExperimentSpec, observations: Sequence[Observation]
) -> list[Observation]:
    """Every feasible observation, best first by the first optimized
    metric's posterior mean (``posterior_best``'s rule); the points the
    success model doubts come after the others.  Without reported noise,
    or with fewer than two feasible observations, by the measured values
    (ties keep the earliest).
    """
    check_inputs(spec, observations, [])
    metric = spec.optimized_metrics[0]
    posterior = _posterior_means(spec, observations)
    if posterior is None:
        feasible = [o for o in observations if is_feasible(spec, o)]
        return sorted(feasible, key=lambda o: metric.to_minimize(_value(o, metric)))

    rows, means, likely = posterior
    # Stable sorts: likely points first, each group by its posterior mean.
    order = sorted(range(len(rows)), key=lambda i: (not likely[i], means[i, 0]))
    return [observations[rows[i]] for i in order]


def _posterior_means(
    spec: ExperimentSpec, observations: Sequence[Observation]
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The feasible rows, the objective models' posterior means there
    (``(n, metrics)``, on the ``to_minimize`` scale) and whether the success
    model finds each row likely.  None when the measurements are exact or
    fewer than two rows are feasible.
    """
    feasible_rows = [i for i, o in enumerate(observations) if is_feasible(spec, o)]
    noisy = any(
        _stddev(o, m) > 0
        for o in observations
        if _has_values(spec, o)
        for m in spec.optimized_metrics
    )
    if len(feasible_rows) < 2 or not noisy:
        return None

    with threadpool_limits(limits=1):
        space = spec.space()
        features = _Encoder(space).features(
            _to_cube(space, [o.assignments for o in observations])
        )
        problem = _Problem.build(
            spec, observations, features, 0, np.random.default_rng(0)
        )
        points = features[feasible_rows]
        means = np.column_stack([gp.predict(points)[0] for gp in problem.objectives])
        likely = np.ones(len(feasible_rows), dtype=bool)
        if problem.success is not None:
            others = problem.success.leave_one_out_mean()[feasible_rows]
            likely = others >= 0.0

    return np.array(feasible_rows), means, likely


def _objective_models(
    spec: ExperimentSpec,
    observations: Sequence[Observation],
    features: np.ndarray,
    n_restarts: int,
    rng: np.random.Generator,
) -> list[GaussianProcess]:
    """One model per optimized metric on the observations with values, or
    none when no observation has values."""
    rows = [i for i, o in enumerate(observations) if _has_values(spec, o)]
    if not rows:
        return []
    models = []
    for metric in spec.optimized_metrics:
        values, stddevs = _objective_targets(spec, metric, observations, rows)
        if len(spec.optimized_metrics) == 1 and not np.any(stddevs > 0):
            values = _warp_exact(values)
        targets, noise, _ = _standardize(values, stddevs)
        models.append(
            GaussianProcess.fit(features[rows], targets, noise, n_restarts, rng)
        )
    return models


def _objective_targets(
    spec: ExperimentSpec,
    metric: MetricSpec,
    observations: Sequence[Observation],
    rows: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """Values of one optimized metric on its ``to_minimize`` scale and
    their noise, ``(n_rows,)`` each.

    At a point where some seed never converged (``converged`` false in the
    metadata), the converge metric is censored: the missed seed counts at
    the evaluation after its last, so the mean is a lower bound that makes
    a schedule too short to converge look fast.  Such a value enters as at
    least the worst uncensored value, so that the model learns the region
    is bad; the success model says why.  The converge metric is the job's
    ``converge.as`` metric, or without a job spec every optimized metric.
    """
    converge = spec.job.converge if spec.job is not None else None
    is_censorable = converge is None or converge.as_ == metric.name
    values = np.array(
        [metric.to_minimize(_value(observations[i], metric)) for i in rows]
    )
    stddevs = _noise_of_values(observations, metric, rows)
    censored = np.array(
        [observations[i].metadata.get("converged") is False for i in rows]
    )
    if is_censorable and censored.any() and not censored.all():
        worst = float(values[~censored].max())
        values = np.where(censored, np.maximum(values, worst), values)
    return values, stddevs


def _warp_exact(values: np.ndarray) -> np.ndarray:
    """Exact values of one objective mapped closer to a normal spread by a
    Yeo-Johnson power transform (order kept), ``(n,) -> (n,)``.

    A stationary model fits a heavy tail of good values poorly: on
    Hartmann-6 the deep basins are outliers several spreads below the rest,
    and the model then trusts the first basin it finds.  With the transform
    (as in HEBO, Cowen-Rivers et al. 2022) the median regret of 20 runs of
    ``benchmarks/compare.py``'s Hartmann-6 fell from 0.77 to 0.39 after 25
    evaluations and from 0.0057 to 0.0026 after 50.  Noisy means are left
    alone: a nonlinear map would skew their noise, and the power would be
    fitted partly to that noise.  So are two objectives, whose hypervolume
    is measured on their own scales.
    """
    spread = float(values.std())
    if not spread > 0:
        return values
    standard = (values - values.mean()) / spread
    power = _yeo_johnson_power(standard)
    return np.asarray(yeojohnson(standard, power))


def _yeo_johnson_power(values: np.ndarray) -> float:
    """The power whose Yeo-Johnson transform of ``values`` is likeliest
    normal (maximum likelihood, Yeo and Johnson 2000), by Brent's method.

    scipy's ``yeojohnson_normmax`` finds the same power, but its checks on
    each of some thirty likelihood calls cost 6% of a suggestion at 200
    observations; this likelihood calls only the transform.
    """
    n = len(values)
    log_jacobian = float(np.sum(np.sign(values) * np.log1p(np.abs(values))))

    def negative_log_likelihood(power: float) -> float:
        variance = float(np.var(yeojohnson(values, power)))
        if not variance > 0:
            return math.inf
        return 0.5 * n * math.log(variance) - (power - 1.0) * log_jacobian

    result = minimize_scalar(negative_log_likelihood, bracket=(-2.0, 2.0))
    return float(result.x)


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
    stddevs = _noise_of_values(observations, metric, rows)

    targets, noise, to_standard = _standardize(values, stddevs)
    gp = GaussianProcess.fit(features[rows], targets, noise, n_restarts, rng)
    return _Threshold(gp, to_standard(metric.to_minimize(metric.threshold)))


def _success_model(
    observations: Sequence[Observation],
    features: np.ndarray,
    n_restarts: int,
    rng: np.random.Generator,
) -> GaussianProcess | None:
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
    # No length-scale prior: an input along which success does not change
    # should get a long length scale, so that a failing region is a
    # half-space and not a row of separate spots.
    return GaussianProcess.fit(
        features,
        labels,
        noise,
        n_restarts,
        rng,
        SUCCESS_SHORTEST_LENGTH_SCALE,
        length_scale_prior=None,
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
    # Exact values are interpolated as closely as the arithmetic allows, so
    # that the search can refine an optimum to many digits.  Where any value
    # is noisy, a mean whose few seeds happened to agree is not exact either,
    # and every value keeps the larger floor.
    floor = JITTER if np.any(stddevs > 0) else EXACT_JITTER
    noise = (stddevs / spread) ** 2 + floor
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


def check_inputs(
    spec: ExperimentSpec,
    observations: Sequence[Observation],
    pending: Sequence[Assignments],
) -> None:
    """Refuse what the models cannot take, with a SpecError naming the
    observation or pending point and the field.

    The service and the runner check every observation on its way in, by
    the same rules; this guards direct callers, for whom a single NaN value
    would turn every posterior mean into NaN, a success without its
    objective would be reported best, and a point off the space would be
    clipped to its edge without a word.
    """
    space = spec.space()
    for index, observation in enumerate(observations):
        where = f"observations[{index}]"
        _check_point(space, where, observation.assignments)
        values = [
            {"name": v.name, "value": v.value, "value_stddev": v.value_stddev}
            for v in observation.values
        ]
        try:
            check_values(spec, values, observation.failed)
        except SpecError as error:
            raise SpecError(f"{where}.{error}") from None
    for index, assignments in enumerate(pending):
        _check_point(space, f"pending[{index}]", assignments)


def _check_point(space: Space, where: str, assignments: Assignments) -> None:
    try:
        space.check_assignments(assignments)
    except SpecError as error:
        raise SpecError(f"{where}.{error}") from None


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
    n_seeds = _n_seeds(observation)
    return spread / math.sqrt(n_seeds) if n_seeds > 1 else spread


def _n_seeds(observation: Observation) -> int:
    """How many seeds the value is the mean of, 1 when none are listed."""
    seeds = observation.metadata.get("seeds")
    return len(seeds) if isinstance(seeds, list) else 1


def _noise_of_values(
    observations: Sequence[Observation], metric: MetricSpec, rows: Sequence[int]
) -> np.ndarray:
    """The standard deviation of each row's value, ``(n_rows,)``, with the
    spread of the seeds moderated towards the spread pooled over every row.

    The spread of a few seeds is a poor estimate of the noise: three seeds
    that happen to agree would make their mean look exact, and the models
    would trust that one lucky point over its neighbours.  Each row's
    variance is therefore a weighted mean of its own, with ``n_seeds - 1``
    degrees of freedom, and the pooled one, with ``POOLED_NOISE_WEIGHT``
    (the moderated variance of Smyth 2004, with the prior's weight fixed).
    A ``value_stddev`` reported without seeds is the known noise of that
    value, as SigOpt defines it, and is kept.
    """
    seeds = np.array([_n_seeds(observations[i]) for i in rows])
    spreads = np.array([observations[i].stddev(metric.name) or 0.0 for i in rows])
    estimated = seeds > 1
    if not estimated.any():
        return spreads

    freedom = seeds[estimated] - 1
    variances = spreads[estimated] ** 2
    pooled = float(np.sum(freedom * variances) / np.sum(freedom))
    moderated = (freedom * variances + POOLED_NOISE_WEIGHT * pooled) / (
        freedom + POOLED_NOISE_WEIGHT
    )
    noise = spreads.copy()
    noise[estimated] = np.sqrt(moderated / seeds[estimated])
    return noise
