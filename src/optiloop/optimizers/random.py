"""Random search: points drawn uniformly in the unit cube.

A uniform draw in the cube is a uniform draw over every parameter's values
(see ``optiloop.space``), so ints, grids and categories come out with equal
chances.  Points may repeat in a small discrete space, as random search does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from optiloop.experiment import ExperimentSpec, Observation
from optiloop.space import Assignments

logger = logging.getLogger(__name__)


class RandomOptimizer:
    """Independent uniform draws; the ``random`` experiment type."""

    def suggest(
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

        # The caller may pass one seed for the whole experiment, so the
        # number of points already used joins it: each call draws new points.
        n_used = len(observations) + len(pending)
        generator = np.random.default_rng([seed, n_used])

        # (count, n_dims) points in the unit cube.
        cube = generator.random((count, len(space)))
        logger.debug("random: %d points after %d used", count, n_used)
        return [space.from_unit(u) for u in cube]
