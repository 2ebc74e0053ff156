# Revision 0008: policies that target a carrier, its concatenation setting, cost tariffs.
"""carrier targets

Revision ID: 0008
Revises: 0007
Create Date: 2027-01-20
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("carriers") as batch:
        batch.add_column(
            sa.Column("concat", sa.String(length=3), nullable=False, server_default="udh")
        )
    with op.batch_alter_table("policies") as batch:
        batch.alter_column("connection_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("carrier_id", sa.Integer(), nullable=True))
        batch.create_index(batch.f("ix_policies_carrier_id"), ["carrier_id"])
        batch.create_foreign_key(
            batch.f("fk_policies_carrier_id_carriers"), "carriers", ["carrier_id"], ["id"]
        )
        batch.create_unique_constraint(
            batch.f("uq_policies_pattern_carrier_id"), ["pattern", "carrier_id"]
        )
    with op.batch_alter_table("tariffs") as batch:
        batch.add_column(
            sa.Column("direction", sa.String(length=3), nullable=False, server_default="in")
        )
        batch.drop_constraint("uq_tariffs_carrier_id_prefix_effective_from", type_="unique")
        batch.create_unique_constraint(
            batch.f("uq_tariffs_carrier_id_direction_prefix_effective_from"),
            ["carrier_id", "direction", "prefix", "effective_from"],
        )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("part", sa.SmallInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("part")
    op.execute("DELETE FROM tariffs WHERE direction = 'out'")
    with op.batch_alter_table("tariffs") as batch:
        batch.drop_constraint(
            "uq_tariffs_carrier_id_direction_prefix_effective_from", type_="unique"
        )
        batch.create_unique_constraint(
            batch.f("uq_tariffs_carrier_id_prefix_effective_from"),
            ["carrier_id", "prefix", "effective_from"],
        )
        batch.drop_column("direction")
    op.execute("DELETE FROM policies WHERE connection_id IS NULL")
    with op.batch_alter_table("policies") as batch:
        batch.drop_constraint("uq_policies_pattern_carrier_id", type_="unique")
        batch.drop_constraint("fk_policies_carrier_id_carriers", type_="foreignkey")
        batch.drop_index("ix_policies_carrier_id")
        batch.drop_column("carrier_id")
        batch.alter_column("connection_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("carriers") as batch:
        batch.drop_column("concat")
