"""Quasi-random search along one scrambled Sobol sequence per experiment.

Sobol points fill the unit cube more evenly than independent draws (Sobol
1967; scrambling by Owen 1998 keeps that and makes the sequence random).
Each call continues the sequence where the previous ones stopped: it skips
the points already used (observations plus pending), so the caller must pass
the same seed for every call of one experiment.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
from scipy.stats import qmc

from optiloop.experiment import ExperimentSpec, Observation
from optiloop.space import Assignments

logger = logging.getLogger(__name__)


def sobol_points(n_dims: int, start: int, count: int, seed: int) -> np.ndarray:
    """The ``count`` points from index ``start`` of a scrambled Sobol
    sequence, shape ``(count, n_dims)``, in the unit cube."""
    engine = qmc.Sobol(d=n_dims, scramble=True, seed=seed)
    if start > 0:  # scipy's fast_forward(0) fails instead of doing nothing
        engine.fast_forward(start)
    with warnings.catch_warnings():
        # scipy warns when a draw is not a power of two long.  Drawn in
        # pieces, the sequence has the same points as drawn at once, so
        # its first 2^m points are as balanced either way.
        warnings.simplefilter("ignore", UserWarning)
        return engine.random(count)


class SobolOptimizer:
    """The ``sobol`` experiment type."""

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

        n_used = len(observations) + len(pending)
        cube = sobol_points(len(space), n_used, count, seed)
        logger.debug("sobol: points %d to %d", n_used, n_used + count - 1)
        return [space.from_unit(u) for u in cube]
