"""Durable state: experiments, their suggestions and their observations.

``Store`` is the only door to the database.  It takes and returns the plain
records of ``optiloop.experiment`` (never ORM objects), and every method is
one short transaction that is committed before it returns, so nothing a
caller was told is stored can be lost by a crash a moment later.

The store keeps records; it does not judge them.  Checking assignments and
values against the spec, and choosing points, is the job of the layer above
(``optiloop.client.local``).  The one rule kept here is that a suggestion is
observed once, because only a transaction can keep it when two writers race.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, case, func, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from optiloop.errors import NotFoundError, SpecError, StoreError
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
    ExperimentRow,
    ObservationRow,
    SuggestionRow,
    utc_now,
)

logger = logging.getLogger(__name__)

DEFAULT_DB_URL = "sqlite:///optiloop.db"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Where alembic records the schema revision a database is at.
VERSION_TABLE = "alembic_version"

ExperimentState = Literal["active", "deleted"]
SuggestionState = Literal["open", "closed"]


@dataclass(frozen=True)
class ExperimentRecord:
    """A stored experiment: its validated spec and its life cycle."""

    id: int
    spec: ExperimentSpec
    state: ExperimentState
    created: datetime
    updated: datetime


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

    def create_experiment(self, spec: ExperimentSpec) -> int:
        """Store a validated spec as a new active experiment; return its id."""
        now = utc_now()
        row = ExperimentRow(
            name=spec.name,
            spec=spec.to_dict(),
            state="active",
            created=now,
            updated=now,
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
        self, *, include_deleted: bool = False
    ) -> list[ExperimentRecord]:
        """Experiments, oldest first; deleted ones only when asked for."""
        query = select(ExperimentRow).order_by(ExperimentRow.id)
        if not include_deleted:
            query = query.where(ExperimentRow.state == "active")
        with self._reading() as session:
            rows = session.scalars(query).all()
            return [_experiment_record(row) for row in rows]

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
            _experiment_row(session, experiment_id)
            session.add(row)
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
    ) -> Observation:
        """Store an observation and close its suggestion, in one transaction.

        Raises SpecError if the suggestion was already observed.
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
            _experiment_row(session, experiment_id)
            if suggestion_id is not None:
                _close_suggestion(session, experiment_id, suggestion_id)
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
            row = session.get(ObservationRow, observation_id)
            if row is None or row.experiment_id != experiment_id:
                raise NotFoundError(
                    f"observation {observation_id} not found in experiment "
                    f"{experiment_id}"
                )
            return _observation_record(row)

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

    # Sessions

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        with self._database_errors(), self._reads.begin() as session:
            yield session

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        """A session whose transaction holds the write lock and commits on exit."""
        with self._database_errors(), self._writes.begin() as session:
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


def _experiment_row(session: Session, experiment_id: int) -> ExperimentRow:
    row = session.get(ExperimentRow, experiment_id)
    if row is None:
        raise NotFoundError(f"experiment {experiment_id} not found")
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
