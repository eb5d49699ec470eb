"""The objects and ids of the client, in the sigopt client's shape."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import optiloop
from optiloop.client import Assignments, Connection, Experiment
from optiloop.errors import NotFoundError, OptiloopError, SpecError

# The conftest fixture ``make_spec``: copies of a small spec, fields replaced.
SpecMaker = Callable[..., dict[str, Any]]


def test_created_experiment_reads_like_sigopt(
    make_spec: SpecMaker, conn: Connection
) -> None:
    before = int(time.time())
    created = conn.experiments().create(**make_spec(observation_budget=7))
    after = int(time.time())

    experiment = conn.experiments(created.id).fetch()
    assert experiment == created
    assert isinstance(experiment.id, int)
    assert experiment.to_json()["object"] == "experiment"
    assert experiment.name == "two parameters"
    assert experiment.type == "random"
    assert experiment.state == "active"
    assert before <= experiment.created <= after
    assert experiment.observation_budget == 7
    assert experiment.parallel_bandwidth == 1
    assert experiment.progress.observation_count == 0
    assert experiment.progress.best_observation is None

    x, n, kind = experiment.parameters
    assert x.bounds is not None and n.bounds is not None
    assert (x.name, x.type, x.bounds.min, x.bounds.max) == ("x", "double", -1.0, 1.0)
    assert (n.bounds.min, n.bounds.max) == (1, 5)
    assert kind.categorical_values is not None
    assert [(c.name, c.enum_index) for c in kind.categorical_values] == [
        ("plain", 1),
        ("fancy", 2),
    ]
    assert kind.bounds is None
    assert [(m.name, m.objective) for m in experiment.metrics] == [("y", "minimize")]


def test_greek_and_chinese_names_come_back(
    make_spec: SpecMaker, conn: Connection
) -> None:
    spec = make_spec(
        name="βελτιστοποίηση 优化",
        parameters=[
            {"name": "ρυθμός", "type": "double", "bounds": {"min": 0, "max": 1}}
        ],
        metrics=[{"name": "准确率"}],
    )
    created = conn.experiments().create(**spec)
    suggestion = conn.experiments(created.id).suggestions().create()
    conn.experiments(created.id).observations().create(
        suggestion=suggestion.id, values=[{"name": "准确率", "value": 0.5}]
    )

    experiment = conn.experiments(created.id).fetch()
    assert experiment.name == "βελτιστοποίηση 优化"
    assert experiment.parameters[0].name == "ρυθμός"
    (observation,) = conn.experiments(created.id).observations().fetch()
    assert observation.values[0].name == "准确率"
    assert 0 <= observation.assignments["ρυθμός"] <= 1


def test_assignments_read_by_key_and_by_attribute(
    make_spec: SpecMaker, conn: Connection
) -> None:
    experiment = conn.experiments().create(**make_spec())
    suggestion = conn.experiments(experiment.id).suggestions().create()
    assignments = suggestion.assignments

    assert isinstance(assignments, Assignments)
    assert assignments["x"] == assignments.x
    assert assignments["kind"] == assignments.kind
    assert set(assignments) == {"x", "n", "kind"}
    assert dict(assignments) == suggestion.to_json()["assignments"]
    assert assignments == dict(assignments)
    assert suggestion.state == "open"


def test_objects_are_read_only_and_name_missing_fields(
    make_spec: SpecMaker, conn: Connection
) -> None:
    experiment = conn.experiments().create(**make_spec())
    with pytest.raises(AttributeError, match="read-only"):
        experiment.name = "renamed"
    with pytest.raises(AttributeError, match="has no field 'nmae'"):
        _ = experiment.nmae


def test_to_json_is_a_copy(make_spec: SpecMaker, conn: Connection) -> None:
    experiment = conn.experiments().create(**make_spec())
    data = experiment.to_json()
    data["name"] = "changed"
    assert experiment.name == "two parameters"
    assert Experiment(experiment.to_json()) == experiment


def test_ids_may_be_strings_as_in_sigopt(
    make_spec: SpecMaker, conn: Connection
) -> None:
    experiment = conn.experiments().create(**make_spec())
    suggestion = conn.experiments(str(experiment.id)).suggestions().create()

    fetched = conn.experiments(str(experiment.id)).suggestions(str(suggestion.id))
    assert fetched.fetch() == suggestion
    conn.experiments(experiment.id).observations().create(
        suggestion=str(suggestion.id), values=[{"name": "y", "value": 1.0}]
    )
    assert conn.experiments(experiment.id).suggestions(suggestion.id).fetch().state == (
        "closed"
    )


@pytest.mark.parametrize("bad_id", ["abc", "12a", "-1"])
def test_non_numeric_ids_are_not_found(conn: Connection, bad_id: str) -> None:
    with pytest.raises(NotFoundError, match=f"experiment '{bad_id}' not found"):
        conn.experiments(bad_id)


def test_unknown_experiment_is_not_found(conn: Connection) -> None:
    with pytest.raises(NotFoundError, match="experiment 42 not found"):
        conn.experiments(42).fetch()
    with pytest.raises(NotFoundError, match="experiment 42 not found"):
        conn.experiments(42).suggestions().create()


def test_pagination_holds_data_and_iterates(
    make_spec: SpecMaker, conn: Connection
) -> None:
    first = conn.experiments().create(**make_spec(name="first"))
    second = conn.experiments().create(**make_spec(name="second"))

    page = conn.experiments().fetch()
    assert page.count == 2
    assert [e.id for e in page.data] == [first.id, second.id]
    assert [e.name for e in page] == ["first", "second"]
    assert list(page.iterate_pages()) == page.data
    assert page.to_json()["object"] == "pagination"


def test_deleted_experiment_is_listed_apart_and_frozen(
    make_spec: SpecMaker, conn: Connection
) -> None:
    kept = conn.experiments().create(**make_spec(name="kept"))
    gone = conn.experiments().create(**make_spec(name="gone"))
    conn.experiments(gone.id).delete()

    assert [e.name for e in conn.experiments().fetch()] == ["kept"]
    assert [e.name for e in conn.experiments().fetch(state="deleted")] == ["gone"]
    assert conn.experiments().fetch(state="all").count == 2
    assert conn.experiments(gone.id).fetch().state == "deleted"
    with pytest.raises(SpecError, match=f"experiment {gone.id} is deleted"):
        conn.experiments(gone.id).suggestions().create()
    assert conn.experiments(kept.id).fetch().state == "active"


def test_connection_defaults_to_optiloop_db_in_working_folder(
    make_spec: SpecMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with Connection() as conn:
        conn.experiments().create(**make_spec())
    assert (tmp_path / "optiloop.db").is_file()


def test_top_level_name_is_the_client_connection() -> None:
    assert optiloop.Connection is Connection


def test_url_connection_needs_a_token_and_no_db() -> None:
    with pytest.raises(OptiloopError, match="needs token"):
        Connection(url="http://127.0.0.1:9")
    with pytest.raises(OptiloopError, match="give one"):
        Connection(db="sqlite://", url="http://127.0.0.1:9", token="secret")


def test_two_connections_share_one_file(make_spec: SpecMaker, db_url: str) -> None:
    with Connection(db=db_url) as writer:
        experiment = writer.experiments().create(**make_spec())
        suggestion = writer.experiments(experiment.id).suggestions().create()

    with Connection(db=db_url) as reader:
        (still_open,) = reader.experiments(experiment.id).suggestions().fetch("open")
    assert still_open == suggestion


def test_ids_beyond_64_bits_are_not_found(conn: Connection) -> None:
    with pytest.raises(NotFoundError, match="experiment 9223372036854775808"):
        conn.experiments(2**63).fetch()
