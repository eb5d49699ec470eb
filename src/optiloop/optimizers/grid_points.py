"""A plain grid search over an experiment's space, as an experiment spec.

``grid_search_spec(spec, n)`` rewrites every parameter of a spec into the
values a grid of ``n`` points per parameter visits, each as an explicit
``grid``, and sets ``type: grid`` with a budget of every point.  The grid
optimizer then walks exactly those points, so a grid search is stored, run
and compared like any other experiment.  The values per parameter:

- a double: ``n`` values evenly spaced from its min to its max, both ends
  included; on a log scale evenly spaced in log space (1, 10, 100 for
  [1, 100] and ``n = 3``);
- an int: the same even spacing rounded to the nearest integer (halves
  up), repeats dropped, so a range with fewer than ``n`` integers gives
  each of them once;
- a grid (``grid`` or ``grid_pow2``): every member when it has at most
  ``n``, else ``n`` members evenly spread over it, both ends included;
- a categorical: every category, whatever ``n`` (there is no order along
  which to thin them).

One point per parameter is the middle of each range (the geometric middle
on a log scale, the lower middle member of an even grid).
"""

from __future__ import annotations

import math
from typing import Any

from optiloop.errors import SpecError
from optiloop.experiment import (
    MAX_NAME_LENGTH,
    ExperimentSpec,
    ParameterSpec,
    parse_spec,
)
from optiloop.space import MAX_GRID_POINTS, DoubleParameter, Value

# Appended to the searched experiment's name.
_SUFFIX = "-grid"


def axis_values(parameter: ParameterSpec, points: int) -> list[Value]:
    """The values a grid of ``points`` per parameter visits, sorted."""
    if points < 1:
        raise SpecError(
            f"points per parameter must be at least 1, got {points}; pass 2 "
            "or more for a grid that reaches both ends of each range"
        )
    if parameter.type == "categorical":
        return list(parameter.categories)

    members = parameter.grid_values()
    if members is not None:
        ordered = sorted(members)
        if parameter.type == "int":
            return [int(m) for m in _spread(ordered, points)]
        return list(_spread(ordered, points))

    bounds = parameter.effective_bounds()
    if parameter.type == "int":
        steps = _fractions(points)
        rounded = {
            math.floor(bounds.min + u * (bounds.max - bounds.min) + 0.5) for u in steps
        }
        return sorted(int(v) for v in rounded)

    double = DoubleParameter(parameter.name, bounds.min, bounds.max, parameter.is_log)
    values: list[Value] = [double.from_unit(u) for u in _fractions(points)]
    if points > 1:
        # exp(log(x)) can miss x by an ulp; the ends are the bounds as typed.
        values[0], values[-1] = bounds.min, bounds.max
    return values


def grid_search_spec(spec: ExperimentSpec, points: int) -> ExperimentSpec:
    """``spec`` as a grid search of ``points`` values per parameter.

    The result has ``type: grid``, one explicit grid per numeric parameter,
    the name ``<name>-grid``, an observation budget of every point and
    ``points`` in its metadata (``grid_points_per_parameter``); metrics,
    seeds, parallelism and the job stay as they were.  Raises SpecError when
    the grid would exceed the grid optimizer's limit of points.
    """
    axes = {p.name: axis_values(p, points) for p in spec.parameters}
    total = math.prod(len(values) for values in axes.values())
    if total > MAX_GRID_POINTS:
        sizes = " x ".join(f"{name}: {len(v)}" for name, v in axes.items())
        raise SpecError(
            f"--points-per-parameter: {points} points per parameter make a grid "
            f"of {total:,} points ({sizes}), more than the limit of "
            f"{MAX_GRID_POINTS:,}; pass fewer points per parameter"
        )

    data = spec.to_dict()
    data["parameters"] = [_as_grid(p, axes[p.name]) for p in spec.parameters]
    data["type"] = "grid"
    data["name"] = f"{spec.name[: MAX_NAME_LENGTH - len(_SUFFIX)]}{_SUFFIX}"
    data["observation_budget"] = total
    data["metadata"] = {**(spec.metadata or {}), "grid_points_per_parameter": points}
    return parse_spec(data)


def _as_grid(parameter: ParameterSpec, values: list[Value]) -> dict[str, Any]:
    """The parameter's spec entry with ``values`` as its explicit grid."""
    if parameter.type == "categorical":
        return parameter.model_dump(mode="json", by_alias=True, exclude_none=True)
    entry: dict[str, Any] = {
        "name": parameter.name,
        "type": parameter.type,
        "grid": values,
    }
    if parameter.is_log:
        entry["transformation"] = "log"
    # Keep the searched range on record; a pow2 grid's range is its own.
    if parameter.bounds is not None:
        entry["bounds"] = parameter.bounds.model_dump()
    return entry


def _fractions(points: int) -> list[float]:
    """``points`` evenly spaced positions on [0, 1], ends included."""
    if points == 1:
        return [0.5]
    return [i / (points - 1) for i in range(points)]


def _spread(members: list[float], points: int) -> list[float]:
    """``points`` members evenly spread over the sorted ``members``, or all."""
    if len(members) <= points:
        return members
    if points == 1:
        return [members[(len(members) - 1) // 2]]
    last = len(members) - 1
    indices = [math.floor(i * last / (points - 1) + 0.5) for i in range(points)]
    return [members[i] for i in indices]
