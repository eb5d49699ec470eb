"""Durable state: experiments, their suggestions and observations, campaigns.

``Store`` is the only door to the database.  It takes and returns the plain
records of ``optiloop.experiment`` (never ORM objects), and every method is
one short transaction that is committed before it returns, so nothing a
caller was told is stored can be lost by a crash a moment later.

The store keeps records; it does not judge them.  Checking assignments and
values against the spec, and choosing points, is the job of the layer above
(``optiloop.client.local``).  Two rules are kept here, because only a
transaction can keep them when two writers race: a suggestion is observed
once, and a new suggestion is chosen from a history that no other writer
changes until it is stored (``add_suggestion_atomically``).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, case, func, inspect, select, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from optiloop.errors import BudgetSpentError, NotFoundError, SpecError, StoreError
from optiloop.experiment import (
    ExperimentSpec,
    MetricValue,
    Observation,
    Suggestion,
    parse_spec,
)
from optiloop.space import Assignments, Value
from optiloop.store.engine import WRITE, create_store_engine
from optiloop.store.models import (
    NAME_LENGTH,
    CampaignRow,
    ExperimentRow,
    IdempotentRequestRow,
    ObservationRow,
    SuggestionRow,
    TokenRow,
    utc_now,
)

logger = logging.getLogger(__name__)

DEFAULT_DB_URL = "sqlite:///optiloop.db"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Where alembic records the schema revision a database is at.
VERSION_TABLE = "alembic_version"

ExperimentState = Literal["active", "deleted"]
SuggestionState = Literal["open", "closed"]
CampaignState = Literal["running", "stopped", "done"]
CampaignRole = Literal["round", "validation", "grid"]

# A token is this prefix and 32 random bytes, URL-safe: 256 bits that no one
# guesses, and a prefix that secret scanners and people recognise.
TOKEN_PREFIX = "olt_"
TOKEN_BYTES = 32

# The status an idempotent request is kept with until its answer is known.
IN_PROGRESS = 0

# Chooses a new point from (observations, open suggestions, suggestions made
# so far), or None when there is no new point; may raise to refuse.
PointChooser = Callable[
    [list[Observation], list[Suggestion], int], Mapping[str, Value] | None
]


@dataclass(frozen=True)
class ExperimentRecord:
    """A stored experiment: its validated spec and its life cycle.

    An experiment that a campaign made names the campaign, its round (none
    for a validation), its role and the refinement that set its bounds.
    ``updated`` moves forward with every change to the experiment, its
    suggestions or its observations.
    """

    id: int
    spec: ExperimentSpec
    state: ExperimentState
    created: datetime
    updated: datetime
    owner_token_id: int | None = None
    campaign_id: int | None = None
    campaign_round: int | None = None
    campaign_role: CampaignRole | None = None
    refinement: dict[str, Any] | None = None


@dataclass(frozen=True)
class CampaignRecord:
    """A stored campaign: its file as JSON, its state and its answer.

    ``result`` is what the campaign wrote when it stopped or finished.
    """

    id: int
    name: str
    file: dict[str, Any]
    state: CampaignState
    created: datetime
    updated: datetime
    owner_token_id: int | None = None
    result: dict[str, Any] | None = None


@dataclass(frozen=True)
class TokenRecord:
    """An API token of the server; the token itself is never stored."""

    id: int
    name: str
    created: datetime
    revoked: bool = False


@dataclass(frozen=True)
class IdempotentAnswer:
    """What a POST with an ``Idempotency-Key`` was answered.

    ``status`` is ``IN_PROGRESS`` (0) while the first request still runs.
    """

    request: str
    status: int
    answer: dict[str, Any]


@dataclass(frozen=True)
class ExperimentCounts:
    """How many suggestions and observations an experiment holds."""

    observations: int
    failed_observations: int
    suggestions: int
    open_suggestions: int


def alembic_config(url: str | None = None) -> Config:
    """An alembic configuration for the store's migrations, with no ini file.

    A developer writes the next revision with, for example::

        command.revision(alembic_config("sqlite:///dev.db"),
                         message="add campaigns", autogenerate=True)
    """
    config = Config()
    # Config values pass through configparser, where % starts a reference.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


class Store:
    """The database behind optiloop, migrated to the newest schema on open.

    ``url`` is any SQLAlchemy URL: a SQLite file (the default, created with
    its folder when missing), ``sqlite://`` for a throwaway in-memory store,
    or a PostgreSQL server.
    """

    def __init__(self, url: str = DEFAULT_DB_URL) -> None:
        self.url = url
        self._engine = create_store_engine(url)
        self._reads = sessionmaker(self._engine, expire_on_commit=False)
        self._writes = sessionmaker(
            self._engine.execution_options(**WRITE), expire_on_commit=False
        )
        # SQLite lets one writer in at a time and makes the others poll with
        # growing sleeps, so under many threads (a busy server) some wait
        # seconds behind luckier ones.  Queuing this process's writers on a
        # lock first leaves SQLite's polling to writers of other processes.
        self._sqlite_writer = (
            threading.Lock() if self._engine.dialect.name == "sqlite" else None
        )
        self._migrate()

    def close(self) -> None:
        """Close the pooled connections; the store can no longer be used."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self._safe_url!r})"

    # Experiments

    def create_experiment(
        self, spec: ExperimentSpec, owner_token_id: int | None = None
    ) -> int:
        """Store a validated spec as a new active experiment; return its id.

        ``owner_token_id`` is the API token that created it on a server; an
        experiment made in-process has none.
        """
        now = utc_now()
        row = ExperimentRow(
            name=spec.name,
            spec=spec.to_dict(),
            state="active",
            created=now,
            updated=now,
            owner_token_id=owner_token_id,
        )
        with self._writing() as session:
            session.add(row)
            session.flush()

        logger.info("experiment %d created (%s)", row.id, spec.name)
        return row.id

    def get_experiment(self, experiment_id: int) -> ExperimentRecord:
        """The experiment with this id, deleted or not."""
        with self._reading() as session:
            row = _experiment_row(session, experiment_id)
            return _experiment_record(row)

    def list_experiments(
        self, *, include_deleted: bool = False, owner_token_id: int | None = None
    ) -> list[ExperimentRecord]:
        """Experiments, oldest first; deleted ones only when asked for.

        With ``owner_token_id``, only the experiments of that token.
        """
        query = select(ExperimentRow).order_by(ExperimentRow.id)
        if not include_deleted:
            query = query.where(ExperimentRow.state == "active")
        if owner_token_id is not None:
            query = query.where(ExperimentRow.owner_token_id == owner_token_id)
        with self._reading() as session:
            rows = session.scalars(query).all()
            return [_experiment_record(row) for row in rows]

    def update_experiment(self, experiment_id: int, spec: ExperimentSpec) -> None:
        """Replace an experiment's spec with a validated one."""
        with self._writing() as session:
            row = _experiment_row(session, experiment_id)
            row.name = spec.name
            row.spec = spec.to_dict()
            row.updated = utc_now()

        logger.info("experiment %d updated", experiment_id)

    def delete_experiment(self, experiment_id: int) -> None:
        """Mark an experiment deleted; its history stays readable."""
        with self._writing() as session:
            row = _experiment_row(session, experiment_id)
            row.state = "deleted"
            row.updated = utc_now()

        logger.info("experiment %d deleted", experiment_id)

    def counts(self, experiment_id: int) -> ExperimentCounts:
        """Suggestions and observations of an experiment, counted in the database."""
        observation_query = select(
            func.count(ObservationRow.id),
            func.count(case((ObservationRow.failed, 1))),
        ).where(ObservationRow.experiment_id == experiment_id)
        suggestion_query = select(
            func.count(SuggestionRow.id),
            func.count(case((SuggestionRow.state == "open", 1))),
        ).where(SuggestionRow.experiment_id == experiment_id)

        with self._reading() as session:
            _experiment_row(session, experiment_id)
            observations, failed = session.execute(observation_query).one()
            suggestions, open_suggestions = session.execute(suggestion_query).one()

        return ExperimentCounts(
            observations=observations,
            failed_observations=failed,
            suggestions=suggestions,
            open_suggestions=open_suggestions,
        )

    # Suggestions

    def add_suggestion(
        self, experiment_id: int, assignments: Mapping[str, Value]
    ) -> Suggestion:
        """Store a point as an open suggestion of the experiment."""
        row = SuggestionRow(
            experiment_id=experiment_id,
            assignments=dict(assignments),
            state="open",
            created=utc_now(),
        )
        with self._writing() as session:
            _touch(_experiment_row(session, experiment_id))
            session.add(row)
            session.flush()

        logger.info("suggestion %d stored for experiment %d", row.id, experiment_id)
        return _suggestion_record(row)

    def add_suggestion_atomically(
        self, experiment_id: int, choose: PointChooser
    ) -> Suggestion | None:
        """Choose a point from the history and store it, in one transaction.

        No other writer changes the experiment between the read and the
        insert: SQLite's write lock is taken when the transaction begins
        (``BEGIN IMMEDIATE``), PostgreSQL locks the experiment's row.  So
        two processes asking at once never get the same pending point, and
        never pass the budget together.  The lock is held while ``choose``
        runs, which serializes suggestions of one database; ``choose`` must
        not open a write transaction of its own.

        Returns None, storing nothing, when ``choose`` finds no new point.
        """
        observation_query = (
            select(ObservationRow)
            .where(ObservationRow.experiment_id == experiment_id)
            .order_by(ObservationRow.id)
        )
        pending_query = (
            select(SuggestionRow)
            .where(SuggestionRow.experiment_id == experiment_id)
            .where(SuggestionRow.state == "open")
            .order_by(SuggestionRow.id)
        )
        made_query = select(func.count(SuggestionRow.id)).where(
            SuggestionRow.experiment_id == experiment_id
        )

        with self._writing() as session:
            lock = (
                select(ExperimentRow)
                .where(ExperimentRow.id == experiment_id)
                .with_for_update()
            )
            experiment = session.scalars(lock).one_or_none()
            if experiment is None:
                raise NotFoundError(f"experiment {experiment_id} not found")

            observations = [
                _observation_record(row) for row in session.scalars(observation_query)
            ]
            pending = [
                _suggestion_record(row) for row in session.scalars(pending_query)
            ]
            made = session.execute(made_query).scalar_one()

            point = choose(observations, pending, made)
            if point is None:
                return None
            row = SuggestionRow(
                experiment_id=experiment_id,
                assignments=dict(point),
                state="open",
                created=utc_now(),
            )
            session.add(row)
            _touch(experiment)
            session.flush()

        logger.info("suggestion %d stored for experiment %d", row.id, experiment_id)
        return _suggestion_record(row)

    def get_suggestion(self, experiment_id: int, suggestion_id: int) -> Suggestion:
        """One suggestion of the experiment, open or closed."""
        with self._reading() as session:
            row = _suggestion_row(session, experiment_id, suggestion_id)
            return _suggestion_record(row)

    def list_suggestions(
        self, experiment_id: int, state: SuggestionState | None = None
    ) -> list[Suggestion]:
        """The experiment's suggestions, oldest first, optionally of one state."""
        query = (
            select(SuggestionRow)
            .where(SuggestionRow.experiment_id == experiment_id)
            .order_by(SuggestionRow.id)
        )
        if state is not None:
            query = query.where(SuggestionRow.state == state)

        with self._reading() as session:
            _experiment_row(session, experiment_id)
            rows = session.scalars(query).all()
            return [_suggestion_record(row) for row in rows]

    def open_suggestions(self, experiment_id: int) -> list[Suggestion]:
        """Suggestions handed out and not yet observed (the pending points)."""
        return self.list_suggestions(experiment_id, state="open")

    def delete_suggestion(self, experiment_id: int, suggestion_id: int) -> None:
        """Withdraw an open suggestion; an observed one stays, with its record.

        Raises SpecError for a closed suggestion: its observation refers to it.
        """
        with self._writing() as session:
            row = _suggestion_row(session, experiment_id, suggestion_id)
            if row.state == "closed":
                raise SpecError(
                    f"suggestion {suggestion_id} of experiment {experiment_id} "
                    "is closed: an observation reported it, and deleting it "
                    "would orphan that observation; delete the observation "
                    "instead"
                )
            session.delete(row)
            _touch(_experiment_row(session, experiment_id))

        logger.info(
            "suggestion %d of experiment %d deleted", suggestion_id, experiment_id
        )

    def delete_open_suggestions(self, experiment_id: int) -> int:
        """Withdraw every open suggestion of the experiment; return how many."""
        query = (
            select(SuggestionRow)
            .where(SuggestionRow.experiment_id == experiment_id)
            .where(SuggestionRow.state == "open")
        )
        with self._writing() as session:
            experiment = _experiment_row(session, experiment_id)
            rows = session.scalars(query).all()
            for row in rows:
                session.delete(row)
            if rows:
                _touch(experiment)

        logger.info(
            "%d open suggestions of experiment %d deleted", len(rows), experiment_id
        )
        return len(rows)

    # Observations

    def add_observation(
        self,
        experiment_id: int,
        assignments: Mapping[str, Value],
        values: Sequence[MetricValue] = (),
        *,
        failed: bool = False,
        suggestion_id: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        budget: int | None = None,
    ) -> Observation:
        """Store an observation and close its suggestion, in one transaction.

        Raises SpecError if the suggestion was already observed.  With
        ``budget``, an observation without a suggestion is a new point and
        raises BudgetSpentError when observations plus open suggestions
        already reach it, counted in the same transaction so that two
        writers cannot both take the last place.
        """
        row = ObservationRow(
            experiment_id=experiment_id,
            suggestion_id=suggestion_id,
            assignments=dict(assignments),
            values=[_value_json(value) for value in values],
            failed=failed,
            metadata_=dict(metadata or {}),
            created=utc_now(),
        )
        with self._writing() as session:
            _touch(_experiment_row(session, experiment_id))
            if suggestion_id is not None:
                _close_suggestion(session, experiment_id, suggestion_id)
            elif budget is not None:
                _refuse_past_budget(session, experiment_id, budget)
            session.add(row)
            session.flush()

        logger.info(
            "observation %d stored for experiment %d%s",
            row.id,
            experiment_id,
            "" if suggestion_id is None else f", closing suggestion {suggestion_id}",
        )
        return _observation_record(row)

    def get_observation(self, experiment_id: int, observation_id: int) -> Observation:
        """One observation of the experiment."""
        with self._reading() as session:
            row = _observation_row(session, experiment_id, observation_id)
            return _observation_record(row)

    def update_observation(
        self,
        experiment_id: int,
        observation_id: int,
        values: Sequence[MetricValue],
        *,
        failed: bool,
        metadata: Mapping[str, Any],
    ) -> Observation:
        """Replace what an observation measured; its point stays as it was."""
        with self._writing() as session:
            row = _observation_row(session, experiment_id, observation_id)
            row.values = [_value_json(value) for value in values]
            row.failed = failed
            row.metadata_ = dict(metadata)
            _touch(_experiment_row(session, experiment_id))

        logger.info(
            "observation %d of experiment %d updated", observation_id, experiment_id
        )
        return _observation_record(row)

    def delete_observation(self, experiment_id: int, observation_id: int) -> None:
        """Remove an observation for good.

        Its suggestion, if any, stays closed: the point was evaluated, and
        reopening it would hand the same point out again.
        """
        with self._writing() as session:
            row = _observation_row(session, experiment_id, observation_id)
            session.delete(row)
            _touch(_experiment_row(session, experiment_id))

        logger.info(
            "observation %d of experiment %d deleted", observation_id, experiment_id
        )

    def list_observations(self, experiment_id: int) -> list[Observation]:
        """The experiment's observations, oldest first, failed ones included."""
        query = (
            select(ObservationRow)
            .where(ObservationRow.experiment_id == experiment_id)
            .order_by(ObservationRow.id)
        )
        with self._reading() as session:
            _experiment_row(session, experiment_id)
            rows = session.scalars(query).all()
            return [_observation_record(row) for row in rows]

    # Campaigns

    def create_campaign(
        self,
        name: str,
        file: Mapping[str, Any],
        owner_token_id: int | None = None,
    ) -> int:
        """Store a campaign, running, with its file as given; return its id.

        The file is checked by the layer above; here it is plain JSON.
        """
        now = utc_now()
        row = CampaignRow(
            name=name,
            file=dict(file),
            state="running",
            created=now,
            updated=now,
            owner_token_id=owner_token_id,
            result=None,
        )
        with self._writing() as session:
            session.add(row)
            session.flush()

        logger.info("campaign %d created (%s)", row.id, name)
        return row.id

    def get_campaign(
        self, campaign_id: int, owner_token_id: int | None = None
    ) -> CampaignRecord:
        """The campaign with this id; with ``owner_token_id``, only if that
        token owns it (another token's campaign is not found)."""
        with self._reading() as session:
            row = _campaign_row(session, campaign_id, owner_token_id)
            return _campaign_record(row)

    def list_campaigns(self, owner_token_id: int | None = None) -> list[CampaignRecord]:
        """Campaigns, oldest first; with ``owner_token_id``, only that token's."""
        query = select(CampaignRow).order_by(CampaignRow.id)
        if owner_token_id is not None:
            query = query.where(CampaignRow.owner_token_id == owner_token_id)
        with self._reading() as session:
            return [_campaign_record(row) for row in session.scalars(query)]

    def update_campaign(
        self,
        campaign_id: int,
        *,
        state: CampaignState | None = None,
        result: Mapping[str, Any] | None = None,
    ) -> CampaignRecord:
        """Change a campaign's state or result; what is not given stays."""
        with self._writing() as session:
            row = _campaign_row(session, campaign_id)
            if state is not None:
                row.state = state
            if result is not None:
                row.result = dict(result)
            row.updated = utc_now()

        logger.info("campaign %d updated (%s)", campaign_id, row.state)
        return _campaign_record(row)

    def campaign_experiments(self, campaign_id: int) -> list[ExperimentRecord]:
        """The experiments of a campaign, in the order they were made."""
        query = (
            select(ExperimentRow)
            .where(ExperimentRow.campaign_id == campaign_id)
            .order_by(ExperimentRow.id)
        )
        with self._reading() as session:
            _campaign_row(session, campaign_id)
            return [_experiment_record(row) for row in session.scalars(query)]

    def create_campaign_experiment(
        self,
        campaign_id: int,
        spec: ExperimentSpec,
        *,
        role: CampaignRole,
        round: int | None = None,
        refinement: Mapping[str, Any] | None = None,
        owner_token_id: int | None = None,
        observations: Sequence[Observation] = (),
        suggestions: Sequence[Mapping[str, Value]] = (),
    ) -> int:
        """Store an experiment of a campaign with its first rows; return its id.

        ``observations`` (a warm start: points measured before) and open
        ``suggestions`` (points chosen ahead, as a validation's) are stored
        with the experiment in one transaction, so a crash leaves either
        all of them or nothing.  The layer above checks them against the
        spec first.
        """
        now = utc_now()
        row = ExperimentRow(
            name=spec.name,
            spec=spec.to_dict(),
            state="active",
            created=now,
            updated=now,
            owner_token_id=owner_token_id,
            campaign_id=campaign_id,
            campaign_round=round,
            campaign_role=role,
            refinement=None if refinement is None else dict(refinement),
        )
        with self._writing() as session:
            _campaign_row(session, campaign_id)
            session.add(row)
            session.flush()
            for observation in observations:
                session.add(
                    ObservationRow(
                        experiment_id=row.id,
                        suggestion_id=None,
                        assignments=dict(observation.assignments),
                        values=[_value_json(value) for value in observation.values],
                        failed=observation.failed,
                        metadata_=dict(observation.metadata),
                        created=now,
                    )
                )
            for assignments in suggestions:
                session.add(
                    SuggestionRow(
                        experiment_id=row.id,
                        assignments=dict(assignments),
                        state="open",
                        created=now,
                    )
                )

        logger.info(
            "experiment %d created for campaign %d (%s%s), with %d observations "
            "and %d open suggestions",
            row.id,
            campaign_id,
            role,
            "" if round is None else f" {round}",
            len(observations),
            len(suggestions),
        )
        return row.id

    # Tokens

    def create_token(self, name: str) -> tuple[TokenRecord, str]:
        """A new API token: its record, and the token, which only this call
        returns; the database keeps its SHA-256 digest.

        ``name`` is unique among tokens not revoked, so that it names one
        token in ``revoke_token``.
        """
        _check_token_name(name)
        secret = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
        row = TokenRow(name=name, digest=token_digest(secret), created=utc_now())
        taken = select(TokenRow.id).where(
            TokenRow.name == name, TokenRow.revoked.is_(False)
        )
        with self._writing() as session:
            if session.scalars(taken).first() is not None:
                raise SpecError(
                    f"token name {name!r} is taken by a token in use; choose "
                    "another name, or revoke that token first"
                )
            session.add(row)
            session.flush()

        logger.info("token %d created (%s)", row.id, name)
        return _token_record(row), secret

    def find_token(self, secret: str) -> TokenRecord | None:
        """The token whose digest matches ``secret``, or None; a revoked
        token is found by no one."""
        query = select(TokenRow).where(
            TokenRow.digest == token_digest(secret), TokenRow.revoked.is_(False)
        )
        with self._reading() as session:
            row = session.scalars(query).one_or_none()
            return None if row is None else _token_record(row)

    def list_tokens(self) -> list[TokenRecord]:
        """Every token, revoked ones too, oldest first; never the token."""
        with self._reading() as session:
            rows = session.scalars(select(TokenRow).order_by(TokenRow.id))
            return [_token_record(row) for row in rows]

    def revoke_token(self, name_or_id: str) -> TokenRecord:
        """Refuse the token from now on; its experiments stay stored.

        A string of digits is an id; anything else names a token in use.
        """
        query = select(TokenRow)
        if name_or_id.strip().isascii() and name_or_id.strip().isdigit():
            query = query.where(TokenRow.id == int(name_or_id))
        else:
            query = query.where(
                TokenRow.name == name_or_id, TokenRow.revoked.is_(False)
            )
        with self._writing() as session:
            row = session.scalars(query).first()
            if row is None:
                raise NotFoundError(
                    f"token {name_or_id!r} not found; 'optiloop token list' "
                    "shows the names and ids"
                )
            if row.revoked:
                raise SpecError(f"token {row.id} ({row.name}) is already revoked")
            row.revoked = True
            record = _token_record(row)

        logger.info("token %d revoked (%s)", record.id, record.name)
        return record

    # Idempotent requests

    def claim_idempotency_key(
        self, token_id: int, key: str, request: str
    ) -> IdempotentAnswer | None:
        """Reserve ``key`` for a request, or return what it already holds.

        None means the caller holds the key now and must run the request,
        then ``settle_idempotency_key``.  Otherwise the answer is the one a
        request with this key got (or ``IN_PROGRESS`` while it runs).
        """
        row = IdempotentRequestRow(
            token_id=token_id,
            key=key,
            request=request,
            status=IN_PROGRESS,
            answer={},
            created=utc_now(),
        )
        try:
            with self._writes.begin() as session:
                session.add(row)
                session.flush()
            return None
        except IntegrityError:
            pass  # another request with this key was first
        except SQLAlchemyError as error:
            raise StoreError(
                f"the database at {self._safe_url} failed: {error}"
            ) from error

        query = select(IdempotentRequestRow).where(
            IdempotentRequestRow.token_id == token_id,
            IdempotentRequestRow.key == key,
        )
        with self._reading() as session:
            kept = session.scalars(query).one()
            return IdempotentAnswer(kept.request, kept.status, dict(kept.answer))

    def settle_idempotency_key(
        self, token_id: int, key: str, status: int, answer: Mapping[str, Any]
    ) -> None:
        """Keep the answer of a request that claimed ``key``."""
        query = select(IdempotentRequestRow).where(
            IdempotentRequestRow.token_id == token_id,
            IdempotentRequestRow.key == key,
        )
        with self._writing() as session:
            row = session.scalars(query).one()
            row.status = status
            row.answer = dict(answer)

    def release_idempotency_key(self, token_id: int, key: str) -> None:
        """Forget a claim whose request failed before it had an answer."""
        query = select(IdempotentRequestRow).where(
            IdempotentRequestRow.token_id == token_id,
            IdempotentRequestRow.key == key,
        )
        with self._writing() as session:
            row = session.scalars(query).one_or_none()
            if row is not None:
                session.delete(row)

    # Sessions

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        with self._database_errors(), self._reads.begin() as session:
            yield session

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        """A session whose transaction holds the write lock and commits on exit."""
        with (
            self._sqlite_writer or nullcontext(),
            self._database_errors(),
            self._writes.begin() as session,
        ):
            yield session

    @contextmanager
    def _database_errors(self) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as error:
            raise StoreError(
                f"the database at {self._safe_url} failed: {error}"
            ) from error

    def _migrate(self) -> None:
        """Upgrade the database to the newest revision, in one transaction.

        On SQLite the write lock lets only one process migrate a new file;
        the others wait and then find it current.  PostgreSQL has no such
        guard here yet: two processes opening a new database at the same
        moment may both try to create the tables, and one fails.
        """
        config = alembic_config()
        head = set(ScriptDirectory.from_config(config).get_heads())
        try:
            with self._engine.execution_options(**WRITE).begin() as connection:
                # Opening an up-to-date database is the common case; skip
                # alembic's machinery (and its log lines) for it.
                if _applied_revisions(connection) == head:
                    return
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except (SQLAlchemyError, CommandError) as error:
            raise StoreError(
                f"could not bring the database at {self._safe_url} to the "
                f"current schema: {error}"
            ) from error

    @property
    def _safe_url(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)


