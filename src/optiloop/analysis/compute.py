"""Compute accounting: device-hours per cluster and round; two searches compared.

Every observation the runner stores says what its seeds cost:
``device_seconds`` (wall seconds of every run and retry, times the devices
each run held) and ``cluster`` (the executor's label, such as ``k8s`` or
``baremetal``).  Observations stored before those fields existed carry only
``compute_seconds``; they count as one device on the cluster ``local``.  An
observation with neither (say, one a user reported by hand) costs nothing
here and is counted apart as unmeasured, so a total never looks complete
when it is not.  Failed observations count like any other: their compute was
spent.  A campaign copies earlier rounds' observations into the next round
to warm-start it (``metadata["warm_start"]``); a copy is skipped, since its
compute was counted once, in the round that spent it.

A campaign (or a grid search) is a list of labelled groups of observations,
one group per experiment: ``("round 1", [...])``, ``("validation", [...])``.
``compute_usage`` folds them into device-hours per group and cluster;
``compare`` sets two of them side by side as the reference workflow reports
a search:

- compute: device-hours per cluster, then the total, one column per search;
- objective: each search's answer (its best validated mean where it
  validated points, else its best feasible mean) and how much it
  improves on a baseline, in percent of the baseline.  The baseline is one
  of the two searches, and optionally also a reference value such as the
  converge epoch of the recipe one started from.

Every function here is pure: plain records in, plain records out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from optiloop.errors import SpecError
from optiloop.experiment import ExperimentSpec, Observation, best_observations

# The cluster label of observations that do not name one.
DEFAULT_CLUSTER = "local"

# The group label whose observations are a campaign's re-validated points.
VALIDATION = "validation"

SECONDS_PER_HOUR = 3600.0


def device_seconds(metadata: Mapping[str, Any]) -> float | None:
    """The device-seconds an observation cost, or None when it recorded none.

    ``device_seconds`` when present, else ``compute_seconds`` on one device.
    """
    for key in ("device_seconds", "compute_seconds"):
        value = metadata.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value) and value >= 0:
            return float(value)
    return None


def cluster_of(metadata: Mapping[str, Any]) -> str:
    """The cluster an observation ran on; ``local`` when it does not say."""
    cluster = metadata.get("cluster")
    if isinstance(cluster, str) and cluster.strip():
        return cluster
    return DEFAULT_CLUSTER


@dataclass(frozen=True)
class ComputeUsage:
    """Device-hours of a search, by group (round) and cluster.

    ``hours[group][cluster]`` is in device-hours.  Groups keep the order
    they were given in; ``unmeasured`` counts observations with no compute
    record, which add nothing to the hours.
    """

    hours: dict[str, dict[str, float]]
    observations: int
    unmeasured: int = 0

    @property
    def by_cluster(self) -> dict[str, float]:
        """Device-hours per cluster over every group, clusters sorted."""
        totals: dict[str, float] = {}
        for per_cluster in self.hours.values():
            for cluster, hours in per_cluster.items():
                totals[cluster] = totals.get(cluster, 0.0) + hours
        return dict(sorted(totals.items()))

    @property
    def by_group(self) -> dict[str, float]:
        """Device-hours per group (round), in the groups' order."""
        return {
            group: math.fsum(per_cluster.values())
            for group, per_cluster in self.hours.items()
        }

    @property
    def total(self) -> float:
        return math.fsum(self.by_group.values())


Group = tuple[str, Sequence[Observation]]


def compute_usage(groups: Sequence[Group]) -> ComputeUsage:
    """Device-hours per group and cluster of labelled groups of observations.

    Two groups with the same label (say, a round continued as a second
    experiment) add up.
    """
    seconds: dict[str, dict[str, float]] = {}
    observations = unmeasured = 0
    for label, members in groups:
        per_cluster = seconds.setdefault(label, {})
        for observation in members:
            metadata = observation.metadata or {}
            if metadata.get("warm_start"):
                continue
            observations += 1
            spent = device_seconds(metadata)
            if spent is None:
                unmeasured += 1
                continue
            cluster = cluster_of(metadata)
            per_cluster[cluster] = per_cluster.get(cluster, 0.0) + spent

    hours = {
        label: {
            cluster: value / SECONDS_PER_HOUR
            for cluster, value in sorted(per_cluster.items())
        }
        for label, per_cluster in seconds.items()
    }
    return ComputeUsage(hours, observations, unmeasured)


