"""The highest id each table has handed out, so SQLite never reuses one.

SQLite numbers a new row after the highest id in use, so a deleted newest
suggestion or observation would lend its id to the next; the store now
takes those ids from this table instead.  It starts at the ids in use.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

TABLES = ("suggestions", "observations")


def upgrade() -> None:
    marks = op.create_table(
        "id_high_water",
        sa.Column("table_name", sa.String(length=100), nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("table_name", name=op.f("pk_id_high_water")),
    )
    connection = op.get_bind()
    for table in TABLES:
        highest = connection.execute(
            sa.text(f"SELECT COALESCE(MAX(id), 0) FROM {table}")
        ).scalar_one()
        op.bulk_insert(marks, [{"table_name": table, "last_id": highest}])


def downgrade() -> None:
    op.drop_table("id_high_water")
