"""optiloop's Python API: ``Connection`` and the objects it returns.

The API follows the sigopt client, so a SigOpt loop runs with the
connection line changed; see ``connection`` for an example.
"""

from optiloop.client.connection import Connection, Driver
from optiloop.client.http import HttpDriver
from optiloop.client.local import LocalDriver
from optiloop.client.objects import (
    ApiObject,
    Assignments,
    BestAssignments,
    Campaign,
    Experiment,
    MetricEvaluation,
    Observation,
    Pagination,
    Suggestion,
)

__all__ = [
    "ApiObject",
    "Assignments",
    "BestAssignments",
    "Campaign",
    "Connection",
    "Driver",
    "Experiment",
    "HttpDriver",
    "LocalDriver",
    "MetricEvaluation",
    "Observation",
    "Pagination",
    "Suggestion",
]
