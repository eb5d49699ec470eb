"""The objects a ``Connection`` returns, in the sigopt client's object model.

Each object is a read-only view over one SigOpt-shaped JSON answer (see
``shapes``): ``experiment.progress.observation_count`` reads the nested
field, ``to_json()`` gives the plain data back.  The annotations on each
class list its fields for readers and type checkers; the values come from
the JSON, so a field the answer does not carry raises ``AttributeError``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Generic, NoReturn, TypeVar

# Field name -> the class its JSON object (or each item of its list) becomes.
Nested = Mapping[str, type["ApiObject"]]


class ApiObject:
    """Attribute access over a JSON object, read-only.

    ``_nested`` names the fields whose objects (or lists of objects) become
    instances of a more specific class; other values stay plain data.
    """

    _nested: ClassVar[Nested] = {}
    _body: dict[str, Any]
    _fields: dict[str, Any]

    def __init__(self, body: Mapping[str, Any]) -> None:
        data = copy.deepcopy(dict(body))
        fields = {name: self._wrap(name, value) for name, value in data.items()}
        object.__setattr__(self, "_body", data)
        object.__setattr__(self, "_fields", fields)

    def __getattr__(self, name: str) -> Any:
        # Python calls this only for names that are not real attributes.
        fields = self.__dict__.get("_fields", {})
        if name in fields:
            return fields[name]
        raise AttributeError(
            f"{type(self).__name__} has no field {name!r}; "
            f"its fields are {sorted(fields)}"
        )

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(
            f"{type(self).__name__} is read-only; make changes through the connection"
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return bool(self.to_json() == other.to_json())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        text = json.dumps(self._body, indent=2, sort_keys=True, ensure_ascii=False)
        return f"{type(self).__name__}({text})"

    def to_json(self) -> dict[str, Any]:
        """A deep copy of the object's JSON data."""
        return copy.deepcopy(self._body)

    @classmethod
    def _wrap(cls, name: str, value: Any) -> Any:
        kind = cls._nested.get(name)
        if kind is None or value is None:
            return value
        if isinstance(value, list):
            return [kind(item) for item in value]
        return kind(value)


class Assignments(ApiObject, Mapping[str, Any]):
    """Parameter values by name: ``assignments["lr"]`` and ``assignments.lr``.

    Also a read-only mapping (``dict(assignments)``, ``**assignments``).  A
    parameter named like a mapping method (``keys``, ``values``, ``items``,
    ``get``) is reached by ``["name"]`` only.
    """

    def __getitem__(self, name: str) -> Any:
        return self._body[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._body)

    def __len__(self) -> int:
        return len(self._body)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self.items()) == dict(other.items())


class Bounds(ApiObject):
    min: float
    max: float


class CategoricalValue(ApiObject):
    name: str
    enum_index: int


class Parameter(ApiObject):
    _nested: ClassVar[Nested] = {
        "bounds": Bounds,
        "categorical_values": CategoricalValue,
    }

    name: str
    type: str
    bounds: Bounds | None
    categorical_values: list[CategoricalValue] | None
    grid: list[float] | None
    grid_pow2: dict[str, float] | None
    transformation: str | None


class Metric(ApiObject):
    name: str
    objective: str
    strategy: str
    threshold: float | None


class MetricEvaluation(ApiObject):
    """One metric of an observation: the mean over seeds and its spread."""

    name: str
    value: float
    value_stddev: float | None


class Suggestion(ApiObject):
    _nested: ClassVar[Nested] = {"assignments": Assignments}

    id: int
    experiment: int
    assignments: Assignments
    state: str
    created: int


class Observation(ApiObject):
    _nested: ClassVar[Nested] = {"assignments": Assignments, "values": MetricEvaluation}

    id: int
    experiment: int
    suggestion: int | None
    assignments: Assignments
    values: list[MetricEvaluation]
    value: float | None
    value_stddev: float | None
    failed: bool
    metadata: dict[str, Any] | None
    created: int


class Progress(ApiObject):
    _nested: ClassVar[Nested] = {
        "first_observation": Observation,
        "last_observation": Observation,
        "best_observation": Observation,
    }

    observation_count: int
    first_observation: Observation | None
    last_observation: Observation | None
    best_observation: Observation | None


class Experiment(ApiObject):
    _nested: ClassVar[Nested] = {
        "parameters": Parameter,
        "metrics": Metric,
        "progress": Progress,
    }

    id: int
    name: str
    type: str
    state: str
    created: int
    updated: int
    parameters: list[Parameter]
    metrics: list[Metric]
    observation_budget: int | None
    parallel_bandwidth: int
    seeds_per_point: int
    metadata: dict[str, Any] | None
    job: dict[str, Any] | None
    progress: Progress
    campaign: dict[str, Any] | None
    """None, or ``{"id", "round", "role", "refinement"}`` for an experiment
    that a campaign made."""


class Campaign(ApiObject):
    """A campaign: its file (the spec plus rounds, evaluator, stop and
    validation), ``running``, ``stopped`` or ``done``, and its result."""

    id: int
    name: str
    state: str
    created: int
    updated: int
    file: dict[str, Any]
    result: dict[str, Any] | None


class BestAssignments(ApiObject):
    _nested: ClassVar[Nested] = {"assignments": Assignments, "values": MetricEvaluation}

    id: int
    assignments: Assignments
    values: list[MetricEvaluation]
    value: float | None
    value_stddev: float | None
    metadata: dict[str, Any] | None


ObjectT = TypeVar("ObjectT", bound=ApiObject)


class Pagination(Generic[ObjectT]):
    """A list answer: ``.data`` holds the objects; iterating walks them.

    Everything arrives on one page, so ``iterate_pages()`` (the sigopt
    client's way to walk long lists) yields ``.data`` and stops.
    """

    def __init__(self, body: Mapping[str, Any], item_class: type[ObjectT]) -> None:
        self._body = copy.deepcopy(dict(body))
        self.data: list[ObjectT] = [item_class(item) for item in body["data"]]
        self.count: int = body["count"]
        self.paging = ApiObject(body["paging"])

    def __iter__(self) -> Iterator[ObjectT]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"Pagination(count={self.count}, data={self.data!r})"

    def iterate_pages(self) -> Iterator[ObjectT]:
        return iter(self.data)

    def to_json(self) -> dict[str, Any]:
        return copy.deepcopy(self._body)
