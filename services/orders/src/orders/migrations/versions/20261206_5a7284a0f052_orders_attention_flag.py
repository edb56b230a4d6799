"""orders attention flag: a payment checkout flagged marks its order, for staff's list

Revision ID: 5a7284a0f052
Revises: 7c0de11a5e01
Create Date: 2026-12-06 01:11:40.944005

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5a7284a0f052"
down_revision: str | Sequence[str] | None = "7c0de11a5e01"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MARK = "needs attention: "


def upgrade() -> None:
    op.add_column(
        "orders", sa.Column("attention", sa.String(length=1000), nullable=True), schema="orders"
    )
    op.create_index(
        "ix_orders_attention_created",
        "orders",
        ["created_at"],
        unique=False,
        schema="orders",
        postgresql_where=sa.text("attention IS NOT NULL"),
    )
    # Orders paid before this column existed kept the note only in their history
    # ("...; needs attention: <note>", cut at 300 characters): flag them from it.
    op.execute(
        sa.text(
            "UPDATE orders.orders AS o SET attention = flagged.note FROM ("
            " SELECT DISTINCT ON (order_id) order_id,"
            " substr(reason, strpos(reason, :mark) + :length) AS note"
            " FROM orders.order_status_changes"
            " WHERE to_status = 'paid' AND strpos(reason, :mark) > 0"
            " ORDER BY order_id, created_at"
            ") AS flagged WHERE flagged.order_id = o.id AND o.attention IS NULL"
        ).bindparams(mark=_MARK, length=len(_MARK))
    )


def downgrade() -> None:
    op.drop_index(
        "ix_orders_attention_created",
        table_name="orders",
        schema="orders",
        postgresql_where=sa.text("attention IS NOT NULL"),
    )
    op.drop_column("orders", "attention", schema="orders")
