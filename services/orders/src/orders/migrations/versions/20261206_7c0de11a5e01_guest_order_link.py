"""guest order link: a guest's order opens with a secret of ours, kept only as its hash

Revision ID: 7c0de11a5e01
Revises: 4b1f9c2e7a31
Create Date: 2026-12-06 00:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c0de11a5e01"
down_revision: str | Sequence[str] | None = "4b1f9c2e7a31"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "orders", sa.Column("guest_link_hash", sa.String(length=64), nullable=True), schema="orders"
    )
    op.add_column(
        "orders", sa.Column("sealed_order_url", sa.Text(), nullable=True), schema="orders"
    )


def downgrade() -> None:
    op.drop_column("orders", "sealed_order_url", schema="orders")
    op.drop_column("orders", "guest_link_hash", schema="orders")
