"""Roles and salted key hashes for readers; the append-only access log.

Existing readers keep their keys: their stored SHA-256 is salted in place (HMAC-SHA256 with a salt of their own),
so no stored hash is usable outside this table, and they become role "reader".

Revision ID: 0002
Revises: 0001
Create Date: 2027-01-14
"""

import hashlib
import hmac
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APPEND_ONLY = "the access log is append-only"


def upgrade() -> None:
    with op.batch_alter_table("readers") as batch:
        batch.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="reader"))
        batch.add_column(sa.Column("key_id", sa.String(16), nullable=True))
        batch.add_column(sa.Column("key_salt", sa.String(32), nullable=True))
        batch.add_column(sa.Column("last_used_at", sa.DateTime(), nullable=True))
    readers = sa.table(
        "readers", sa.column("id", sa.Integer), sa.column("key_hash", sa.String), sa.column("key_salt", sa.String)
    )
    bind = op.get_bind()
    for row_id, unsalted in bind.execute(sa.select(readers.c.id, readers.c.key_hash)).all():
        salt = secrets.token_hex(16)
        salted = hmac.new(salt.encode(), unsalted.encode(), hashlib.sha256).hexdigest()  # = keys.salted_hash
        bind.execute(readers.update().where(readers.c.id == row_id).values(key_salt=salt, key_hash=salted))
    with op.batch_alter_table("readers") as batch:
        batch.alter_column("key_salt", existing_type=sa.String(32), nullable=False)
        batch.create_unique_constraint("uq_readers_key_id", ["key_id"])

    op.create_table(
        "access_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("client", sa.String(100), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("film_id", sa.String(32), nullable=True),
        sa.Column("detail", sa.String(255), nullable=True),
    )
    for column in ("at", "actor", "action", "film_id"):
        op.create_index(f"ix_access_log_{column}", "access_log", [column])
    if bind.dialect.name == "postgresql":
        op.execute(
            f"CREATE FUNCTION cxr_access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access_log "
            "FOR EACH ROW EXECUTE FUNCTION cxr_access_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION cxr_access_log_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER access_log_no_{event.lower()} BEFORE {event} ON access_log "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE access_log")
        op.execute("DROP FUNCTION cxr_access_log_append_only()")
    else:
        op.drop_table("access_log")  # its triggers go with it
    with op.batch_alter_table("readers") as batch:
        batch.drop_constraint("uq_readers_key_id", type_="unique")
        for column in ("last_used_at", "key_salt", "key_id", "role"):
            batch.drop_column(column)
