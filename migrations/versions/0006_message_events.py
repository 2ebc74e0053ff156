# Revision 0006: the life of each message (message_events) and the upstream environment's id.
"""message events

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "message_events",
        sa.Column("id", BigId, nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=255), nullable=True),
        sa.Column("route", sa.String(length=64), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_events")),
    )
    op.create_index(op.f("ix_message_events_message_id_id"), "message_events", ["message_id", "id"])
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("upstream_id", sa.String(length=65), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("upstream_id")
    op.drop_index(op.f("ix_message_events_message_id_id"), table_name="message_events")
    op.drop_table("message_events")
