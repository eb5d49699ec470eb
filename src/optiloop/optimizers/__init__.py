"""Search strategies behind one interface, ``Optimizer.suggest``.

``get_optimizer`` maps the experiment spec's ``type`` to a strategy:
``offline`` (SigOpt's name for its Bayesian optimizer, the default),
``random``, ``sobol`` and ``grid``.  ``posterior_best`` picks the best
observations by the Bayesian optimizer's models, for ``best_assignments``.
"""

from __future__ import annotations

from optiloop.errors import SpecError
from optiloop.optimizers.base import Optimizer
from optiloop.optimizers.bayesian import (
    BayesianOptimizer,
    posterior_best,
    posterior_ranking,
)
from optiloop.optimizers.grid import GridOptimizer
from optiloop.optimizers.random import RandomOptimizer
from optiloop.optimizers.sobol import SobolOptimizer

__all__ = [
    "BayesianOptimizer",
    "GridOptimizer",
    "Optimizer",
    "RandomOptimizer",
    "SobolOptimizer",
    "get_optimizer",
    "posterior_best",
    "posterior_ranking",
]

_STRATEGIES: dict[str, type[Optimizer]] = {
    "offline": BayesianOptimizer,
    "random": RandomOptimizer,
    "sobol": SobolOptimizer,
    "grid": GridOptimizer,
}


def get_optimizer(strategy: str) -> Optimizer:
    """A new optimizer for the spec's ``type`` field, with default settings."""
    try:
        optimizer_class = _STRATEGIES[strategy]
    except KeyError:
        raise SpecError(
            f"type: unknown strategy {strategy!r}; use one of {', '.join(_STRATEGIES)}"
        ) from None
    return optimizer_class()
