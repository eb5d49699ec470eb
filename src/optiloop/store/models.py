"""The database tables of the store, as SQLAlchemy 2 typed ORM classes.

Three tables hold an experiment's whole history, a fourth the campaigns
that chain experiments, and a fifth the API tokens of a shared server:

- ``experiments``: the validated spec as JSON, whether it is deleted, and
  the token that owns it (none for experiments made in-process);
- ``suggestions``: the points the optimizer handed out, ``open`` until an
  observation reports them, then ``closed``;
- ``observations``: what was measured at a point, with or without a
  suggestion behind it;
- ``tokens``: the SHA-256 digest of each API token, never the token itself;
- ``campaigns``: an outer loop of experiments (its file as JSON, its state
  and its final result); each experiment of a campaign names it, with its
  round, its role and the refinement of the bounds that made it;
- ``idempotent_requests``: the answer given to a POST sent with an
  ``Idempotency-Key``, so that a retried request creates nothing new.

The schema uses only portable types (JSON, timestamps with a time zone,
strings with CHECK constraints) so that a PostgreSQL URL works as well as a
SQLite file.  Every change here needs a matching revision under
``migrations/versions``; a test compares the two.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Connection,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
    event,
    false,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column

# Room for the longest name a spec accepts (experiment.MAX_NAME_LENGTH).
NAME_LENGTH = 100
STATE_LENGTH = 16
# A SHA-256 digest in hexadecimal.
DIGEST_LENGTH = 64
# Clients choose idempotency keys; UUIDs (36) fit with room to spare.
IDEMPOTENCY_KEY_LENGTH = 200
# "POST /v1/experiments/123/observations" and the like.
REQUEST_LENGTH = 300

EXPERIMENT_STATES = ("active", "deleted")
SUGGESTION_STATES = ("open", "closed")
CAMPAIGN_STATES = ("running", "stopped", "done")
CAMPAIGN_ROLES = ("round", "validation", "grid")

# Named constraints let later migrations alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite keeps no time zone with a timestamp, so the zone is dropped on the
    way in (after converting to UTC) and put back on the way out.  PostgreSQL
    keeps it; the conversion is then a no-op.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(
                f"timestamps must be timezone-aware, got naive {value}; "
                "use datetime.now(UTC)"
            )
        utc_value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return utc_value.replace(tzinfo=None)
        return utc_value

    def process_result_value(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _one_of(column: str, states: tuple[str, ...]) -> str:
    """A CHECK expression that keeps ``column`` within ``states``."""
    listed = ", ".join(f"'{state}'" for state in states)
    return f"{column} IN ({listed})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TokenRow(Base):
    """An API token of the server, known only by its SHA-256 digest."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH), unique=True)
    created: Mapped[datetime] = mapped_column(UtcDateTime)
    # A revoked token is refused; the row stays, since experiments name it.
    revoked: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )


class CampaignRow(Base):
    """A campaign: its file, where it stands, and its answer once known."""

    __tablename__ = "campaigns"
    __table_args__ = (CheckConstraint(_one_of("state", CAMPAIGN_STATES), "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    file: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    created: Mapped[datetime] = mapped_column(UtcDateTime)
    updated: Mapped[datetime] = mapped_column(UtcDateTime)
    owner_token_id: Mapped[int | None] = mapped_column(
        ForeignKey("tokens.id"), index=True
    )
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ExperimentRow(Base):
    """One experiment: its spec, whether it is still active, and its owner.

    An experiment made by a campaign names it, with its round (1, 2, ...;
    none for validation), its role and the refinement that set its bounds.
    """

    __tablename__ = "experiments"
    __table_args__ = (
        CheckConstraint(_one_of("state", EXPERIMENT_STATES), "state"),
        CheckConstraint(_one_of("campaign_role", CAMPAIGN_ROLES), "campaign_role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    created: Mapped[datetime] = mapped_column(UtcDateTime)
    updated: Mapped[datetime] = mapped_column(UtcDateTime)
    owner_token_id: Mapped[int | None] = mapped_column(
        ForeignKey("tokens.id"), index=True
    )
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaigns.id"), index=True
    )
    campaign_round: Mapped[int | None] = mapped_column(Integer)
    campaign_role: Mapped[str | None] = mapped_column(String(STATE_LENGTH))
    refinement: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class SuggestionRow(Base):
    """A point handed out for evaluation, open until it is observed."""

    __tablename__ = "suggestions"
    __table_args__ = (CheckConstraint(_one_of("state", SUGGESTION_STATES), "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), index=True)
    assignments: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(STATE_LENGTH))
    created: Mapped[datetime] = mapped_column(UtcDateTime)


class ObservationRow(Base):
    """What was measured at a point; ``values`` is a list of metric values.

    A suggestion is observed at most once, which the unique ``suggestion_id``
    enforces even against two writers racing.
    """

    __tablename__ = "observations"

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), index=True)
    suggestion_id: Mapped[int | None] = mapped_column(
        ForeignKey("suggestions.id"), unique=True
    )
    assignments: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Each item is {"name": str, "value": float, "value_stddev": float | None}.
    values: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    failed: Mapped[bool] = mapped_column(Boolean)
    # ``metadata`` is taken by the declarative base, hence the underscore.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    created: Mapped[datetime] = mapped_column(UtcDateTime)


class IdempotentRequestRow(Base):
    """The answer a token got for a POST carrying an ``Idempotency-Key``."""

    __tablename__ = "idempotent_requests"
    __table_args__ = (UniqueConstraint("token_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("tokens.id"))
    key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_LENGTH))
    # What was asked (method and path) and what was answered.
    request: Mapped[str] = mapped_column(String(REQUEST_LENGTH))
    status: Mapped[int] = mapped_column(Integer)
    answer: Mapped[dict[str, Any]] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(UtcDateTime)


class IdHighWaterRow(Base):
    """The highest id a table has ever handed out, kept for SQLite.

    SQLite gives a new row the highest id in use plus one, so deleting the
    newest suggestion or observation would hand its id to the next one, and
    a client still holding the old id (a crashed worker's late report, a
    stale update) would reach another point's row.  Suggestions and
    observations therefore take their ids from this mark on SQLite
    (``_claim_id``); PostgreSQL's sequences never reuse an id.
    """

    __tablename__ = "id_high_water"

    table_name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    last_id: Mapped[int] = mapped_column(Integer)


def _claim_id(_mapper: Mapper[Any], connection: Connection, row: Any) -> None:
    """Give a new row of a SQLite table an id above any it ever had."""
    if connection.dialect.name != "sqlite" or row.id is not None:
        return
    table = row.__table__
    marks = IdHighWaterRow.__table__
    assert isinstance(marks, Table)
    in_use = connection.execute(select(func.max(table.c.id))).scalar() or 0
    mark = connection.execute(
        select(marks.c.last_id).where(marks.c.table_name == table.name)
    ).scalar()
    row.id = max(in_use, mark or 0) + 1
    if mark is None:
        connection.execute(insert(marks).values(table_name=table.name, last_id=row.id))
    else:
        connection.execute(
            update(marks).where(marks.c.table_name == table.name).values(last_id=row.id)
        )


for _row_class in (SuggestionRow, ObservationRow):
    event.listen(_row_class, "before_insert", _claim_id)
