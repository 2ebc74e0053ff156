# Revision 0004: the delivery pipeline (failure codes, env path, peer ids of forwarded parts).
"""pipeline

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error_code", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("path", sa.String(length=255), nullable=True))
    op.create_table(
        "forwards",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("peer_message_id", sa.String(length=65), nullable=False),
        sa.Column("part", sa.SmallInteger(), nullable=False),
        sa.Column("parts", sa.SmallInteger(), nullable=False),
        sa.Column("stat", sa.String(length=7), nullable=True),
        sa.Column("err", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_forwards_connection_id_connections"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forwards")),
        sa.UniqueConstraint(
            "connection_id",
            "peer_message_id",
            name=op.f("uq_forwards_connection_id_peer_message_id"),
        ),
    )
    with op.batch_alter_table("forwards", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_forwards_message_id"), ["message_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("forwards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_forwards_message_id"))
    op.drop_table("forwards")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("path")
        batch_op.drop_column("error_code")
