"""What the server needs of the store: tokens, owners, updates, one writer."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from sqlalchemy import select

from optiloop.errors import NotFoundError, SpecError
from optiloop.experiment import ExperimentSpec, MetricValue, Observation, Suggestion
from optiloop.store import Store
from optiloop.store.models import TokenRow
from optiloop.store.store import PointChooser


def test_token_is_shown_once_and_only_its_digest_is_stored(store: Store) -> None:
    record, secret = store.create_token("ci")

    assert secret.startswith("olt_") and len(secret) > 40
    assert store.find_token(secret) == record
    assert store.find_token(secret + "x") is None

    with store._reading() as session:
        (row,) = session.scalars(select(TokenRow)).all()
    assert row.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in (row.digest, row.name)


def test_experiments_are_listed_per_owner(store: Store, spec: ExperimentSpec) -> None:
    first = store.create_token("first")[0].id
    second = store.create_token("second")[0].id
    mine = store.create_experiment(spec, owner_token_id=first)
    theirs = store.create_experiment(spec, owner_token_id=second)
    local = store.create_experiment(spec)

    assert [r.id for r in store.list_experiments(owner_token_id=first)] == [mine]
    assert [r.id for r in store.list_experiments()] == [mine, theirs, local]
    assert store.get_experiment(local).owner_token_id is None


def test_update_and_delete_an_observation(store: Store, spec: ExperimentSpec) -> None:
    experiment = store.create_experiment(spec)
    suggestion = store.add_suggestion(experiment, {"lr": 0.5, "depth": 2})
    observation = store.add_observation(
        experiment,
        suggestion.assignments,
        [MetricValue("loss", 1.0)],
        suggestion_id=suggestion.id,
    )
    assert observation.id is not None

    updated = store.update_observation(
        experiment,
        observation.id,
        [MetricValue("loss", 0.25, 0.1)],
        failed=False,
        metadata={"note": "re-run"},
    )
    assert updated.values == (MetricValue("loss", 0.25, 0.1),)
    assert store.get_observation(experiment, observation.id) == updated

    store.delete_observation(experiment, observation.id)
    with pytest.raises(NotFoundError, match=f"observation {observation.id}"):
        store.get_observation(experiment, observation.id)
    # The point was evaluated: its suggestion is not handed out again.
    assert store.get_suggestion(experiment, suggestion.id).state == "closed"


def test_only_open_suggestions_can_be_deleted(
    store: Store, spec: ExperimentSpec
) -> None:
    experiment = store.create_experiment(spec)
    observed = store.add_suggestion(experiment, {"lr": 0.5, "depth": 2})
    store.add_observation(
        experiment,
        observed.assignments,
        [MetricValue("loss", 1.0)],
        suggestion_id=observed.id,
    )
    for _ in range(2):
        store.add_suggestion(experiment, {"lr": 0.2, "depth": 1})

    with pytest.raises(SpecError, match="delete the observation instead"):
        store.delete_suggestion(experiment, observed.id)
    assert store.delete_open_suggestions(experiment) == 2
    assert [s.id for s in store.list_suggestions(experiment)] == [observed.id]


def test_idempotency_key_is_claimed_once(store: Store) -> None:
    token = store.create_token("retrier")[0].id

    assert store.claim_idempotency_key(token, "k1", "POST /a") is None
    in_progress = store.claim_idempotency_key(token, "k1", "POST /a")
    assert in_progress is not None and in_progress.status == 0

    store.settle_idempotency_key(token, "k1", 200, {"id": 7})
    kept = store.claim_idempotency_key(token, "k1", "POST /a")
    assert kept is not None and (kept.status, kept.answer) == (200, {"id": 7})

    store.release_idempotency_key(token, "k1")
    assert store.claim_idempotency_key(token, "k1", "POST /a") is None


def test_suggestions_are_chosen_one_writer_at_a_time(
    db_url: str, spec: ExperimentSpec
) -> None:
    # Two stores are two engines with their own connections, as two server
    # processes would have.  While the first chooses, the second must wait,
    # then see the first's point as pending.
    first, second = Store(db_url), Store(db_url)
    experiment = first.create_experiment(spec)
    first_is_choosing = threading.Event()
    release_first = threading.Event()
    pending_seen_by_second: list[int] = []

    def choose_slowly(
        _observations: list[Observation], _pending: list[Suggestion], _made: int
    ) -> dict[str, float]:
        first_is_choosing.set()
        release_first.wait(timeout=30)
        return {"lr": 0.3, "depth": 1}

    def choose_after(
        _observations: list[Observation], pending: list[Suggestion], made: int
    ) -> dict[str, float]:
        pending_seen_by_second.append(len(pending))
        pending_seen_by_second.append(made)
        return {"lr": 0.7, "depth": 3}

    def suggest(store: Store, choose: PointChooser) -> None:
        store.add_suggestion_atomically(experiment, choose)

    threads = [threading.Thread(target=suggest, args=(first, choose_slowly))]
    threads[0].start()
    assert first_is_choosing.wait(timeout=30)
    threads.append(threading.Thread(target=suggest, args=(second, choose_after)))
    threads[1].start()

    time.sleep(0.5)
    assert pending_seen_by_second == []  # still waiting for the first
    release_first.set()
    for thread in threads:
        thread.join(timeout=60)

    assert pending_seen_by_second == [1, 1]
    assert len(first.open_suggestions(experiment)) == 2
    first.close()
    second.close()


def test_chooser_refusing_stores_nothing(store: Store, spec: ExperimentSpec) -> None:
    experiment = store.create_experiment(spec)

    assert store.add_suggestion_atomically(experiment, lambda *_: None) is None
    with pytest.raises(NotFoundError, match="experiment 999"):
        store.add_suggestion_atomically(999, lambda *_: {"lr": 0.5, "depth": 1})
    assert store.list_suggestions(experiment) == []
