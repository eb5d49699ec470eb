"""Outer-loop strategies behind one interface, ``Evaluator.refine``.

After an experiment round, an evaluator turns the round's observations into
the bounds of the next round.  ``load_evaluator`` builds the one a campaign
names: ``kmeans`` (the default) or a user's class by import path.
"""

from optiloop.evaluators.base import (
    Evaluator,
    ParameterBounds,
    Refinement,
    load_evaluator,
)
from optiloop.evaluators.kmeans import HardLimits, KMeansEvaluator, KMeansSettings

__all__ = [
    "Evaluator",
    "HardLimits",
    "KMeansEvaluator",
    "KMeansSettings",
    "ParameterBounds",
    "Refinement",
    "load_evaluator",
]
