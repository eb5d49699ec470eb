"""The errors optiloop raises, under one base class.

Each error also subclasses the builtin that fits it, so callers that catch
``ValueError`` or ``KeyError`` keep working.  The REST service maps each class
to one HTTP status.
"""


class OptiloopError(Exception):
    """Base class of every error optiloop raises on purpose."""


class SpecError(OptiloopError, ValueError):
    """An experiment spec, assignment or observation breaks a rule.

    The message names the field, the rule, the value and the fix.
    """


class NotFoundError(OptiloopError, KeyError):
    """An experiment, suggestion or observation does not exist."""

    def __str__(self) -> str:
        # KeyError quotes its argument; a message reads better plain.
        return str(self.args[0]) if self.args else ""


class ExhaustedError(OptiloopError, RuntimeError):
    """The strategy has no new point left to suggest (e.g. a finished grid)."""


class BudgetSpentError(OptiloopError, RuntimeError):
    """The observation budget is spent: no further suggestion is made."""


class BandwidthError(OptiloopError, RuntimeError):
    """As many suggestions are open as ``parallel_bandwidth`` allows."""


class StoreError(OptiloopError, RuntimeError):
    """The database failed or holds something this version cannot read."""
