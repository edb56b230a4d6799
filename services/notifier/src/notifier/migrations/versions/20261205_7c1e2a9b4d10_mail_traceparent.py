"""mail traceparent: the send shows in the trace of the event that queued the mail

Revision ID: 7c1e2a9b4d10
Revises: 5ea1ed11f0a1
Create Date: 2026-12-05 00:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c1e2a9b4d10"
down_revision: str | Sequence[str] | None = "5ea1ed11f0a1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "pending_emails",
        sa.Column("traceparent", sa.String(length=100), nullable=True),
        schema="notifier",
    )


def downgrade() -> None:
    op.drop_column("pending_emails", "traceparent", schema="notifier")
