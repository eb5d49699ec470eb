"""The default evaluator: refine bounds around the best cluster of good points.

After a round, most of the good points usually sit in one region of the
space.  This evaluator finds that region with K-means and moves every numeric
bound of the next round towards it, or past it when the region presses
against the bound (the optimum may lie outside the current range).

The algorithm, with every number a setting of ``KMeansSettings``:

1. Keep the observations that succeeded and meet every metric threshold.
2. Of those, keep the best ``keep_fraction`` (0.75) by the first optimized
   metric; the count is rounded up and is at least 1.
3. Cluster the kept points with K-means on their numeric parameters, each
   scaled to the current bounds so that every axis spans [0, 1] (a log-scaled
   double or a ``grid_pow2`` in log space).  Categorical parameters take no
   part in the distance: their bounds never change, and a one-hot code would
   let a category switch outweigh every numeric difference.  The number of
   clusters starts at ``floor(n / min_cluster_size)`` (and at most the number
   of distinct points); while some cluster holds fewer than
   ``min_cluster_size`` (10) points, it is lowered by one and K-means runs
   again.  One cluster needs no K-means.
4. Choose the cluster whose points have the best mean optimized metric
   (the first such cluster on a tie).
5. For each numeric parameter with current bounds [lo, hi], width
   w = hi - lo (in log space for a log scale), margin m = margin_fraction * w
   (0.1) and the chosen cluster's range [cmin, cmax] on the same scale:

   - if cmin - lo <= m the cluster presses on the lower bound, which moves
     out to lo - m (explore); otherwise it moves in to cmin - m (exploit);
   - the upper bound likewise: hi + m if hi - cmax <= m, else cmax + m.

   Then an int's bounds are rounded outward (floor the min, ceil the max),
   and both are clipped to the ``hard_bounds`` of the parameter, if any.  A
   log scale stays positive by construction.  Should min >= max remain, the
   old bounds are kept.  A grid keeps the members inside the new bounds; a
   ``grid_pow2`` is re-cut from its base, so a widened bound brings in the
   next power of two.  Should fewer than two members remain, the members the
   cluster used are kept as well.  Categorical parameters stay unchanged.
6. With fewer than ``min_cluster_size`` points after step 2, nothing is
   clustered and every bound stays as it was; the reasons say so.

``stop`` is False: deciding that a campaign has converged takes the
objective's history over rounds, which is the campaign's job.  The one
exception is ``stop_when_unchanged``, which asks to stop when a refinement
moves no bound, since the next round would search the same space again.

The evaluator is a pure function of the spec and the observations, in their
order: K-means runs with a fixed ``random_state`` and ``n_init``.

Worked example: the MLPerf ResNet-50 search (minimize converge_epoch, subject
to eval_accuracy >= 0.759) with base_learning_rate in [18, 30], warmup_epochs
an int in [2, 15] and weight_decay the ``grid_pow2`` 1e-4 * 2^N in
[1e-5, 4e-4].  Of 53 observations 45 meet the accuracy threshold; the best
ceil(0.75 * 45) = 34 are kept.  K-means starts with floor(34 / 10) = 3
clusters; say they hold 15, 12 and 7 points, so it runs again with 2, which
hold 20 and 14.  Their mean converge epochs are 36.1 and 38.4: the first
cluster wins.  Its points span base_learning_rate [18.4, 24], warmup_epochs
[5, 9] and weight decays {5e-5, 1e-4}.

- base_learning_rate: w = 12, m = 1.2.  18.4 - 18 = 0.4 <= 1.2, so the min
  widens to 18 - 1.2 = 16.8; 30 - 24 = 6 > 1.2, so the max narrows to
  24 + 1.2 = 25.2.  Next round: [16.8, 25.2].
- warmup_epochs: w = 13, m = 1.3.  Both ends are far from the cluster: the
  min becomes 5 - 1.3 = 3.7 and the max 9 + 1.3 = 10.3, rounded outward to
  the ints [3, 11].
- weight_decay, in log space: w = ln(4e-4 / 1e-5) = ln 40 = 3.689,
  m = 0.3689, so one margin is a factor 40^0.1 = 1.446.  The cluster is far
  from both ends (a factor 5 above the min, 4 below the max), so the new
  range is [5e-5 / 1.446, 1e-4 * 1.446] = [3.457e-5, 1.446e-4], whose
  powers of two are 5e-5 and 1e-4: the next round tries only those two.

Known shortcomings: with two optimized metrics only the first one ranks the
points and the clusters; the margin is a fixed fraction of the width rather
than something learned from the spread of the cluster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sklearn.cluster import KMeans

from optiloop.errors import SpecError
from optiloop.evaluators.base import (
    SETTINGS_FIELD,
    ParameterBounds,
    Refinement,
    inside_bounds,
    settings_error,
)
from optiloop.experiment import (
    ExperimentSpec,
    MetricSpec,
    Observation,
    ParameterSpec,
    Pow2Grid,
    is_feasible,
)

# keep_fraction * n is rounded up, but 0.28 * 25 is 7.000000000000001 in
# floats; this slack keeps such products at the integer they mean.
_COUNT_SLACK = 1e-9

# Int bounds within this distance of an integer count as that integer
# before rounding outward, so float noise in the margin (0.07 * 100 is
# 7.000000000000001) never widens an int range by one.
_INT_DECIMALS = 9


class HardLimits(BaseModel):
    """Limits a parameter's bounds may never cross; either end may be absent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: float | None = None
    max: float | None = None

    @field_validator("min", "max")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value}")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> HardLimits:
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(
                f"min < max must hold, got min={self.min}, max={self.max}; "
                "give a min below the max"
            )
        return self


