"""The rules of suggestions and observations: refusals name the field and
store nothing."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from optiloop.client import Connection, LocalDriver
from optiloop.errors import (
    BandwidthError,
    BudgetSpentError,
    ExhaustedError,
    NotFoundError,
    SpecError,
)
from optiloop.experiment import ExperimentSpec, Observation
from optiloop.optimizers.base import Optimizer
from optiloop.space import Assignments
from optiloop.store import Store

# The conftest fixture ``make_spec``: copies of a small spec, fields replaced.
SpecMaker = Callable[..., dict[str, Any]]

POINT: dict[str, Any] = {"x": 0.5, "n": 3, "kind": "plain"}


def observation_count(conn: Connection, experiment_id: int) -> int:
    return conn.experiments(experiment_id).fetch().progress.observation_count


def test_bad_spec_raises_and_stores_nothing(
    conn: Connection, make_spec: SpecMaker
) -> None:
    bad = make_spec(parameters=[{"name": "x", "type": "double"}])
    with pytest.raises(SpecError, match=r"parameters\[0\]: bounds are required"):
        conn.experiments().create(**bad)
    assert conn.experiments().fetch(state="all").count == 0


def test_budget_counts_open_suggestions(conn: Connection, make_spec: SpecMaker) -> None:
    experiment = conn.experiments().create(
        **make_spec(observation_budget=3, parallel_bandwidth=4)
    )
    suggestions = conn.experiments(experiment.id).suggestions()
    first = suggestions.create()
    suggestions.create()
    suggestions.create()

    with pytest.raises(BudgetSpentError, match=r"0 observed \+ 3 open"):
        suggestions.create()

    # Observing one turns an open suggestion into an observation: still 3.
    conn.experiments(experiment.id).observations().create(
        suggestion=first.id, failed=True
    )
    with pytest.raises(BudgetSpentError, match=r"1 observed \+ 2 open"):
        suggestions.create()
    assert suggestions.fetch().count == 3


OFF_SPACE = [
    pytest.param(
        {**POINT, "n": 2.5}, r"assignments\.n: value must be an integer", id="int-2.5"
    ),
    pytest.param(
        {**POINT, "x": 1.5},
        r"assignments\.x: value must lie within bounds \[-1.0, 1.0\], got 1.5",
        id="above-max",
    ),
    pytest.param(
        {**POINT, "kind": "odd"},
        r"assignments\.kind: value must be one of \['plain', 'fancy'\], got 'odd'",
        id="unknown-category",
    ),
    pytest.param(
        {"x": 0.5, "kind": "plain"},
        r"assignments\.n: a value is required for every parameter",
        id="missing-parameter",
    ),
    pytest.param(
        {**POINT, "extra": 1},
        r"assignments\.extra: no such parameter",
        id="unknown-parameter",
    ),
]


@pytest.mark.parametrize(("assignments", "message"), OFF_SPACE)
def test_off_space_assignments_are_refused(
    conn: Connection,
    make_spec: SpecMaker,
    assignments: dict[str, Any],
    message: str,
) -> None:
    experiment = conn.experiments().create(**make_spec())
    observations = conn.experiments(experiment.id).observations()

    with pytest.raises(SpecError, match=message):
        observations.create(
            assignments=assignments, values=[{"name": "y", "value": 1.0}]
        )
    assert observation_count(conn, experiment.id) == 0


NON_FINITE = [
    pytest.param(
        {"name": "y", "value": math.nan},
        r"values\[0\]\.value must be finite, got nan",
        id="nan",
    ),
    pytest.param(
        {"name": "y", "value": math.inf},
        r"values\[0\]\.value must be finite, got inf",
        id="inf",
    ),
    pytest.param(
        {"name": "y", "value": 1.0, "value_stddev": -math.inf},
        r"values\[0\]\.value_stddev must be finite",
        id="stddev-inf",
    ),
    pytest.param(
        {"name": "z", "value": 1.0},
        r"values\[0\]\.name: metric 'z' is not defined",
        id="unknown-metric",
    ),
]


@pytest.mark.parametrize(("value", "message"), NON_FINITE)
def test_bad_values_are_refused_and_keep_the_suggestion_open(
    conn: Connection, make_spec: SpecMaker, value: dict[str, Any], message: str
) -> None:
    experiment = conn.experiments().create(**make_spec())
    suggestion = conn.experiments(experiment.id).suggestions().create()

    with pytest.raises(SpecError, match=message):
        conn.experiments(experiment.id).observations().create(
            suggestion=suggestion.id, values=[value]
        )
    assert observation_count(conn, experiment.id) == 0
    fetched = conn.experiments(experiment.id).suggestions(suggestion.id).fetch()
    assert fetched.state == "open"


def test_a_closed_suggestion_is_refused(conn: Connection, make_spec: SpecMaker) -> None:
    experiment = conn.experiments().create(**make_spec())
    suggestion = conn.experiments(experiment.id).suggestions().create()
    observations = conn.experiments(experiment.id).observations()
    observations.create(suggestion=suggestion.id, values=[{"name": "y", "value": 1.0}])

    with pytest.raises(
        SpecError, match=f"suggestion {suggestion.id} .* already closed"
    ):
        observations.create(
            suggestion=suggestion.id, values=[{"name": "y", "value": 2.0}]
        )
    assert observation_count(conn, experiment.id) == 1


def test_unknown_suggestion_is_not_found(
    conn: Connection, make_spec: SpecMaker
) -> None:
    experiment = conn.experiments().create(**make_spec())
    with pytest.raises(NotFoundError, match="suggestion 999 not found"):
        conn.experiments(experiment.id).observations().create(
            suggestion=999, failed=True
        )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"suggestion": 1, "assignments": POINT}, "got both", id="both"),
        pytest.param({}, "got neither", id="neither"),
    ],
)
def test_exactly_one_of_suggestion_or_assignments(
    conn: Connection, make_spec: SpecMaker, fields: dict[str, Any], message: str
) -> None:
    experiment = conn.experiments().create(**make_spec())
    conn.experiments(experiment.id).suggestions().create()
    with pytest.raises(SpecError, match=message):
        conn.experiments(experiment.id).observations().create(failed=True, **fields)
    assert observation_count(conn, experiment.id) == 0


def test_observation_without_a_suggestion(
    conn: Connection, make_spec: SpecMaker
) -> None:
    experiment = conn.experiments().create(**make_spec())
    observation = (
        conn.experiments(experiment.id)
        .observations()
        .create(
            assignments=POINT,
            values=[{"name": "y", "value": 0.25, "value_stddev": 0.05}],
            metadata={"host": "node-3"},
        )
    )

    assert observation.suggestion is None
    assert observation.assignments == POINT
    assert observation.values[0].value == 0.25
    assert observation.values[0].value_stddev == 0.05
    assert observation.metadata == {"host": "node-3"}


def test_failed_observation_closes_the_suggestion(
    conn: Connection, make_spec: SpecMaker
) -> None:
    experiment = conn.experiments().create(**make_spec())
    suggestion = conn.experiments(experiment.id).suggestions().create()
    observation = (
        conn.experiments(experiment.id)
        .observations()
        .create(suggestion=suggestion.id, failed=True)
    )

    assert observation.failed is True
    assert observation.values == []
    assert observation.assignments == suggestion.assignments
    assert conn.experiments(experiment.id).suggestions().fetch(state="open").count == 0


def test_failed_observation_carries_no_values(
    conn: Connection, make_spec: SpecMaker
) -> None:
    experiment = conn.experiments().create(**make_spec())
    with pytest.raises(SpecError, match="a failed observation carries no values"):
        conn.experiments(experiment.id).observations().create(
            assignments=POINT, failed=True, values=[{"name": "y", "value": 1.0}]
        )


def test_single_value_shorthand(conn: Connection, make_spec: SpecMaker) -> None:
    experiment = conn.experiments().create(**make_spec())
    observation = (
        conn.experiments(experiment.id)
        .observations()
        .create(assignments=POINT, value=0.75, value_stddev=0.1)
    )
    assert [(v.name, v.value, v.value_stddev) for v in observation.values] == [
        ("y", 0.75, 0.1)
    ]
    assert observation.value == 0.75


def test_single_value_needs_a_single_metric(
    conn: Connection, make_spec: SpecMaker
) -> None:
    two_metrics = make_spec(metrics=[{"name": "y"}, {"name": "w", "strategy": "store"}])
    experiment = conn.experiments().create(**two_metrics)
    with pytest.raises(SpecError, match="value: a lone value needs an experiment"):
        conn.experiments(experiment.id).observations().create(
            assignments=POINT, value=1.0
        )


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({"loss": math.nan}, id="nan"),
        pytest.param({"when": object()}, id="not-json"),
    ],
)
def test_metadata_must_be_plain_json(
    conn: Connection, make_spec: SpecMaker, metadata: dict[str, Any]
) -> None:
    experiment = conn.experiments().create(**make_spec())
    with pytest.raises(SpecError, match="metadata must be plain JSON data"):
        conn.experiments(experiment.id).observations().create(
            assignments=POINT, failed=True, metadata=metadata
        )
    assert observation_count(conn, experiment.id) == 0


def test_open_suggestions_stop_at_the_parallel_bandwidth(
    conn: Connection, make_spec: SpecMaker
) -> None:
    experiment = conn.experiments().create(**make_spec(parallel_bandwidth=2))
    suggestions = conn.experiments(experiment.id).suggestions()
    first = suggestions.create()
    suggestions.create()

    with pytest.raises(BandwidthError, match="2 open suggestions >= parallel_bandw"):
        suggestions.create()

    # Observing or deleting an open suggestion frees its place.
    conn.experiments(experiment.id).observations().create(
        suggestion=first.id, failed=True
    )
    third = suggestions.create()
    conn.experiments(experiment.id).suggestions(third.id).delete()
    suggestions.create()
    assert suggestions.fetch(state="open").count == 2


def test_suggestions_fetch_filters_by_state(
    conn: Connection, make_spec: SpecMaker
) -> None:
    experiment = conn.experiments().create(**make_spec(parallel_bandwidth=2))
    suggestions = conn.experiments(experiment.id).suggestions()
    observed = suggestions.create()
    pending = suggestions.create()
    conn.experiments(experiment.id).observations().create(
        suggestion=observed.id, failed=True
    )

    assert [s.id for s in suggestions.fetch(state="open")] == [pending.id]
    assert [s.id for s in suggestions.fetch(state="closed")] == [observed.id]
    assert [s.id for s in suggestions.fetch()] == [observed.id, pending.id]
    with pytest.raises(SpecError, match="state must be one of"):
        suggestions.fetch(state="pending")


# Fake optimizers, to check what the driver passes and how it treats answers.


@dataclass
class RecordingOptimizer:
    """Returns ``points`` in turn and records every call's arguments."""

    points: list[Assignments]
    calls: list[dict[str, Any]] = field(default_factory=list)

    def suggest(
        self,
        spec: ExperimentSpec,
        observations: Sequence[Observation],
        pending: Sequence[Assignments],
        count: int,
        seed: int,
    ) -> list[Assignments]:
        self.calls.append(
            {
                "observations": len(observations),
                "pending": list(pending),
                "count": count,
                "seed": seed,
            }
        )
        return [self.points.pop(0)] if self.points else []


