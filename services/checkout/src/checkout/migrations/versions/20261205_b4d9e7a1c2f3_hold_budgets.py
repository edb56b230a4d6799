"""hold budgets: the client address of each checkout, to bound the stock one client holds

Revision ID: b4d9e7a1c2f3
Revises: 243b1d3f9674
Create Date: 2026-12-05 00:10:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b4d9e7a1c2f3"
down_revision: str | Sequence[str] | None = "243b1d3f9674"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "checkout_sessions",
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        schema="checkout",
    )
    op.create_index(
        "ix_checkout_sessions_client_open",
        "checkout_sessions",
        ["client_ip"],
        schema="checkout",
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index(
        "ix_checkout_sessions_email_open",
        "checkout_sessions",
        [sa.text("lower(email)")],
        schema="checkout",
        postgresql_where=sa.text("status = 'open'"),
    )


def downgrade() -> None:
    op.drop_index("ix_checkout_sessions_email_open", "checkout_sessions", schema="checkout")
    op.drop_index("ix_checkout_sessions_client_open", "checkout_sessions", schema="checkout")
    op.drop_column("checkout_sessions", "client_ip", schema="checkout")
