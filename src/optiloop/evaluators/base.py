"""The interface of outer-loop evaluators, and how a campaign loads one.

When an experiment round has spent its budget, an evaluator reads the round's
spec and observations and proposes the parameter bounds of the next round.
It answers with a ``Refinement``: the new bounds of every numeric parameter,
one line per parameter saying why, a summary, and a ``stop`` flag.  Like the
optimizers, an evaluator is a pure function of its inputs: it never touches
storage, HTTP or processes.

A campaign names its evaluator in its ``evaluator`` field: ``kmeans`` (the
default, ``optiloop.evaluators.kmeans``) or an import path to a user's class,
``package.module:ClassName`` or ``package.module.ClassName``.  The class is
called with the ``evaluator_settings`` mapping as keyword arguments and must
have a ``refine`` method with the signature of ``Evaluator.refine``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from optiloop.errors import SpecError
from optiloop.experiment import ExperimentSpec, Observation, parse_spec

# The campaign fields that choose an evaluator and configure it; errors
# about either name them, so a user knows which line of the file to fix.
EVALUATOR_FIELD = "evaluator"
SETTINGS_FIELD = "evaluator_settings"

# Short names of the evaluators that ship with optiloop.
BUILT_IN_EVALUATORS = {
    "kmeans": "optiloop.evaluators.kmeans:KMeansEvaluator",
}

# Relative slack (of the bounds' width) under which a grid member on a
# bound counts as inside it, so float noise never drops an end member.
_GRID_RTOL = 1e-9


@dataclass(frozen=True)
class ParameterBounds:
    """The refined range of one numeric parameter.

    ``grid`` lists the grid members kept for a grid parameter (explicit or
    ``grid_pow2``), sorted, and is None for a plain int or double.
    """

    min: float
    max: float
    grid: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Refinement:
    """What an evaluator proposes for the next round.

    ``bounds`` holds one entry per numeric parameter; categorical parameters
    have none and stay as they are.  ``reasons`` holds one human-readable
    line per parameter, categoricals included.
    """

    stop: bool
    bounds: dict[str, ParameterBounds]
    reasons: dict[str, str]
    summary: str

    def apply(self, spec: ExperimentSpec) -> ExperimentSpec:
        """The spec with the refined bounds, validated like any user's spec.

        A plain int or double gets the new ``bounds``.  An explicit grid gets
        the new bounds and only the members inside them (``grid`` of the
        entry when given).  A ``grid_pow2`` keeps its base and takes the new
        range as its ``min`` and ``max``, so that widening a bound brings in
        the next power of two; a ``bounds`` field beside it is dropped, since
        the pow2 range now says the same.  Raises SpecError when an entry
        names no parameter of the spec or the result breaks a spec rule.
        """
        known = {parameter.name for parameter in spec.parameters}
        unknown = sorted(set(self.bounds) - known)
        if unknown:
            raise SpecError(
                f"parameters.{unknown[0]}: the refinement has bounds for a "
                f"parameter the spec does not define; the parameters are "
                f"{sorted(known)}; apply it to the spec it was made from"
            )

        data = spec.to_dict()
        for parameter in data["parameters"]:
            new = self.bounds.get(parameter["name"])
            if new is not None:
                _write_bounds(parameter, new)
        return parse_spec(data)


class Evaluator(Protocol):
    """Refines the bounds of the next round from a finished round."""

    def refine(
        self, spec: ExperimentSpec, observations: Sequence[Observation]
    ) -> Refinement:
        """New bounds for ``spec``, from the observations made under it."""
        ...


def load_evaluator(
    name_or_path: str, settings: Mapping[str, Any] | None = None
) -> Evaluator:
    """The evaluator a campaign names, built with its settings.

    ``name_or_path`` is ``kmeans`` or ``package.module:ClassName`` (also
    ``package.module.ClassName``).  Raises SpecError naming ``evaluator``
    when the import fails and ``evaluator_settings`` when the class refuses
    the settings.
    """
    path = BUILT_IN_EVALUATORS.get(name_or_path, name_or_path)
    factory = _import_object(path)

    try:
        evaluator = factory(**dict(settings or {}))
    except SpecError:
        raise
    except (TypeError, ValueError) as error:
        raise SpecError(
            f"{SETTINGS_FIELD}: {name_or_path} refused the settings "
            f"{dict(settings or {})!r}: {error}; check the names and values"
        ) from error

    if not callable(getattr(evaluator, "refine", None)):
        raise SpecError(
            f"{EVALUATOR_FIELD}: {name_or_path} made a "
            f"{type(evaluator).__name__}, which has no refine(spec, "
            "observations) method; point the field at an evaluator class"
        )
    return evaluator


def inside_bounds(value: float, low: float, high: float) -> bool:
    """Whether a grid member lies in ``[low, high]``, up to float noise."""
    slack = _GRID_RTOL * (high - low)
    return low - slack <= value <= high + slack


def settings_error(error: ValidationError) -> SpecError:
    """One SpecError line per refused setting, each naming its field."""
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in (SETTINGS_FIELD, *problem["loc"]))
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown setting; remove it or check its spelling"
        elif problem["type"] != "value_error":
            message = f"{message} (got {problem.get('input')!r})"
        lines.append(f"{where}: {message}")
    return SpecError("\n".join(lines))


def _import_object(path: str) -> Any:
    """The object at ``package.module:Name`` or ``package.module.Name``."""
    if ":" in path:
        module_name, _, attribute = path.partition(":")
    else:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise SpecError(
            f"{EVALUATOR_FIELD}: {path!r} is neither a built-in evaluator "
            f"({', '.join(BUILT_IN_EVALUATORS)}) nor an import path; write "
            "package.module:ClassName"
        )

    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        # Any failure while importing (missing module, a syntax error in the
        # user's file) is reported as this field's problem, cause attached.
        raise SpecError(
            f"{EVALUATOR_FIELD}: cannot import module {module_name!r} for "
            f"{path!r}: {error}; check the path and that the package is "
            "installed in this environment"
        ) from error

    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise SpecError(
                f"{EVALUATOR_FIELD}: module {module_name!r} has no "
                f"{attribute!r}; check the class name in {path!r}"
            )
        found = getattr(found, part)
    if not callable(found):
        raise SpecError(
            f"{EVALUATOR_FIELD}: {path!r} is a {type(found).__name__}, not a "
            "class; point the field at an evaluator class"
        )
    return found


def _write_bounds(parameter: dict[str, Any], new: ParameterBounds) -> None:
    """Put refined bounds into one parameter of a spec dict, in place."""
    if "grid_pow2" in parameter:
        parameter["grid_pow2"] = {
            **parameter["grid_pow2"],
            "min": new.min,
            "max": new.max,
        }
        parameter.pop("bounds", None)
        return

    if "grid" in parameter:
        members = new.grid
        if members is None:
            members = tuple(
                value
                for value in parameter["grid"]
                if inside_bounds(value, new.min, new.max)
            )
        parameter["grid"] = list(members)

        # The spec wants members inside the bounds and min below max; a
        # grid of one member is fully described without bounds.
        low = min([new.min, *members])
        high = max([new.max, *members])
        if low < high:
            parameter["bounds"] = {"min": low, "max": high}
        else:
            parameter.pop("bounds", None)
        return

    parameter["bounds"] = {"min": new.min, "max": new.max}
