"""refund requests

Revision ID: 4b1f9c2e7a31
Revises: ca13962086bb
Create Date: 2026-12-05 00:10:00.000000

"""
from typing import Sequence, Union

from alembic import op
import advanced_alchemy.types.datetime
import advanced_alchemy.types.guid
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '4b1f9c2e7a31'
down_revision: Union[str, Sequence[str], None] = 'ca13962086bb'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'refund_requests',
        sa.Column('id', advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column('order_id', advanced_alchemy.types.guid.GUID(length=16), nullable=False),
        sa.Column('idempotency_key', sa.String(length=200), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.Column('restock', sa.Boolean(), server_default='false', nullable=False),
        sa.Column('reason', sa.String(length=300), server_default='', nullable=False),
        sa.Column('actor', sa.String(length=120), nullable=False),
        sa.Column('status', sa.String(length=16), server_default='requested', nullable=False),
        sa.Column('stripe_refund_id', sa.String(length=255), nullable=True),
        sa.Column('created_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('refunded_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True),
        sa.CheckConstraint('amount > 0', name=op.f('ck_refund_requests_amount_positive')),
        sa.CheckConstraint("status IN ('requested', 'refunded')", name=op.f('ck_refund_requests_status_known')),
        sa.ForeignKeyConstraint(['order_id'], ['orders.orders.id'], name=op.f('fk_refund_requests_order_id_orders'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_refund_requests')),
        sa.UniqueConstraint('order_id', 'idempotency_key', name='uq_refund_requests_order_key'),
        schema='orders',
    )
    op.create_index('ix_refund_requests_order_created', 'refund_requests', ['order_id', 'created_at'], unique=False, schema='orders')
    op.create_index('uq_refund_requests_one_restock', 'refund_requests', ['order_id'], unique=True, schema='orders', postgresql_where=sa.text('restock'))


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('uq_refund_requests_one_restock', table_name='refund_requests', schema='orders', postgresql_where=sa.text('restock'))
    op.drop_index('ix_refund_requests_order_created', table_name='refund_requests', schema='orders')
    op.drop_table('refund_requests', schema='orders')
