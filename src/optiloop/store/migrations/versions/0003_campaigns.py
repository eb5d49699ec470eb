"""Campaigns, and the link from each experiment to the campaign that made it.

Experiments that exist already belong to no campaign.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("file", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("owner_token_id", sa.Integer(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.CheckConstraint(
            "state IN ('running', 'stopped', 'done')",
            name=op.f("ck_campaigns_state"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_token_id"],
            ["tokens.id"],
            name=op.f("fk_campaigns_owner_token_id_tokens"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    op.create_index(
        op.f("ix_campaigns_owner_token_id"), "campaigns", ["owner_token_id"]
    )

    # Batch mode rebuilds the table on SQLite, which cannot add a foreign
    # key or a CHECK constraint to an existing table.
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("campaign_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("campaign_round", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("campaign_role", sa.String(16), nullable=True))
        batch.add_column(sa.Column("refinement", sa.JSON(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_experiments_campaign_id_campaigns"),
            "campaigns",
            ["campaign_id"],
            ["id"],
        )
        batch.create_index(op.f("ix_experiments_campaign_id"), ["campaign_id"])
        batch.create_check_constraint(
            op.f("ck_experiments_campaign_role"),
            "campaign_role IN ('round', 'validation', 'grid')",
        )


def downgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.drop_constraint(op.f("ck_experiments_campaign_role"), type_="check")
        batch.drop_index(op.f("ix_experiments_campaign_id"))
        batch.drop_constraint(
            op.f("fk_experiments_campaign_id_campaigns"), type_="foreignkey"
        )
        batch.drop_column("refinement")
        batch.drop_column("campaign_role")
        batch.drop_column("campaign_round")
        batch.drop_column("campaign_id")
    op.drop_index(op.f("ix_campaigns_owner_token_id"), table_name="campaigns")
    op.drop_table("campaigns")
