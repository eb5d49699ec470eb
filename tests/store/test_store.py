"""The store keeps records exactly, in any script, and names what is missing."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from optiloop.errors import NotFoundError, OptiloopError, SpecError
from optiloop.experiment import ExperimentSpec, MetricValue, parse_spec
from optiloop.space import Assignments
from optiloop.store import Store
from optiloop.store.models import UtcDateTime

GREEK_AND_CHINESE: dict[str, Any] = {
    "name": "πείραμα 实验",
    "type": "random",
    "parameters": [
        {"name": "ρυθμός", "type": "double", "bounds": {"min": 0.1, "max": 2}},
        {"name": "学习率", "type": "int", "bounds": {"min": 1, "max": 9}},
        {
            "name": "μπλοκ",
            "type": "categorical",
            "categorical_values": ["βασικό", "宽"],
        },
    ],
    "metrics": [
        {"name": "ακρίβεια", "strategy": "constraint", "threshold": 0.9},
        {"name": "损失", "objective": "minimize"},
    ],
    "metadata": {"σημείωση": "测试"},
}


def test_spec_in_greek_and_chinese_round_trips(db_url: str) -> None:
    spec = parse_spec(GREEK_AND_CHINESE)
    with Store(db_url) as store:
        experiment_id = store.create_experiment(spec)

    # A second store on the same file reads what the first one wrote.
    with Store(db_url) as reopened:
        record = reopened.get_experiment(experiment_id)
    assert record.spec == spec
    assert record.spec.to_dict() == spec.to_dict()
    assert record.spec.name == "πείραμα 实验"


def test_json_keeps_the_script_of_names(tmp_path: Path) -> None:
    # A SQLite file only: the file holds the characters themselves, not \u
    # escapes, so that a person reading it with sqlite3 sees the names.
    path = tmp_path / "names.db"
    with Store(f"sqlite:///{path}") as store:
        store.create_experiment(parse_spec(GREEK_AND_CHINESE))

    with sqlite3.connect(path) as raw:
        (text,) = raw.execute("SELECT spec FROM experiments").fetchone()
    assert "学习率" in text
    assert "ρυθμός" in text


def test_assignments_and_values_round_trip(
    db_url: str, store: Store, spec: ExperimentSpec
) -> None:
    experiment_id = store.create_experiment(parse_spec(GREEK_AND_CHINESE))
    point: Assignments = {"ρυθμός": 0.123456789012345, "学习率": 7, "μπλοκ": "宽"}
    values = (MetricValue("ακρίβεια", 0.95, 0.01), MetricValue("损失", 0.5, None))
    suggestion = store.add_suggestion(experiment_id, point)
    store.add_observation(
        experiment_id,
        point,
        values,
        suggestion_id=suggestion.id,
        metadata={"κόμβος": "节点-1", "seeds": [1, 2, 3]},
    )

    with Store(db_url) as reopened:
        (observation,) = reopened.list_observations(experiment_id)
    assert observation.assignments == point
    assert isinstance(observation.assignments["学习率"], int)
    assert observation.values == values
    assert observation.metadata == {"κόμβος": "节点-1", "seeds": [1, 2, 3]}
    assert observation.suggestion_id == suggestion.id
    assert observation.failed is False


def test_timestamps_are_aware_utc(db_url: str, spec: ExperimentSpec) -> None:
    before = datetime.now(UTC)
    with Store(db_url) as store:
        experiment_id = store.create_experiment(spec)
        suggestion = store.add_suggestion(experiment_id, {"lr": 0.5, "depth": 2})
        observation = store.add_observation(
            experiment_id, {"lr": 0.5, "depth": 2}, (MetricValue("loss", 1.0),)
        )
    after = datetime.now(UTC)

    with Store(db_url) as reopened:
        record = reopened.get_experiment(experiment_id)
        stored_suggestion = reopened.get_suggestion(experiment_id, suggestion.id)
        (stored_observation,) = reopened.list_observations(experiment_id)

    read_back = [
        record.created,
        record.updated,
        stored_suggestion.created,
        stored_observation.created,
    ]
    for moment in read_back:
        assert moment is not None
        assert moment.utcoffset() == timedelta(0)
        assert before <= moment <= after
    assert stored_observation.created == observation.created


def test_timestamps_are_stored_as_utc() -> None:
    column = UtcDateTime()
    athens = timezone(timedelta(hours=2))
    moment = datetime(2024, 5, 1, 14, 30, tzinfo=athens)

    # SQLite keeps no zone: the instant goes in as naive UTC, 2 hours earlier.
    stored = column.process_bind_param(moment, sqlite.dialect())
    assert stored == datetime(2024, 5, 1, 12, 30)
    assert column.process_result_value(stored, sqlite.dialect()) == moment

    # PostgreSQL keeps the zone; the value goes in as aware UTC.
    on_postgres = column.process_bind_param(moment, postgresql.dialect())
    assert on_postgres is not None and on_postgres.tzinfo == UTC


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="timestamps must be timezone-aware"):
        UtcDateTime().process_bind_param(datetime(2024, 5, 1), sqlite.dialect())


def test_observation_closes_its_suggestion(store: Store, spec: ExperimentSpec) -> None:
    experiment_id = store.create_experiment(spec)
    point = {"lr": 0.5, "depth": 2}
    suggestion = store.add_suggestion(experiment_id, point)
    assert store.open_suggestions(experiment_id) == [suggestion]

    store.add_observation(
        experiment_id, point, (MetricValue("loss", 1.0),), suggestion_id=suggestion.id
    )

    assert store.open_suggestions(experiment_id) == []
    assert store.get_suggestion(experiment_id, suggestion.id).state == "closed"
    counts = store.counts(experiment_id)
    assert (counts.suggestions, counts.open_suggestions) == (1, 0)
    assert counts.observations == 1


def test_a_deleted_newest_id_is_never_handed_out_again(
    store: Store, spec: ExperimentSpec
) -> None:
    # A crashed worker's suggestion is withdrawn; its late report must find
    # nothing, not a new point that took over its id.  Likewise a deleted
    # observation's id.
    experiment_id = store.create_experiment(spec)
    point, other = {"lr": 0.5, "depth": 2}, {"lr": 0.1, "depth": 7}
    withdrawn = store.add_suggestion(experiment_id, point)
    store.delete_suggestion(experiment_id, withdrawn.id)
    fresh = store.add_suggestion(experiment_id, other)
    assert fresh.id > withdrawn.id

    removed = store.add_observation(experiment_id, point, (MetricValue("loss", 1),))
    store.delete_observation(experiment_id, removed.id)
    added = store.add_observation(experiment_id, other, (MetricValue("loss", 2),))
    assert added.id > removed.id

    # A store opened again on the same database keeps to the same rule.
    with Store(store.url) as again:
        store.delete_suggestion(experiment_id, fresh.id)
        assert again.add_suggestion(experiment_id, point).id > fresh.id


def test_a_suggestion_is_observed_once(store: Store, spec: ExperimentSpec) -> None:
    experiment_id = store.create_experiment(spec)
    point = {"lr": 0.5, "depth": 2}
    suggestion = store.add_suggestion(experiment_id, point)
    store.add_observation(
        experiment_id, point, failed=True, suggestion_id=suggestion.id
    )

    with pytest.raises(
        SpecError, match=f"suggestion {suggestion.id} .* already closed"
    ):
        store.add_observation(
            experiment_id, point, failed=True, suggestion_id=suggestion.id
        )
    assert store.counts(experiment_id).observations == 1


def test_counts_tell_failed_and_open_apart(store: Store, spec: ExperimentSpec) -> None:
    experiment_id = store.create_experiment(spec)
    point = {"lr": 0.5, "depth": 2}
    first = store.add_suggestion(experiment_id, point)
    store.add_suggestion(experiment_id, point)
    store.add_observation(experiment_id, point, failed=True, suggestion_id=first.id)
    store.add_observation(experiment_id, point, (MetricValue("loss", 2.0),))

    counts = store.counts(experiment_id)
    assert counts.observations == 2
    assert counts.failed_observations == 1
    assert counts.suggestions == 2
    assert counts.open_suggestions == 1


def test_every_change_of_a_run_moves_updated_forward(
    store: Store, spec: ExperimentSpec
) -> None:
    # A reader that caches by (counts, updated) must see an edit or a
    # delete-then-add, which leave the counts as they were.
    experiment_id = store.create_experiment(spec)
    point = {"lr": 0.5, "depth": 2}
    loss = (MetricValue("loss", 1.0),)
    times = [store.get_experiment(experiment_id).updated]

    def changed() -> None:
        times.append(store.get_experiment(experiment_id).updated)

    suggestion = store.add_suggestion(experiment_id, point)
    changed()
    picked = store.add_suggestion_atomically(experiment_id, lambda *_: point)
    assert picked is not None
    changed()
    store.delete_suggestion(experiment_id, picked.id)
    changed()
    observation = store.add_observation(
        experiment_id, point, loss, suggestion_id=suggestion.id
    )
    assert observation.id is not None
    changed()
    store.update_observation(
        experiment_id, observation.id, (), failed=True, metadata={}
    )
    changed()
    store.delete_observation(experiment_id, observation.id)
    changed()
    store.add_observation(experiment_id, point, loss)
    changed()
    store.add_suggestion(experiment_id, point)
    store.delete_open_suggestions(experiment_id)
    changed()

    # Strictly increasing: sorted, and no two equal.
    assert times == sorted(set(times)), times


def test_deleted_experiment_keeps_its_history(
    store: Store, spec: ExperimentSpec
) -> None:
    kept = store.create_experiment(spec)
    deleted = store.create_experiment(spec)
    store.add_observation(deleted, {"lr": 0.5, "depth": 1}, failed=True)

    store.delete_experiment(deleted)

    assert [r.id for r in store.list_experiments()] == [kept]
    everything = store.list_experiments(include_deleted=True)
    assert [(r.id, r.state) for r in everything] == [
        (kept, "active"),
        (deleted, "deleted"),
    ]
    record = store.get_experiment(deleted)
    assert record.updated >= record.created
    assert len(store.list_observations(deleted)) == 1


NOT_FOUND: list[Any] = [
    pytest.param(
        lambda s, e: s.get_experiment(99), "experiment 99 not found", id="get"
    ),
    pytest.param(lambda s, e: s.counts(99), "experiment 99 not found", id="counts"),
    pytest.param(
        lambda s, e: s.delete_experiment(99), "experiment 99 not found", id="delete"
    ),
    pytest.param(
        lambda s, e: s.add_suggestion(99, {"lr": 0.5, "depth": 1}),
        "experiment 99 not found",
        id="add-suggestion",
    ),
    pytest.param(
        lambda s, e: s.list_suggestions(99),
        "experiment 99 not found",
        id="list-suggestions",
    ),
    pytest.param(
        lambda s, e: s.list_observations(99),
        "experiment 99 not found",
        id="list-observations",
    ),
    pytest.param(
        lambda s, e: s.get_suggestion(e, 99),
        "suggestion 99 not found in experiment",
        id="get-suggestion",
    ),
    pytest.param(
        lambda s, e: s.get_observation(e, 99),
        "observation 99 not found in experiment",
        id="get-observation",
    ),
    pytest.param(
        lambda s, e: s.add_observation(
            e, {"lr": 0.5, "depth": 1}, failed=True, suggestion_id=99
        ),
        "suggestion 99 not found in experiment",
        id="observe-unknown-suggestion",
    ),
]


@pytest.mark.parametrize(("call", "message"), NOT_FOUND)
def test_unknown_ids_raise_not_found(
    store: Store,
    spec: ExperimentSpec,
    call: Callable[[Store, int], object],
    message: str,
) -> None:
    experiment_id = store.create_experiment(spec)
    with pytest.raises(NotFoundError, match=message):
        call(store, experiment_id)
    assert store.counts(experiment_id).observations == 0


def test_a_suggestion_belongs_to_its_experiment(
    store: Store, spec: ExperimentSpec
) -> None:
    first = store.create_experiment(spec)
    second = store.create_experiment(spec)
    suggestion = store.add_suggestion(first, {"lr": 0.5, "depth": 1})

    with pytest.raises(NotFoundError, match=f"not found in experiment {second}"):
        store.get_suggestion(second, suggestion.id)


def test_unreadable_database_raises_optiloop_error(tmp_path: Path) -> None:
    # A folder where the database file should be: SQLite cannot open it.
    folder = tmp_path / "taken.db"
    folder.mkdir()
    with pytest.raises(OptiloopError, match="could not bring the database") as caught:
        Store(f"sqlite:///{folder}")
    assert caught.value.__cause__ is not None


def test_in_memory_store_works(spec: ExperimentSpec) -> None:
    with Store("sqlite://") as store:
        experiment_id = store.create_experiment(spec)
        store.add_suggestion(experiment_id, {"lr": 0.5, "depth": 1})
        assert store.counts(experiment_id).suggestions == 1
