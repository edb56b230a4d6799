"""delivery attempts: drop ix_notifier_delivery_attempts_email_id, which the unique (email_id, attempt) makes redundant

Revision ID: 8d2b6f0e4c13
Revises: 7c1e2a9b4d10
Create Date: 2026-12-07 06:40:00.000000

The unique key (email_id, attempt) leads with email_id: it serves every read of a mail's
attempts (and the foreign key's cascade) that the plain email_id index served, and each attempt
written wrote both.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "8d2b6f0e4c13"
down_revision: str | Sequence[str] | None = "7c1e2a9b4d10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index(
        "ix_notifier_delivery_attempts_email_id", table_name="delivery_attempts", schema="notifier"
    )


def downgrade() -> None:
    op.create_index(
        "ix_notifier_delivery_attempts_email_id",
        "delivery_attempts",
        ["email_id"],
        unique=False,
        schema="notifier",
    )
