"""event tables

Revision ID: c00a6740629e
Revises: 
Create Date: 2026-11-23 14:15:11.308393

"""
from typing import Sequence, Union

from ember_shared.migrations import create_event_tables, drop_event_tables


# revision identifiers, used by Alembic.
revision: str = 'c00a6740629e'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    create_event_tables("cart")


def downgrade() -> None:
    """Downgrade schema."""
    drop_event_tables("cart")
