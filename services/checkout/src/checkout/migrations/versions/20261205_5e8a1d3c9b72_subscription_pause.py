"""subscription pause: Stripe's pause_collection as its webhook reported it

Revision ID: 5e8a1d3c9b72
Revises: b4d9e7a1c2f3
Create Date: 2026-12-05 00:55:00.000000

"""

from collections.abc import Sequence

import advanced_alchemy.types.datetime
import sqlalchemy as sa
from alembic import op

revision: str = "5e8a1d3c9b72"
down_revision: str | Sequence[str] | None = "b4d9e7a1c2f3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "subscriptions",
        sa.Column("paused", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        schema="checkout",
    )
    op.add_column(
        "subscriptions",
        sa.Column(
            "paused_until",
            advanced_alchemy.types.datetime.DateTimeUTC(timezone=True),
            nullable=True,
        ),
        schema="checkout",
    )


def downgrade() -> None:
    op.drop_column("subscriptions", "paused_until", schema="checkout")
    op.drop_column("subscriptions", "paused", schema="checkout")
