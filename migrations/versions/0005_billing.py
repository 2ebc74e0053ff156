# Revision 0005: billing (carrier billing settings, tariff unit, volume fees, settlements).
"""billing

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

MESSAGE = "CDRs are immutable once written"  # gateway.store.schema.CDR_IMMUTABLE_MESSAGE

SQLITE_TRIGGER = f"""
CREATE TRIGGER cdrs_immutable BEFORE UPDATE ON cdrs
BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END
"""
PG_FUNCTION = f"""
CREATE FUNCTION cdrs_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '{MESSAGE}'; END $$
"""
PG_TRIGGER = (
    "CREATE TRIGGER cdrs_immutable BEFORE UPDATE ON cdrs"
    " FOR EACH ROW EXECUTE FUNCTION cdrs_immutable()"
)


def upgrade() -> None:
    op.create_table(
        "fees",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("carrier_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("unit", sa.String(length=7), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("tiers", sa.JSON(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("effective_to", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["carrier_id"], ["carriers.id"], name=op.f("fk_fees_carrier_id_carriers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fees")),
        sa.UniqueConstraint(
            "carrier_id",
            "name",
            "effective_from",
            name=op.f("uq_fees_carrier_id_name_effective_from"),
        ),
    )
    op.create_table(
        "settlements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("carrier_id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("state", sa.String(length=5), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("billable", sa.String(length=9), nullable=False),
        sa.Column("key_length", sa.SmallInteger(), nullable=False),
        sa.Column("boundaries", sa.JSON(), nullable=False),
        sa.Column("cdr_count", sa.BigInteger(), nullable=False),
        sa.Column("cdr_checksum", sa.String(length=64), nullable=False),
        sa.Column("pending", sa.BigInteger(), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("built_by", sa.String(length=128), nullable=False),
        sa.Column("finalised_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finalised_by", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["carrier_id"], ["carriers.id"], name=op.f("fk_settlements_carrier_id_carriers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlements")),
        sa.UniqueConstraint("carrier_id", "period", name=op.f("uq_settlements_carrier_id_period")),
    )
    op.create_table(
        "settlement_groups",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("settlement_id", sa.Integer(), nullable=False),
        sa.Column("source_period", sa.String(length=7), nullable=False),
        sa.Column("dest_key", sa.String(length=15), nullable=False),
        sa.Column("bucket", sa.SmallInteger(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("messages", sa.BigInteger(), nullable=False),
        sa.Column("parts", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["settlement_id"],
            ["settlements.id"],
            name=op.f("fk_settlement_groups_settlement_id_settlements"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_groups")),
    )
    with op.batch_alter_table("settlement_groups", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_settlement_groups_settlement_id"), ["settlement_id"], unique=False
        )

    op.create_table(
        "settlement_lines",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("settlement_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("source_period", sa.String(length=7), nullable=False),
        sa.Column("prefix", sa.String(length=15), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("tariff_id", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("unit", sa.String(length=7), nullable=True),
        sa.Column("unit_price", sa.String(length=40), nullable=True),
        sa.Column("messages", sa.BigInteger(), nullable=False),
        sa.Column("parts", sa.BigInteger(), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["settlement_id"],
            ["settlements.id"],
            name=op.f("fk_settlement_lines_settlement_id_settlements"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_lines")),
    )
    with op.batch_alter_table("settlement_lines", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_settlement_lines_settlement_id"), ["settlement_id"], unique=False
        )

    with op.batch_alter_table("carriers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "billing_timezone", sa.String(length=64), server_default="UTC", nullable=False
            )
        )
        batch_op.add_column(
            sa.Column("billable", sa.String(length=9), server_default="accepted", nullable=False)
        )

    with op.batch_alter_table("tariffs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("unit", sa.String(length=7), server_default="message", nullable=False)
        )

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_messages_final_at"), ["final_at"], unique=False)
    if op.get_bind().dialect.name == "sqlite":
        op.execute(SQLITE_TRIGGER)
    else:
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER cdrs_immutable")
    else:
        op.execute("DROP TRIGGER cdrs_immutable ON cdrs")
        op.execute("DROP FUNCTION cdrs_immutable()")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_final_at"))
    with op.batch_alter_table("tariffs", schema=None) as batch_op:
        batch_op.drop_column("unit")

    with op.batch_alter_table("carriers", schema=None) as batch_op:
        batch_op.drop_column("billable")
        batch_op.drop_column("billing_timezone")

    with op.batch_alter_table("settlement_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_settlement_lines_settlement_id"))

    op.drop_table("settlement_lines")
    with op.batch_alter_table("settlement_groups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_settlement_groups_settlement_id"))

    op.drop_table("settlement_groups")
    op.drop_table("settlements")
    op.drop_table("fees")
