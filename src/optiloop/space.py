"""Search spaces: parameter kinds and the map between values and the unit cube.

Every optimizer works in the unit cube ``[0, 1]^d`` with one coordinate per
parameter, and this module turns a point of the cube into an assignment (a
dict from parameter name to value) and back.  The map is chosen so that a
uniform draw in the cube is a uniform draw over the parameter's values:

- a double maps linearly, or linearly in ``log(value)`` on a log scale;
- an int on ``[low, high]`` splits the coordinate into ``high - low + 1``
  equal bins, one per integer, so the end values are as likely as the middle
  ones (rounding ``low + u * (high - low)`` would halve their chance);
- a grid (explicit values, e.g. the powers of two of weight decay) and a
  categorical split the coordinate into one equal bin per value.

A value maps back to the centre of its bin.  Values that come out of
``from_unit`` always lie exactly inside the bounds: doubles are clipped, ints
are Python ints and grid values are the grid's own members.

Checking a spec is the experiment layer's job (pydantic); the classes here
assume valid input.  ``Space.check_assignments`` checks a user's assignments,
since those arrive from outside at run time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np

from optiloop.errors import SpecError

Value = int | float | str
Assignments = dict[str, Value]

# Grid search enumerates every point; a grid larger than this would take
# more runs than any budget affords and seconds to walk at every call.
MAX_GRID_POINTS = 100_000

# Relative tolerance under which a user's value counts as a grid member or a
# bound, so that 4e-4 typed by hand matches 1e-4 * 2**2.
_MATCH_RTOL = 1e-9


@dataclass(frozen=True)
class DoubleParameter:
    """A real parameter on ``[low, high]``, optionally on a log scale."""

    name: str
    low: float
    high: float
    log: bool = False

    @property
    def n_values(self) -> int | None:
        return None

    def from_unit(self, u: float) -> float:
        if self.log:
            log_low, log_high = math.log(self.low), math.log(self.high)
            value = math.exp(log_low + u * (log_high - log_low))
        else:
            value = self.low + u * (self.high - self.low)
        return min(max(value, self.low), self.high)

    def to_unit(self, value: Value) -> float:
        x = float(value)
        if self.log:
            log_low = math.log(self.low)
            return (math.log(x) - log_low) / (math.log(self.high) - log_low)
        return (x - self.low) / (self.high - self.low)

    def check(self, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad_value(self.name, value, "a number")
        x = float(value)
        if not math.isfinite(x):
            raise _bad_value(self.name, value, "a finite number")
        slack = _MATCH_RTOL * max(abs(self.low), abs(self.high))
        if not self.low - slack <= x <= self.high + slack:
            raise SpecError(
                f"assignments.{self.name}: value must lie within bounds "
                f"[{self.low}, {self.high}], got {value!r}; "
                "suggest a value inside the bounds"
            )
        return min(max(x, self.low), self.high)


@dataclass(frozen=True)
class IntParameter:
    """An integer parameter on ``[low, high]``, both ends included."""

    name: str
    low: int
    high: int

    @property
    def n_values(self) -> int:
        return self.high - self.low + 1

    def from_unit(self, u: float) -> int:
        index = min(math.floor(u * self.n_values), self.n_values - 1)
        return self.low + max(index, 0)

    def to_unit(self, value: Value) -> float:
        return (int(value) - self.low + 0.5) / self.n_values

    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1))

    def check(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad_value(self.name, value, "an integer")
        if not math.isfinite(value) or value != int(value):
            raise _bad_value(self.name, value, "an integer")
        if not self.low <= int(value) <= self.high:
            raise SpecError(
                f"assignments.{self.name}: value must lie within bounds "
                f"[{self.low}, {self.high}], got {value!r}; "
                "suggest a value inside the bounds"
            )
        return int(value)


@dataclass(frozen=True)
class GridParameter:
    """A numeric parameter that takes only the listed values (sorted)."""

    name: str
    grid: tuple[int, ...] | tuple[float, ...]
    log: bool = False

    @property
    def n_values(self) -> int:
        return len(self.grid)

    @property
    def low(self) -> float:
        return self.grid[0]

    @property
    def high(self) -> float:
        return self.grid[-1]

    def from_unit(self, u: float) -> int | float:
        return self.grid[_bin(u, len(self.grid))]

    def to_unit(self, value: Value) -> float:
        return (self._index(value) + 0.5) / len(self.grid)

    def values(self) -> list[int | float]:
        return list(self.grid)

    def check(self, value: object) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad_value(self.name, value, "a number")
        try:
            return self.grid[self._index(value)]
        except ValueError:
            raise SpecError(
                f"assignments.{self.name}: value must be a member of the grid "
                f"{list(self.grid)}, got {value!r}; use one of the grid values"
            ) from None

    def _index(self, value: Value) -> int:
        x = float(value)
        for index, member in enumerate(self.grid):
            if math.isclose(x, member, rel_tol=_MATCH_RTOL, abs_tol=0.0):
                return index
        raise ValueError(f"{value!r} is not in the grid of {self.name}")


@dataclass(frozen=True)
class CategoricalParameter:
    """A parameter that takes one of the named categories."""

    name: str
    categories: tuple[str, ...]

    @property
    def n_values(self) -> int:
        return len(self.categories)

    def from_unit(self, u: float) -> str:
        return self.categories[_bin(u, len(self.categories))]

    def to_unit(self, value: Value) -> float:
        return (self.categories.index(str(value)) + 0.5) / len(self.categories)

    def values(self) -> list[str]:
        return list(self.categories)

    def check(self, value: object) -> str:
        if not isinstance(value, str) or value not in self.categories:
            raise SpecError(
                f"assignments.{self.name}: value must be one of "
                f"{list(self.categories)}, got {value!r}; "
                "use one of the categorical values"
            )
        return value


Parameter = DoubleParameter | IntParameter | GridParameter | CategoricalParameter


class Space:
    """An ordered set of parameters: coordinate ``i`` of the cube is parameter ``i``.

    Shapes: a batch of points in the cube is an array of shape
    ``(n_points, n_parameters)``.
    """

    def __init__(self, parameters: Sequence[Parameter]) -> None:
        self.parameters: tuple[Parameter, ...] = tuple(parameters)
        self.names: tuple[str, ...] = tuple(p.name for p in self.parameters)

    def __len__(self) -> int:
        return len(self.parameters)

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self.parameters)

    def __getitem__(self, name: str) -> Parameter:
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        raise KeyError(name)

    @property
    def size(self) -> int | None:
        """The number of distinct points, or None if a double is continuous."""
        total = 1
        for parameter in self.parameters:
            if parameter.n_values is None:
                return None
            total *= parameter.n_values
        return total

    def from_unit(self, point: Sequence[float] | np.ndarray) -> Assignments:
        """The assignments at one point of the cube, of shape ``(n_parameters,)``."""
        return {p.name: p.from_unit(float(u)) for p, u in zip(self.parameters, point)}

    def to_unit(self, assignments: Mapping[str, Value]) -> np.ndarray:
        """The cube coordinates of checked assignments, shape ``(n_parameters,)``."""
        return np.array([p.to_unit(assignments[p.name]) for p in self.parameters])

    def to_unit_many(self, batch: Sequence[Mapping[str, Value]]) -> np.ndarray:
        """Cube coordinates of several assignments, ``(n_points, n_parameters)``."""
        if not batch:
            return np.empty((0, len(self.parameters)))
        return np.vstack([self.to_unit(a) for a in batch])

    def key(self, assignments: Mapping[str, Value]) -> tuple[Value, ...]:
        """A hashable identity of a point, for telling repeated points apart."""
        return tuple(assignments[name] for name in self.names)

    def check_assignments(self, assignments: Mapping[str, object]) -> Assignments:
        """Validate user-given assignments and return them in canonical form.

        Raises SpecError naming the parameter when one is missing, unknown,
        of the wrong type or off the space.
        """
        unknown = sorted(set(assignments) - set(self.names))
        if unknown:
            raise SpecError(
                f"assignments.{unknown[0]}: no such parameter in this "
                f"experiment; the parameters are {list(self.names)}"
            )
        missing = [name for name in self.names if name not in assignments]
        if missing:
            raise SpecError(
                f"assignments.{missing[0]}: a value is required for every "
                f"parameter, got none for {missing}; add the missing values"
            )
        return {p.name: p.check(assignments[p.name]) for p in self.parameters}

    def check_grid_size(self, doubles_per_axis: int = 5) -> None:
        """Refuse a grid of more than ``MAX_GRID_POINTS`` points.

        A continuous double counts ``doubles_per_axis`` values, as in
        ``finite_points``.
        """
        sizes = {
            p.name: doubles_per_axis if p.n_values is None else p.n_values
            for p in self.parameters
        }
        total = math.prod(sizes.values())
        if total <= MAX_GRID_POINTS:
            return
        product = " x ".join(f"{name}: {size}" for name, size in sizes.items())
        raise SpecError(
            f"type: grid search would need {total:,} points ({product} "
            f"values), more than the limit of {MAX_GRID_POINTS:,}; narrow "
            "bounds or grids, or use type: sobol or offline"
        )

    def finite_points(self, doubles_per_axis: int = 5) -> Iterator[Assignments]:
        """Every point of the space, in a fixed order, for grid search.

        A continuous double gets ``doubles_per_axis`` evenly spaced values
        (evenly in log space on a log scale), ends included.
        """
        axes: list[list[Value]] = []
        for parameter in self.parameters:
            if isinstance(parameter, DoubleParameter):
                steps = np.linspace(0.0, 1.0, doubles_per_axis)
                axes.append([parameter.from_unit(float(u)) for u in steps])
            else:
                axes.append(list(parameter.values()))
        for combination in product(*axes):
            yield dict(zip(self.names, combination))


def _bin(u: float, n: int) -> int:
    """The index of the equal-width bin of ``[0, 1]`` that holds ``u``."""
    return min(max(math.floor(u * n), 0), n - 1)


def _bad_value(name: str, value: object, wanted: str) -> SpecError:
    return SpecError(
        f"assignments.{name}: value must be {wanted}, got {value!r}; "
        f"pass {wanted} for {name}"
    )
