"""The first reading-room schema: films, readers, reads.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "films",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("filename", sa.String(255), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("image_stored", sa.Boolean(), nullable=False),
        sa.Column("image_ext", sa.String(8), nullable=False),
        sa.Column("model_id", sa.String(255), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("architecture", sa.String(64), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("predicted", sa.String(64), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("positive_score", sa.Float(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("ood_score", sa.Float(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("study_uid", sa.String(64), nullable=True),
        sa.Column("series_uid", sa.String(64), nullable=True),
        sa.Column("sop_uid", sa.String(64), nullable=True),
        sa.Column("accession", sa.String(64), nullable=True),
        sa.Column("patient_hash", sa.String(64), nullable=True),
    )
    for column in ("received_at", "sha256", "positive_score", "flagged", "study_uid", "patient_hash"):
        op.create_index(f"ix_films_{column}", "films", [column])
    op.create_table(
        "readers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "reads",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("film_id", sa.String(32), sa.ForeignKey("films.id"), nullable=False),
        sa.Column("reader_id", sa.Integer(), sa.ForeignKey("readers.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("film_id", "reader_id", "version", name="uq_reads_film_reader_version"),
    )
    op.create_index("ix_reads_film_reader", "reads", ["film_id", "reader_id"])
    op.create_index("ix_reads_created_at", "reads", ["created_at"])


def downgrade() -> None:
    op.drop_table("reads")
    op.drop_table("readers")
    op.drop_table("films")
