"""Durable state of optiloop: a SQL database reached through ``Store``.

``Store(url)`` opens (and migrates) the database; its methods take and
return the plain records of ``optiloop.experiment``.  SQLite is the default;
any SQLAlchemy URL works, PostgreSQL included.
"""

from optiloop.store.store import (
    DEFAULT_DB_URL,
    CampaignRecord,
    CampaignRole,
    CampaignState,
    ExperimentCounts,
    ExperimentRecord,
    ExperimentState,
    IdempotentAnswer,
    Store,
    SuggestionState,
    TokenRecord,
    alembic_config,
)

__all__ = [
    "DEFAULT_DB_URL",
    "CampaignRecord",
    "CampaignRole",
    "CampaignState",
    "ExperimentCounts",
    "ExperimentRecord",
    "ExperimentState",
    "IdempotentAnswer",
    "Store",
    "SuggestionState",
    "TokenRecord",
    "alembic_config",
]
