"""subscription deliveries

Revision ID: 9cd2bc2c63b7
Revises: c2a97e18dc85
Create Date: 2026-12-04 16:27:58.625033

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '9cd2bc2c63b7'
down_revision: Union[str, Sequence[str], None] = 'c2a97e18dc85'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('subscription_deliveries',
    sa.Column('order_id', sa.UUID(), nullable=False),
    sa.Column('stripe_invoice_id', sa.String(length=255), nullable=False),
    sa.Column('subscription_id', sa.UUID(), nullable=False),
    sa.Column('short', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('order_id', name=op.f('pk_subscription_deliveries')),
    sa.UniqueConstraint('stripe_invoice_id', name=op.f('uq_subscription_deliveries_stripe_invoice_id')),
    schema='catalog'
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('subscription_deliveries', schema='catalog')