class KMeansSettings(BaseModel):
    """The numbers of the K-means evaluator, checked once here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_fraction: float = Field(default=0.75, gt=0, le=1)
    """Share of the feasible observations kept, the best ones first."""

    min_cluster_size: int = Field(default=10, ge=1)
    """Fewest points a cluster may hold; fewer kept points stop refinement."""

    margin_fraction: float = Field(default=0.1, ge=0)
    """Margin as a share of each parameter's current width."""

    hard_bounds: dict[str, HardLimits] = Field(default_factory=dict)
    """Per parameter name, limits no refined bound may cross."""

    random_state: int = 0
    """Seed of K-means' initial centres."""

    n_init: int = Field(default=10, ge=1)
    """K-means runs from different centres; the best one is kept."""

    stop_when_unchanged: bool = False
    """Ask to stop when a refinement moves no bound."""


@dataclass(frozen=True)
class _Axis:
    """One numeric parameter as the algorithm sees it.

    Distances and margins are taken on the axis's scale: ``log(value)`` for
    a log-scaled double or a ``grid_pow2``, the value itself otherwise.
    """

    name: str
    low: float
    high: float
    log: bool
    integer: bool
    grid: tuple[float, ...] | None
    pow2_base: float | None

    @classmethod
    def of(cls, parameter: ParameterSpec) -> _Axis:
        integer = parameter.type == "int"
        grid = parameter.grid_values()
        if grid is not None:
            grid = sorted(int(v) if integer else v for v in grid)

        pow2 = parameter.grid_pow2
        if pow2 is not None:
            low, high, log = pow2.min, pow2.max, True
        else:
            bounds = parameter.effective_bounds()
            low, high, log = bounds.min, bounds.max, parameter.is_log
        if integer:
            low, high = int(low), int(high)

        return cls(
            name=parameter.name,
            low=low,
            high=high,
            log=log,
            integer=integer,
            grid=None if grid is None else tuple(grid),
            pow2_base=None if pow2 is None else pow2.base,
        )

    @property
    def current(self) -> ParameterBounds:
        return ParameterBounds(self.low, self.high, self.grid)

    def scaled(self, value: float) -> float:
        return math.log(value) if self.log else float(value)

    def unscaled(self, position: float) -> float:
        return math.exp(position) if self.log else position

    def unit(self, value: float) -> float:
        """The value's place in the current bounds: 0 at the min, 1 at the max."""
        low, high = self.scaled(self.low), self.scaled(self.high)
        width = high - low if high > low else 1.0
        return (self.scaled(value) - low) / width

    def nearest_member(self, value: float) -> float:
        """The grid member closest to an observed value, on the axis's scale."""
        assert self.grid is not None
        position = self.scaled(value)
        return min(self.grid, key=lambda m: abs(self.scaled(m) - position))


