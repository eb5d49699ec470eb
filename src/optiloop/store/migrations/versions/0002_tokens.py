"""API tokens, experiment owners and idempotent requests, for the server.

Experiments that exist already keep no owner: they were made in-process,
and a token of the server does not see them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
        sa.UniqueConstraint("digest", name=op.f("uq_tokens_digest")),
    )

    # Batch mode rebuilds the table on SQLite, which cannot add a foreign
    # key to an existing table.
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("owner_token_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_experiments_owner_token_id_tokens"),
            "tokens",
            ["owner_token_id"],
            ["id"],
        )
        batch.create_index(op.f("ix_experiments_owner_token_id"), ["owner_token_id"])

    op.create_table(
        "idempotent_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("request", sa.String(300), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["tokens.id"],
            name=op.f("fk_idempotent_requests_token_id_tokens"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotent_requests")),
        sa.UniqueConstraint(
            "token_id", "key", name=op.f("uq_idempotent_requests_token_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("idempotent_requests")
    with op.batch_alter_table("experiments") as batch:
        batch.drop_index(op.f("ix_experiments_owner_token_id"))
        batch.drop_constraint(
            op.f("fk_experiments_owner_token_id_tokens"), type_="foreignkey"
        )
        batch.drop_column("owner_token_id")
    op.drop_table("tokens")