@dataclass(frozen=True)
class Answer:
    """A search's answer: its best point's mean and spread of the metric.

    ``source`` says where it came from: ``validation`` when the point was
    re-run with more seeds, ``search`` when it is the best mean seen during
    the search (optimistic: the best of many noisy means).  ``feasible`` is
    False for a validated point that broke a threshold or had a seed miss
    the converge target.
    """

    value: float
    stddev: float | None
    assignments: Mapping[str, Any]
    source: Literal["validation", "search"]
    feasible: bool = True


@dataclass(frozen=True)
class SearchRecord:
    """What ``compare`` needs of one campaign or grid search."""

    name: str
    spec: ExperimentSpec
    groups: Sequence[Group]
    usage: ComputeUsage = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "usage", compute_usage(self.groups))


def optimized_metric(spec: ExperimentSpec) -> tuple[str, str]:
    """The one optimized metric's name and objective; SpecError for two."""
    optimized = spec.optimized_metrics
    if len(optimized) != 1:
        names = [m.name for m in optimized]
        raise SpecError(
            f"metrics: comparing searches needs exactly one optimized metric, "
            f"got {names}; compare searches of a single objective"
        )
    return optimized[0].name, optimized[0].objective


def search_answer(spec: ExperimentSpec, groups: Sequence[Group]) -> Answer | None:
    """A search's answer: what it validated if it validated, else its best.

    In order: the best feasible validated mean; when no validated point is
    feasible (say, one of its 10 seeds missed the target), the best
    validated mean all the same, marked infeasible, since it says more about
    the point than the few lucky seeds that made it look best; without
    validation, the best feasible mean of the search.  None when there is
    nothing of the kind.
    """
    metric, objective = optimized_metric(spec)
    validated = [o for label, obs in groups if label == VALIDATION for o in obs]
    searched = [o for label, obs in groups if label != VALIDATION for o in obs]

    feasible = best_observations(spec, validated)
    if feasible:
        return _answer(feasible[0], metric, "validation", feasible=True)
    measured = [o for o in validated if o.value(metric) is not None]
    if measured:
        sign = 1.0 if objective == "minimize" else -1.0
        best = min(measured, key=lambda o: sign * (o.value(metric) or 0.0))
        return _answer(best, metric, "validation", feasible=False)
    feasible = best_observations(spec, searched)
    if feasible:
        return _answer(feasible[0], metric, "search", feasible=True)
    return None


def _answer(
    observation: Observation,
    metric: str,
    source: Literal["validation", "search"],
    feasible: bool,
) -> Answer:
    value = observation.value(metric)
    if value is None:  # never: callers pass observations that measured it
        raise ValueError(f"observation {observation.id} has no {metric}")
    stddev = observation.stddev(metric)
    return Answer(value, stddev, observation.assignments, source, feasible)


def improvement_percent(baseline: float, value: float, objective: str) -> float | None:
    """How much ``value`` improves on ``baseline``, in percent of the baseline.

    Positive is better: a reduction for a minimized metric (converge epoch
    40 against 50 is 20.0), a gain for a maximized one.  None when the
    baseline is 0, where a percentage means nothing.
    """
    if baseline == 0:
        return None
    better_by = baseline - value if objective == "minimize" else value - baseline
    return 100.0 * better_by / abs(baseline)


@dataclass(frozen=True)
class ComputeRow:
    cluster: str  # a cluster's label, or "total"
    hours: tuple[float, ...]  # one per search, in the order given


