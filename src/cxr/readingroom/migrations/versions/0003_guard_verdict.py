"""The input guard's verdict and reason per film, and the input statistics it read (for the worklist's "check the
input" group and `cxr monitor`). Films recorded before this revision keep NULL: their verdict reads "unknown".

Revision ID: 0003
Revises: 0002
Create Date: 2027-02-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("films") as batch:
        batch.add_column(sa.Column("guard_verdict", sa.String(8), nullable=True))
        batch.add_column(sa.Column("guard_reason", sa.String(255), nullable=True))
        batch.add_column(sa.Column("input_stats", sa.JSON(), nullable=True))
    op.create_index("ix_films_guard_verdict", "films", ["guard_verdict"])


def downgrade() -> None:
    op.drop_index("ix_films_guard_verdict", table_name="films")
    with op.batch_alter_table("films") as batch:
        for column in ("input_stats", "guard_reason", "guard_verdict"):
            batch.drop_column(column)