class KMeansEvaluator:
    """Refines bounds around the best K-means cluster of the best points.

    Settings are keyword arguments, the fields of ``KMeansSettings``;
    invalid ones raise SpecError naming ``evaluator_settings.<field>``.
    """

    def __init__(self, **settings: Any) -> None:
        try:
            self.settings = KMeansSettings.model_validate(settings)
        except ValidationError as error:
            raise settings_error(error) from None

    def refine(
        self, spec: ExperimentSpec, observations: Sequence[Observation]
    ) -> Refinement:
        """New bounds for every numeric parameter of ``spec`` (module docstring)."""
        settings = self.settings
        objective = spec.optimized_metrics[0]
        axes = [_Axis.of(p) for p in spec.parameters if p.type != "categorical"]
        self._check_hard_bounds(spec, axes)

        # Steps 1 and 2: the feasible points, then the best share of them.
        feasible = [o for o in observations if _usable(spec, objective, axes, o)]
        feasible.sort(key=lambda o: _score(objective, o))
        count = math.ceil(settings.keep_fraction * len(feasible) - _COUNT_SLACK)
        kept = feasible[: max(count, 1)]
        counts = (
            f"{len(kept)} of {len(feasible)} feasible observations "
            f"(of {len(observations)}) kept"
        )

        if not axes:
            why = "the spec has no numeric parameter to refine"
            return self._unchanged(spec, axes, why, f"{counts}; {why}")
        if len(kept) < settings.min_cluster_size:
            why = (
                f"only {counts}, fewer than min_cluster_size="
                f"{settings.min_cluster_size} needed to form a cluster"
            )
            return self._unchanged(spec, axes, why, f"bounds kept: {why}")

        # Steps 3 and 4: the cluster with the best mean objective.
        cluster, n_clusters = self._best_cluster(kept, axes, objective)

        # Step 5: move each bound towards the cluster, or past the bound.
        bounds: dict[str, ParameterBounds] = {}
        reasons: dict[str, str] = {}
        for parameter in spec.parameters:
            if parameter.type == "categorical":
                reasons[parameter.name] = "categorical: unchanged"
                continue
            axis = next(a for a in axes if a.name == parameter.name)
            values = [_number(o, axis) for o in cluster]
            new, reason = self._refine_axis(axis, values)
            bounds[axis.name] = new
            reasons[axis.name] = reason

        moved = [a.name for a in axes if bounds[a.name] != a.current]
        chosen_mean = float(np.mean([o.value(objective.name) for o in cluster]))
        summary = (
            f"{counts}; {n_clusters} cluster(s) of at least "
            f"{settings.min_cluster_size} points; chose the one with "
            f"{len(cluster)} points and mean {objective.name} "
            f"{chosen_mean:.6g}; bounds moved for {len(moved)} of "
            f"{len(axes)} numeric parameters"
        )
        stop = settings.stop_when_unchanged and not moved
        return Refinement(stop, bounds, reasons, summary)

    def _best_cluster(
        self,
        kept: list[Observation],
        axes: list[_Axis],
        objective: MetricSpec,
    ) -> tuple[list[Observation], int]:
        """The observations of the best cluster, and how many clusters formed.

        Points are clustered on their numeric parameters scaled to [0, 1]
        by the current bounds, so a wide axis does not outweigh a narrow one.
        """
        points = np.array([[a.unit(_number(o, a)) for a in axes] for o in kept])
        labels = self._cluster(points)
        n_clusters = int(labels.max()) + 1

        scores = np.array([_score(objective, o) for o in kept])
        means = [scores[labels == label].mean() for label in range(n_clusters)]
        best = int(np.argmin(means))
        cluster = [o for o, label in zip(kept, labels) if label == best]
        return cluster, n_clusters

    def _cluster(self, points: np.ndarray) -> np.ndarray:
        """Cluster labels ``0..k-1`` of ``points``, shape ``(n_points,)``.

        ``points`` has shape ``(n_points, n_axes)``.  k starts at
        ``n_points // min_cluster_size``, capped by the number of distinct
        points, and drops by one while some cluster is too small.
        """
        size = self.settings.min_cluster_size
        distinct = len(np.unique(points, axis=0))
        clusters = min(len(points) // size, distinct)

        while clusters > 1:
            model = KMeans(
                n_clusters=clusters,
                n_init=self.settings.n_init,
                random_state=self.settings.random_state,
            )
            labels: np.ndarray = model.fit_predict(points)
            if np.bincount(labels, minlength=clusters).min() >= size:
                return labels
            clusters -= 1
        return np.zeros(len(points), dtype=int)

    def _refine_axis(
        self, axis: _Axis, values: list[float]
    ) -> tuple[ParameterBounds, str]:
        """The new bounds of one parameter from the chosen cluster's values."""
        low, high = axis.scaled(axis.low), axis.scaled(axis.high)
        cluster_low = axis.scaled(min(values))
        cluster_high = axis.scaled(max(values))
        margin = self.settings.margin_fraction * (high - low)

        # Near a bound the optimum may lie beyond it: push the bound out.
        # Far from it, the space between is not worth searching: pull it in.
        if cluster_low - low <= margin:
            new_low, lower = low - margin, "near, widened"
        else:
            new_low, lower = cluster_low - margin, "far, narrowed"
        if high - cluster_high <= margin:
            new_high, upper = high + margin, "near, widened"
        else:
            new_high, upper = cluster_high + margin, "far, narrowed"

        new_min, new_max = axis.unscaled(new_low), axis.unscaled(new_high)
        scale = " in log space" if axis.log else ""
        steps = [
            f"cluster [{min(values):.6g}, {max(values):.6g}] in "
            f"[{axis.low:.6g}, {axis.high:.6g}], margin {margin:.4g}{scale}",
            f"min {lower} to {new_min:.6g}",
            f"max {upper} to {new_max:.6g}",
        ]

        if axis.integer:
            new_min = math.floor(round(new_min, _INT_DECIMALS))
            new_max = math.ceil(round(new_max, _INT_DECIMALS))
            steps.append(f"rounded outward to [{new_min}, {new_max}]")
        new_min, new_max = self._clip(axis, new_min, new_max, steps)

        if not new_min < new_max:
            return axis.current, (
                f"unchanged: {'; '.join(steps)}; that range is empty, so the "
                f"bounds stay [{axis.low:.6g}, {axis.high:.6g}]"
            )
        if axis.grid is None:
            return ParameterBounds(new_min, new_max), "; ".join(steps)
        return self._refine_grid(axis, new_min, new_max, values, steps)

    def _clip(
        self, axis: _Axis, low: float, high: float, steps: list[str]
    ) -> tuple[float, float]:
        """``[low, high]`` inside the parameter's hard limits, if it has any."""
        limits = self.settings.hard_bounds.get(axis.name)
        if limits is None:
            return low, high

        # An int's limits round inward, so the bounds stay whole numbers.
        floor = limits.min
        if floor is not None and axis.integer:
            floor = math.ceil(round(floor, _INT_DECIMALS))
        ceiling = limits.max
        if ceiling is not None and axis.integer:
            ceiling = math.floor(round(ceiling, _INT_DECIMALS))

        if floor is not None and low < floor:
            low = floor
            steps.append(f"min clipped to the hard limit {floor:.6g}")
        if ceiling is not None and high > ceiling:
            high = ceiling
            steps.append(f"max clipped to the hard limit {ceiling:.6g}")
        return low, high

    def _refine_grid(
        self,
        axis: _Axis,
        low: float,
        high: float,
        values: list[float],
        steps: list[str],
    ) -> tuple[ParameterBounds, str]:
        """The grid members a grid parameter keeps inside ``[low, high]``."""
        members = self._grid_members(axis, low, high)

        # Hard limits can cut the cluster's own members away; a grid needs
        # members to search, so those the cluster used come back.
        used = sorted({axis.nearest_member(v) for v in values})
        if len(members) < 2 and not set(used) <= set(members):
            low, high = min(low, used[0]), max(high, used[-1])
            members = self._grid_members(axis, low, high)
            members = tuple(sorted(set(members) | set(used)))
            steps.append("kept the cluster's members despite the limits")

        listed = ", ".join(f"{m:.6g}" for m in members)
        steps.append(f"grid keeps [{listed}]")
        return ParameterBounds(low, high, members), "; ".join(steps)

    def _grid_members(self, axis: _Axis, low: float, high: float) -> tuple[float, ...]:
        if axis.pow2_base is not None:
            pow2 = Pow2Grid(base=axis.pow2_base, min=low, max=high)
            return tuple(pow2.expand())
        assert axis.grid is not None
        return tuple(m for m in axis.grid if inside_bounds(m, low, high))

    def _unchanged(
        self, spec: ExperimentSpec, axes: list[_Axis], why: str, summary: str
    ) -> Refinement:
        """Every bound as it was, each reason saying why."""
        reasons = {
            p.name: f"categorical: unchanged; {why}"
            if p.type == "categorical"
            else f"unchanged: {why}"
            for p in spec.parameters
        }
        bounds = {axis.name: axis.current for axis in axes}
        stop = False
        return Refinement(stop, bounds, reasons, summary)

    def check(self, spec: ExperimentSpec) -> None:
        """Refuse settings that cannot serve ``spec``'s first round.

        Each hard limit must contain the parameter's starting bounds: the
        limits are outer walls that refinements clip to, so starting bounds
        that cross one are a mistake (``refine`` itself copes with any
        bounds, keeping them where clipping would invert them).
        """
        axes = [_Axis.of(p) for p in spec.parameters if p.type != "categorical"]
        self._check_hard_bounds(spec, axes)
        by_name = {axis.name: axis for axis in axes}
        for name, limits in self.settings.hard_bounds.items():
            axis = by_name[name]
            below = limits.min is not None and axis.low < limits.min
            above = limits.max is not None and axis.high > limits.max
            if below or above:
                raise SpecError(
                    f"{SETTINGS_FIELD}.hard_bounds.{name}: the limits "
                    f"[{_limit(limits.min)}, {_limit(limits.max)}] do not "
                    f"contain the parameter's bounds [{axis.low:g}, "
                    f"{axis.high:g}]; widen the limits or narrow the bounds"
                )

    def _check_hard_bounds(self, spec: ExperimentSpec, axes: list[_Axis]) -> None:
        numeric = [axis.name for axis in axes]
        for name in self.settings.hard_bounds:
            if name not in numeric:
                raise SpecError(
                    f"{SETTINGS_FIELD}.hard_bounds.{name}: experiment "
                    f"{spec.name!r} has no numeric parameter of that name; "
                    f"the numeric parameters are {numeric}"
                )


def _limit(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


def _usable(
    spec: ExperimentSpec,
    objective: MetricSpec,
    axes: list[_Axis],
    observation: Observation,
) -> bool:
    """Feasible, with the objective and a number for each numeric parameter."""
    if not is_feasible(spec, observation):
        return False
    if observation.value(objective.name) is None:
        return False
    for axis in axes:
        value = observation.assignments.get(axis.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if axis.log and value <= 0:
            return False
    return True


def _score(objective: MetricSpec, observation: Observation) -> float:
    """The objective on a scale where smaller is better (usable points only)."""
    value = observation.value(objective.name)
    assert value is not None
    return objective.to_minimize(value)


def _number(observation: Observation, axis: _Axis) -> float:
    return float(observation.assignments[axis.name])