@dataclass(frozen=True)
class ObjectiveRow:
    name: str
    answer: Answer | None
    versus_baseline: float | None  # percent; None for the baseline itself
    versus_reference: float | None  # percent; None without a reference value


@dataclass(frozen=True)
class Comparison:
    """The two tables of ``optiloop compare``, as plain data."""

    names: tuple[str, ...]
    metric: str
    objective: str
    baseline: str
    reference_value: float | None
    compute: tuple[ComputeRow, ...]
    objectives: tuple[ObjectiveRow, ...]
    unmeasured: tuple[int, ...]
    by_group: tuple[dict[str, float], ...]  # device-hours per round, per search

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data, one entry per search under its name."""
        return {
            "metric": self.metric,
            "objective": self.objective,
            "baseline": self.baseline,
            "reference_value": self.reference_value,
            "device_hours": {
                row.cluster: dict(zip(self.names, row.hours)) for row in self.compute
            },
            "device_hours_by_round": dict(zip(self.names, self.by_group)),
            "unmeasured_observations": dict(zip(self.names, self.unmeasured)),
            "answers": {
                row.name: {
                    "value": row.answer.value if row.answer else None,
                    "value_stddev": row.answer.stddev if row.answer else None,
                    "assignments": dict(row.answer.assignments) if row.answer else None,
                    "source": row.answer.source if row.answer else None,
                    "feasible": row.answer.feasible if row.answer else None,
                    "improvement_vs_baseline_percent": row.versus_baseline,
                    "improvement_vs_reference_percent": row.versus_reference,
                }
                for row in self.objectives
            },
        }


def compare(
    searches: Sequence[SearchRecord],
    baseline: int = 0,
    reference_value: float | None = None,
) -> Comparison:
    """The compute and objective tables of searches over the same metric.

    ``baseline`` is the index of the search the others are measured
    against; ``reference_value`` an optional value of the metric (say, the
    converge epoch of the untuned recipe) every search is also measured
    against.  Raises SpecError when the searches optimize different metrics
    or a name repeats.
    """
    if not 0 <= baseline < len(searches):
        raise ValueError(f"baseline index {baseline} is not one of the searches")
    names = tuple(s.name for s in searches)
    if len(set(names)) != len(names):
        raise SpecError(f"the compared searches need distinct names, got {names}")
    metric, objective = optimized_metric(searches[0].spec)
    for search in searches[1:]:
        if optimized_metric(search.spec) != (metric, objective):
            other = optimized_metric(search.spec)
            raise SpecError(
                f"metrics: {search.name} optimizes {other[0]} ({other[1]}) but "
                f"{searches[0].name} optimizes {metric} ({objective}); compare "
                "searches of the same objective"
            )

    clusters = sorted({c for s in searches for c in s.usage.by_cluster})
    compute_rows = [
        ComputeRow(c, tuple(s.usage.by_cluster.get(c, 0.0) for s in searches))
        for c in clusters
    ]
    compute_rows.append(ComputeRow("total", tuple(s.usage.total for s in searches)))

    answers = [search_answer(s.spec, s.groups) for s in searches]
    base_answer = answers[baseline]
    objective_rows = []
    for index, (search, answer) in enumerate(zip(searches, answers)):
        versus_baseline = None
        if answer is not None and base_answer is not None and index != baseline:
            versus_baseline = improvement_percent(
                base_answer.value, answer.value, objective
            )
        versus_reference = None
        if answer is not None and reference_value is not None:
            versus_reference = improvement_percent(
                reference_value, answer.value, objective
            )
        objective_rows.append(
            ObjectiveRow(search.name, answer, versus_baseline, versus_reference)
        )

    return Comparison(
        names=names,
        metric=metric,
        objective=objective,
        baseline=names[baseline],
        reference_value=reference_value,
        compute=tuple(compute_rows),
        objectives=tuple(objective_rows),
        unmeasured=tuple(s.usage.unmeasured for s in searches),
        by_group=tuple(s.usage.by_group for s in searches),
    )
