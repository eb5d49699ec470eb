"""Campaigns in the store, and their experiments, on every backend."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from optiloop.errors import NotFoundError, StoreError
from optiloop.experiment import ExperimentSpec, MetricValue, Observation
from optiloop.store import Store

FILE = {"name": "small", "rounds": {"max": 2, "budget": 4}}


def test_a_campaign_is_stored_running_and_updated(store: Store) -> None:
    campaign_id = store.create_campaign("small", FILE)
    record = store.get_campaign(campaign_id)

    assert record.name == "small"
    assert record.file == FILE
    assert record.state == "running"
    assert record.result is None
    assert record.created.tzinfo is not None

    updated = store.update_campaign(campaign_id, state="done", result={"best": 1.5})
    assert (updated.state, updated.result) == ("done", {"best": 1.5})
    assert updated.updated >= record.updated
    # What is not given stays.
    again = store.update_campaign(campaign_id, state="stopped")
    assert again.result == {"best": 1.5}
    assert store.get_campaign(campaign_id) == again


def test_another_tokens_campaign_is_not_found(store: Store) -> None:
    first, _ = store.create_token("first")
    second, _ = store.create_token("second")
    mine = store.create_campaign("mine", FILE, owner_token_id=first.id)
    theirs = store.create_campaign("theirs", FILE, owner_token_id=second.id)

    assert store.get_campaign(mine, owner_token_id=first.id).name == "mine"
    with pytest.raises(NotFoundError, match=f"campaign {theirs} not found"):
        store.get_campaign(theirs, owner_token_id=first.id)
    assert [c.id for c in store.list_campaigns(owner_token_id=first.id)] == [mine]
    assert [c.id for c in store.list_campaigns()] == [mine, theirs]


def test_missing_campaigns_are_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.get_campaign(5)
    with pytest.raises(NotFoundError):
        store.update_campaign(5, state="done")
    with pytest.raises(NotFoundError):
        store.campaign_experiments(5)


def test_experiments_are_linked_with_their_rows(
    store: Store, spec: ExperimentSpec
) -> None:
    campaign_id = store.create_campaign("small", FILE)
    warm = Observation(
        {"lr": 0.5, "depth": 2},
        (MetricValue("loss", 0.25, 0.01),),
        metadata={"warm_start": {"observation": 9}},
    )
    failed = Observation({"lr": 0.2, "depth": 1}, failed=True)
    refinement = {"from_round": 1, "bounds": {"lr": {"min": 0.2, "max": 0.6}}}

    first = store.create_campaign_experiment(campaign_id, spec, role="round", round=1)
    second = store.create_campaign_experiment(
        campaign_id,
        spec,
        role="round",
        round=2,
        refinement=refinement,
        observations=[warm, failed],
    )
    validation = store.create_campaign_experiment(
        campaign_id,
        spec,
        role="validation",
        suggestions=[{"lr": 0.5, "depth": 2}, {"lr": 0.3, "depth": 3}],
    )
    # An experiment of its own is not the campaign's.
    store.create_experiment(spec)

    records = store.campaign_experiments(campaign_id)
    assert [r.id for r in records] == [first, second, validation]
    assert [(r.campaign_round, r.campaign_role) for r in records] == [
        (1, "round"),
        (2, "round"),
        (None, "validation"),
    ]
    assert records[0].refinement is None
    assert records[1].refinement == refinement
    assert all(r.campaign_id == campaign_id for r in records)

    stored = store.list_observations(second)
    assert [o.assignments for o in stored] == [warm.assignments, failed.assignments]
    assert stored[0].values == warm.values
    assert stored[0].metadata == {"warm_start": {"observation": 9}}
    assert stored[1].failed and stored[0].suggestion_id is None
    opened = store.open_suggestions(validation)
    assert [s.assignments for s in opened] == [
        {"lr": 0.5, "depth": 2},
        {"lr": 0.3, "depth": 3},
    ]
    assert store.list_observations(validation) == []


def test_a_failed_creation_stores_nothing(store: Store, spec: ExperimentSpec) -> None:
    campaign_id = store.create_campaign("small", FILE)
    # NaN cannot be stored as JSON: the whole creation is refused.
    bad = Observation({"lr": 0.5, "depth": 2}, metadata={"x": float("nan")})
    with pytest.raises((StoreError, ValueError)):
        store.create_campaign_experiment(
            campaign_id, spec, role="round", round=2, observations=[bad]
        )
    assert store.campaign_experiments(campaign_id) == []
    assert store.list_experiments() == []


def test_an_experiment_needs_an_existing_campaign(
    store: Store, spec: ExperimentSpec
) -> None:
    with pytest.raises(NotFoundError, match="campaign 3 not found"):
        store.create_campaign_experiment(3, spec, role="round", round=1)
    assert store.list_experiments() == []


def test_upgrade_from_0002_keeps_experiments_outside_any_campaign(
    database_url: str,
) -> None:
    from alembic import command
    from sqlalchemy import text

    from optiloop.store import alembic_config
    from optiloop.store.engine import create_store_engine

    command.upgrade(alembic_config(database_url), "0002")
    spec = {
        "name": "old",
        "parameters": [{"name": "x", "type": "int", "bounds": {"min": 1, "max": 2}}],
        "metrics": [{"name": "y"}],
    }
    insert = text(
        "INSERT INTO experiments (name, spec, state, created, updated) "
        "VALUES ('old', :spec, 'active', :now, :now)"
    )
    engine = create_store_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            insert, {"spec": json.dumps(spec), "now": datetime(2026, 1, 1, tzinfo=UTC)}
        )
    engine.dispose()

    with Store(database_url) as store:
        (record,) = store.list_experiments()
        assert store.list_campaigns() == []
    assert record.campaign_id is None
    assert record.campaign_role is None
    assert record.refinement is None
