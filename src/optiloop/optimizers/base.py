"""The interface every search strategy implements.

A strategy is a pure function of the experiment spec, the observations so far
and the points still pending (suggested, not yet observed): it never touches
storage, HTTP or processes, so it is tested and benchmarked on plain data.
Randomness comes only from the ``seed`` argument, so the same inputs give the
same suggestions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from optiloop.experiment import ExperimentSpec, Observation
from optiloop.space import Assignments


class Optimizer(Protocol):
    """Suggests the next points to evaluate."""

    def suggest(
        self,
        spec: ExperimentSpec,
        observations: Sequence[Observation],
        pending: Sequence[Assignments],
        count: int,
        seed: int,
    ) -> list[Assignments]:
        """Up to ``count`` new points, each exactly inside the space.

        Fewer than ``count`` (possibly none) come back only when the space
        has no unseen point left, as a finished grid.
        """
        ...
