"""hold claims: a checkout admitted within its stock-hold budget while it is being started

The budget is decided in a short transaction of its own that writes the claim, instead of under
advisory locks held for the whole checkout (across catalog's reservation and Stripe's call).

Revision ID: e3a992826723
Revises: 5e8a1d3c9b72
Create Date: 2026-12-05 23:49:09.751009

"""

from collections.abc import Sequence

import advanced_alchemy.types.datetime
import advanced_alchemy.types.guid
import sqlalchemy as sa
from alembic import op

revision: str = "e3a992826723"
down_revision: str | Sequence[str] | None = "5e8a1d3c9b72"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hold_claims",
        sa.Column("id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("cart_id", advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column(
            "expires_at", advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False
        ),
        sa.Column(
            "created_at",
            advanced_alchemy.types.datetime.DateTimeUTC(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("units > 0", name=op.f("ck_hold_claims_units_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hold_claims")),
        schema="checkout",
    )
    op.create_index(
        "ix_hold_claims_client_ip", "hold_claims", ["client_ip"], unique=False, schema="checkout"
    )
    op.create_index(
        "ix_hold_claims_email",
        "hold_claims",
        [sa.literal_column("lower(email)")],
        unique=False,
        schema="checkout",
    )


def downgrade() -> None:
    op.drop_index("ix_hold_claims_email", table_name="hold_claims", schema="checkout")
    op.drop_index("ix_hold_claims_client_ip", table_name="hold_claims", schema="checkout")
    op.drop_table("hold_claims", schema="checkout")
