"""sealed link: live mail links rest sealed, never in the body

Revision ID: 5ea1ed11f0a1
Revises: d08f7fc251cd
Create Date: 2026-12-05 00:05:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5ea1ed11f0a1"
down_revision: str | Sequence[str] | None = "d08f7fc251cd"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "pending_emails", sa.Column("sealed_link", sa.Text(), nullable=True), schema="notifier"
    )


def downgrade() -> None:
    op.drop_column("pending_emails", "sealed_link", schema="notifier")