def _applied_revisions(connection: Connection) -> set[str]:
    """The schema revisions recorded in the database (none when it is new)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return set()
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
    return {str(revision) for revision in rows.scalars()}


def _campaign_row(
    session: Session, campaign_id: int, owner_token_id: int | None = None
) -> CampaignRow:
    row = session.get(CampaignRow, campaign_id)
    # Another token's campaign is answered as a missing one.
    if row is None or (
        owner_token_id is not None and row.owner_token_id != owner_token_id
    ):
        raise NotFoundError(f"campaign {campaign_id} not found")
    return row


def _experiment_row(session: Session, experiment_id: int) -> ExperimentRow:
    row = session.get(ExperimentRow, experiment_id)
    if row is None:
        raise NotFoundError(f"experiment {experiment_id} not found")
    return row


def _touch(row: ExperimentRow) -> None:
    """Mark an experiment changed: one of its suggestions or observations was.

    Strictly later than the last mark even if the clock is coarse or was
    set back, since a reader (the dashboard's cache) takes an unchanged
    time to mean an unchanged experiment.
    """
    row.updated = max(utc_now(), row.updated + timedelta(microseconds=1))


def _check_token_name(name: str) -> None:
    if not name.strip():
        raise SpecError("token name must not be empty; name who or what uses it")
    if len(name) > NAME_LENGTH:
        raise SpecError(
            f"token name must be at most {NAME_LENGTH} characters, got "
            f"{len(name)}; shorten it"
        )
    if name.strip().isascii() and name.strip().isdigit():
        raise SpecError(
            f"token name {name!r} is all digits, which 'optiloop token revoke' "
            "would read as an id; add a letter"
        )
    if not name.isprintable():
        raise SpecError(
            f"token name {name!r} holds control characters; use printable text"
        )


def _token_record(row: TokenRow) -> TokenRecord:
    return TokenRecord(
        id=row.id, name=row.name, created=row.created, revoked=row.revoked
    )


def token_digest(secret: str) -> str:
    """The SHA-256 digest of a token, in hexadecimal: what the store keeps.

    A plain hash suffices (no salt, no slow hash): tokens carry 256 random
    bits, so there is no dictionary to try against a stolen digest.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def _observation_row(
    session: Session, experiment_id: int, observation_id: int
) -> ObservationRow:
    row = session.get(ObservationRow, observation_id)
    if row is None or row.experiment_id != experiment_id:
        _experiment_row(session, experiment_id)
        raise NotFoundError(
            f"observation {observation_id} not found in experiment {experiment_id}"
        )
    return row


def _suggestion_row(
    session: Session, experiment_id: int, suggestion_id: int
) -> SuggestionRow:
    row = session.get(SuggestionRow, suggestion_id)
    if row is None or row.experiment_id != experiment_id:
        _experiment_row(session, experiment_id)
        raise NotFoundError(
            f"suggestion {suggestion_id} not found in experiment {experiment_id}"
        )
    return row


def _close_suggestion(session: Session, experiment_id: int, suggestion_id: int) -> None:
    row = _suggestion_row(session, experiment_id, suggestion_id)
    if row.state == "closed":
        raise SpecError(
            f"suggestion {suggestion_id} of experiment {experiment_id} is already "
            "closed: an observation reported it; create a new suggestion, or "
            "report the point with assignments instead of a suggestion"
        )
    row.state = "closed"


def _value_json(value: MetricValue) -> dict[str, Any]:
    return {
        "name": value.name,
        "value": value.value,
        "value_stddev": value.value_stddev,
    }


def _experiment_record(row: ExperimentRow) -> ExperimentRecord:
    return ExperimentRecord(
        id=row.id,
        spec=parse_spec(row.spec),
        state=cast(ExperimentState, row.state),
        created=row.created,
        updated=row.updated,
        owner_token_id=row.owner_token_id,
        campaign_id=row.campaign_id,
        campaign_round=row.campaign_round,
        campaign_role=cast(CampaignRole | None, row.campaign_role),
        refinement=None if row.refinement is None else dict(row.refinement),
    )


def _campaign_record(row: CampaignRow) -> CampaignRecord:
    return CampaignRecord(
        id=row.id,
        name=row.name,
        file=dict(row.file),
        state=cast(CampaignState, row.state),
        created=row.created,
        updated=row.updated,
        owner_token_id=row.owner_token_id,
        result=None if row.result is None else dict(row.result),
    )


def _suggestion_record(row: SuggestionRow) -> Suggestion:
    return Suggestion(
        id=row.id,
        experiment_id=row.experiment_id,
        assignments=cast(Assignments, dict(row.assignments)),
        state=cast(SuggestionState, row.state),
        created=row.created,
    )


def _observation_record(row: ObservationRow) -> Observation:
    values = tuple(
        MetricValue(item["name"], item["value"], item.get("value_stddev"))
        for item in row.values
    )
    return Observation(
        assignments=cast(Assignments, dict(row.assignments)),
        values=values,
        failed=row.failed,
        id=row.id,
        experiment_id=row.experiment_id,
        suggestion_id=row.suggestion_id,
        metadata=dict(row.metadata_),
        created=row.created,
    )


def _refuse_past_budget(session: Session, experiment_id: int, budget: int) -> None:
    """BudgetSpentError when observations plus open suggestions reach
    ``budget``; the caller's write transaction makes the count exact."""
    observed = session.execute(
        select(func.count(ObservationRow.id)).where(
            ObservationRow.experiment_id == experiment_id
        )
    ).scalar_one()
    pending = session.execute(
        select(func.count(SuggestionRow.id)).where(
            SuggestionRow.experiment_id == experiment_id,
            SuggestionRow.state == "open",
        )
    ).scalar_one()
    if observed + pending >= budget:
        raise BudgetSpentError(
            f"observation budget spent for experiment {experiment_id}: "
            f"{observed} observed + {pending} open suggestions "
            f">= observation_budget {budget}; observe the open suggestions or "
            "raise the budget"
        )
