# Revision 0007: requests to lift failed-bind blocks (gatewayctl carrier unblock ADDRESS).
"""bind unblocks

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-15
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "bind_unblocks",
        sa.Column("id", BigId, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bind_unblocks")),
    )
    op.create_index(op.f("ix_bind_unblocks_at"), "bind_unblocks", ["at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_bind_unblocks_at"), table_name="bind_unblocks")
    op.drop_table("bind_unblocks")
