# Revision 0009: CDRs of concatenated messages keep the ids the carrier got for their parts.
"""cdr part ids

Revision ID: 0009
Revises: 0008
Create Date: 2027-01-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN in place (no table copy): the trigger refusing UPDATE on cdrs stays
    op.add_column("cdrs", sa.Column("part_ids", sa.Text(), nullable=True))


def downgrade() -> None:
    # in place as well (SQLite 3.35+, PostgreSQL): a batch copy would drop the trigger
    op.execute("ALTER TABLE cdrs DROP COLUMN part_ids")
