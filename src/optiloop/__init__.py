"""optiloop: self-hosted hyperparameter optimization for expensive training jobs.

Start with ``optiloop.Connection``, which mirrors the sigopt client:

    conn = optiloop.Connection(db="sqlite:///optiloop.db")
    experiment = conn.experiments().create(**spec)
    suggestion = conn.experiments(experiment.id).suggestions().create()
"""

from typing import TYPE_CHECKING

from optiloop.errors import (
    BudgetSpentError,
    ExhaustedError,
    NotFoundError,
    OptiloopError,
    SpecError,
)

__all__ = [
    "BudgetSpentError",
    "Connection",
    "ExhaustedError",
    "NotFoundError",
    "OptiloopError",
    "SpecError",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from optiloop.client import Connection as Connection


def __getattr__(name: str) -> object:
    # The client pulls in SQLAlchemy; load it only when it is asked for, so
    # that ``optiloop --help`` and the pure layers start fast.
    if name == "Connection":
        from optiloop.client import Connection

        return Connection
    raise AttributeError(f"module 'optiloop' has no attribute {name!r}")
