"""discount codes limited by category: discount_codes.category_ids

Revision ID: 7b3e5f1a9c24
Revises: c5a1e9d4b7f2
Create Date: 2026-12-06 11:10:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "7b3e5f1a9c24"
down_revision: str | Sequence[str] | None = "c5a1e9d4b7f2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "discount_codes",
        sa.Column("category_ids", postgresql.ARRAY(sa.Uuid()), server_default="{}", nullable=False),
        schema="checkout",
    )


def downgrade() -> None:
    op.drop_column("discount_codes", "category_ids", schema="checkout")
