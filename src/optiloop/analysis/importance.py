"""How much each parameter drives each metric, from a decision tree.

For every metric of the spec, a regression tree is fitted on the observations
that carry a value for it, and its impurity-based importances say which
parameters the tree split on, and how much each split reduced the variance of
the metric.  The shares are normalized so that one metric's shares sum to 1.

Inputs, of shape ``(n_observations, n_columns)``:

- a numeric parameter is one column, scaled to its bounds so the search
  space spans [0, 1] (in log space on a log scale);
- a categorical parameter is one 0/1 column per category, and the shares of
  its columns are summed back into one share for the parameter.

Scaling changes nothing a tree does (it splits on order, and every monotone
map keeps the order); it only keeps the inputs readable when debugging.

Failed observations carry no values and take no part.  Infeasible ones do:
a run that missed a threshold still shows how the parameters move a metric.

Known shortcomings: impurity importances favour parameters with many
distinct values over those with few (a two-way categorical can look less
important than it is), and two parameters that move together share their
importance in a way the tree decides arbitrarily.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from optiloop.experiment import ExperimentSpec, Observation, ParameterSpec

logger = logging.getLogger(__name__)

# Below this many observations a tree has too few splits to rank anything.
MIN_OBSERVATIONS = 5

# Deep enough for interactions of a few parameters, shallow enough that a
# small experiment is not fitted down to its seed noise.
MAX_DEPTH = 6

# One observation per leaf would let a single noisy run earn a split.
MIN_SAMPLES_LEAF = 2

# Fixed so that the same observations always give the same shares: ties
# between equally good splits are broken by the tree's random state.
RANDOM_STATE = 0


@dataclass(frozen=True)
class Importance:
    """The share of each parameter in explaining one metric; shares sum to 1."""

    metric: str
    shares: dict[str, float]
    n_observations: int


@dataclass(frozen=True)
class NotEnoughData:
    """Why no importance could be computed for one metric."""

    metric: str
    reason: str


MetricImportance = Importance | NotEnoughData


def parameter_importance(
    spec: ExperimentSpec,
    observations: Sequence[Observation],
    *,
    min_observations: int = MIN_OBSERVATIONS,
) -> list[MetricImportance]:
    """The importance of every parameter for every metric, in the spec's order.

    A metric that cannot be explained (too few observations, all values
    equal, no parameter that varies) gives a ``NotEnoughData`` with the
    reason instead of an error.
    """
    return [
        metric_importance(spec, observations, metric.name, min_observations)
        for metric in spec.metrics
    ]


def metric_importance(
    spec: ExperimentSpec,
    observations: Sequence[Observation],
    metric: str,
    min_observations: int = MIN_OBSERVATIONS,
) -> MetricImportance:
    """The importance of every parameter for one metric."""
    from sklearn.tree import DecisionTreeRegressor

    names = [p.name for p in spec.parameters]
    usable = [
        o
        for o in observations
        if not o.failed
        and o.value(metric) is not None
        and all(name in o.assignments for name in names)
    ]
    if len(usable) < min_observations:
        return NotEnoughData(
            metric,
            f"{len(usable)} observations with a value for {metric}, "
            f"need at least {min_observations}",
        )

    targets = np.array([o.value(metric) for o in usable], dtype=float)
    if np.ptp(targets) == 0.0:
        return NotEnoughData(
            metric, f"every observation has the same {metric} ({targets[0]:g})"
        )

    inputs, owners = encode_parameters(spec.parameters, usable)
    tree = DecisionTreeRegressor(
        max_depth=MAX_DEPTH,
        min_samples_leaf=MIN_SAMPLES_LEAF,
        random_state=RANDOM_STATE,
    )
    tree.fit(inputs, targets)

    # Fold the one-hot columns of a categorical back into its parameter.
    totals = dict.fromkeys(names, 0.0)
    for owner, column_share in zip(owners, tree.feature_importances_):
        totals[owner] += float(column_share)

    # A tree that could not split (every parameter constant, or every split
    # leaving a leaf below the minimum size) explains nothing.
    total = sum(totals.values())
    if total <= 0.0:
        return NotEnoughData(
            metric, f"no split of the parameters separates the values of {metric}"
        )

    shares = {name: value / total for name, value in totals.items()}
    logger.debug("importance of %d parameters for %s fitted", len(names), metric)
    return Importance(metric, shares, len(usable))


def encode_parameters(
    parameters: Sequence[ParameterSpec], observations: Sequence[Observation]
) -> tuple[np.ndarray, list[str]]:
    """The tree's inputs and, per column, the parameter it came from.

    Returns an array of shape ``(n_observations, n_columns)`` and a list of
    ``n_columns`` parameter names.
    """
    columns: list[np.ndarray] = []
    owners: list[str] = []
    for parameter in parameters:
        values = [o.assignments[parameter.name] for o in observations]
        if parameter.type == "categorical":
            # Values from an older round may be missing from the spec's list.
            categories = list(parameter.categories)
            categories += sorted({str(v) for v in values} - set(categories))
            for category in categories:
                columns.append(np.array([str(v) == category for v in values], float))
                owners.append(parameter.name)
        else:
            columns.append(_unit_scale(parameter, [float(v) for v in values]))
            owners.append(parameter.name)
    return np.column_stack(columns), owners


def _unit_scale(parameter: ParameterSpec, values: list[float]) -> np.ndarray:
    """Values mapped linearly (or in log space) so the bounds become 0 and 1.

    Values outside the bounds, from an earlier round with wider ones, land
    outside [0, 1], which keeps their order.
    """
    bounds = parameter.effective_bounds()
    low, high = bounds.min, bounds.max
    scaled = np.array(values, dtype=float)
    if parameter.is_log:
        scaled, low, high = np.log(scaled), math.log(low), math.log(high)
    if high == low:
        return scaled - low
    return (scaled - low) / (high - low)
