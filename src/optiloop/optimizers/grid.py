"""Grid search: every point of the space's grid once, in a fixed order.

The grid is ``Space.finite_points()``: every value of each int, grid and
categorical parameter, and evenly spaced values of each continuous double.
A call returns the next points of that order that are neither observed nor
pending, so parallel workers never share a point; it returns fewer than asked
near the end and none once the grid is exhausted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from optiloop.experiment import ExperimentSpec, Observation
from optiloop.space import Assignments

logger = logging.getLogger(__name__)


class GridOptimizer:
    """The ``grid`` experiment type."""

    def __init__(self, doubles_per_axis: int = 5) -> None:
        self.doubles_per_axis = doubles_per_axis

    def suggest(
        self,
        spec: ExperimentSpec,
        observations: Sequence[Observation],
        pending: Sequence[Assignments],
        count: int,
        seed: int,
    ) -> list[Assignments]:
        space = spec.space()
        space.check_grid_size(self.doubles_per_axis)
        if count <= 0:
            return []

        used = {space.key(o.assignments) for o in observations}
        used.update(space.key(a) for a in pending)

        fresh: list[Assignments] = []
        for point in space.finite_points(self.doubles_per_axis):
            if len(fresh) == count:
                break
            if space.key(point) not in used:
                fresh.append(point)
        logger.debug("grid: %d new points, %d already used", len(fresh), len(used))
        return fresh