def connect_with(tmp_path: Path, optimizer: Optimizer) -> Connection:
    store = Store(f"sqlite:///{tmp_path / 'fake.db'}")
    return Connection(driver=LocalDriver(store, lambda _: optimizer))


def test_driver_passes_history_pending_and_one_seed_per_experiment(
    tmp_path: Path, make_spec: SpecMaker
) -> None:
    first, second = {**POINT, "n": 1}, {**POINT, "n": 2}
    optimizer = RecordingOptimizer(points=[first, second, dict(POINT)])
    with connect_with(tmp_path, optimizer) as conn:
        experiment = conn.experiments().create(**make_spec(parallel_bandwidth=2))
        suggestions = conn.experiments(experiment.id).suggestions()
        suggestions.create()
        observed = suggestions.create()
        conn.experiments(experiment.id).observations().create(
            suggestion=observed.id, failed=True
        )
        suggestions.create()

    # One seed for the whole experiment keeps a Sobol sequence one sequence.
    seed = experiment.id * 1_000_003
    assert [call["seed"] for call in optimizer.calls] == [seed, seed, seed]
    assert [call["count"] for call in optimizer.calls] == [1, 1, 1]
    assert [call["observations"] for call in optimizer.calls] == [0, 0, 1]
    assert optimizer.calls[2]["pending"] == [first]


def test_optimizer_with_nothing_left_raises_exhausted(
    tmp_path: Path, make_spec: SpecMaker
) -> None:
    optimizer = RecordingOptimizer(points=[dict(POINT)])
    with connect_with(tmp_path, optimizer) as conn:
        experiment = conn.experiments().create(**make_spec(parallel_bandwidth=2))
        conn.experiments(experiment.id).suggestions().create()
        with pytest.raises(ExhaustedError, match=r"no new point left .* after 1"):
            conn.experiments(experiment.id).suggestions().create()


def test_an_off_space_point_from_an_optimizer_is_not_stored(
    tmp_path: Path, make_spec: SpecMaker
) -> None:
    optimizer = RecordingOptimizer(points=[{**POINT, "x": 7.0}])
    with connect_with(tmp_path, optimizer) as conn:
        experiment = conn.experiments().create(**make_spec())
        with pytest.raises(SpecError, match=r"assignments\.x"):
            conn.experiments(experiment.id).suggestions().create()
        assert conn.experiments(experiment.id).suggestions().fetch().count == 0
