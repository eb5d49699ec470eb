"""Tokens are listed and revoked; names are required and name one token."""

from __future__ import annotations

import pytest

from optiloop.errors import NotFoundError, SpecError
from optiloop.experiment import ExperimentSpec
from optiloop.store import Store


def test_a_revoked_token_is_refused_and_its_experiments_stay(
    store: Store, spec: ExperimentSpec
) -> None:
    record, secret = store.create_token("ci")
    experiment_id = store.create_experiment(spec, record.id)

    revoked = store.revoke_token("ci")

    assert revoked.id == record.id and revoked.revoked
    assert store.find_token(secret) is None
    assert store.get_experiment(experiment_id).owner_token_id == record.id


def test_tokens_are_listed_oldest_first_with_their_state(store: Store) -> None:
    first, _ = store.create_token("first")
    second, second_secret = store.create_token("second")
    store.revoke_token(str(first.id))

    listed = store.list_tokens()

    assert [(t.id, t.name, t.revoked) for t in listed] == [
        (first.id, "first", True),
        (second.id, "second", False),
    ]
    assert store.find_token(second_secret) == listed[1]


def test_a_name_is_free_again_once_its_token_is_revoked(store: Store) -> None:
    store.create_token("laptop")
    with pytest.raises(SpecError, match="token name 'laptop' is taken"):
        store.create_token("laptop")

    store.revoke_token("laptop")
    again, secret = store.create_token("laptop")

    assert store.find_token(secret) == again
    assert [t.revoked for t in store.list_tokens()] == [True, False]


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * 101, "at most 100 characters"),
        ("42", "all digits"),
        ("a\x00b", "control characters"),
    ],
)
def test_bad_token_names_are_refused(store: Store, name: str, words: str) -> None:
    with pytest.raises(SpecError, match=words):
        store.create_token(name)
    assert store.list_tokens() == []


def test_revoking_an_unknown_or_revoked_token_says_so(store: Store) -> None:
    record, _ = store.create_token("once")
    with pytest.raises(NotFoundError, match="token 'nobody' not found"):
        store.revoke_token("nobody")

    store.revoke_token("once")

    with pytest.raises(SpecError, match="already revoked"):
        store.revoke_token(str(record.id))
    # By name, only tokens in use are found.
    with pytest.raises(NotFoundError):
        store.revoke_token("once")
