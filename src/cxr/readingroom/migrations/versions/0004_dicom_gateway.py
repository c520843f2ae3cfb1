"""The DICOM gateway: a film's study date and view, each received instance once (unique SOPInstanceUID), and the
outbox of results waiting for the PACS.

Revision ID: 0004
Revises: 0003
Create Date: 2027-03-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("films") as batch:
        batch.add_column(sa.Column("study_date", sa.String(8), nullable=True))
        batch.add_column(sa.Column("view_position", sa.String(16), nullable=True))
    op.create_table(
        "dicom_instances",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("sop_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("study_uid", sa.String(64), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("calling_ae", sa.String(16), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("spool_name", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(255), nullable=True),
        sa.Column("modality", sa.String(16), nullable=True),
        sa.Column("view_position", sa.String(16), nullable=True),
        sa.Column("film_id", sa.String(32), nullable=True),
    )
    for column in ("study_uid", "received_at", "status", "film_id"):
        op.create_index(f"ix_dicom_instances_{column}", "dicom_instances", [column])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("film_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("destination", sa.String(255), nullable=False),
        sa.Column("sop_uid", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.String(255), nullable=True),
        sa.UniqueConstraint("sop_uid", "destination", name="uq_outbox_sop_destination"),
    )
    for column in ("film_id", "next_attempt_at", "sent_at"):
        op.create_index(f"ix_outbox_{column}", "outbox", [column])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("dicom_instances")
    with op.batch_alter_table("films") as batch:
        batch.drop_column("view_position")
        batch.drop_column("study_date")
