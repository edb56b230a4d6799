"""event tables

Revision ID: d0f2aaa9b289
Revises: 
Create Date: 2026-11-23 14:15:15.209678

"""
from typing import Sequence, Union

from ember_shared.migrations import create_event_tables, drop_event_tables


# revision identifiers, used by Alembic.
revision: str = 'd0f2aaa9b289'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    create_event_tables("checkout")


def downgrade() -> None:
    """Downgrade schema."""
    drop_event_tables("checkout")
