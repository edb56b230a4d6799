"""The outbox and handled-events tables, created in every service's own schema."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID


def define_event_tables(metadata: MetaData) -> tuple[Table, Table]:
    """Add ``outbox_events`` and ``handled_events`` to a service's metadata."""
    outbox = Table(
        "outbox_events",
        metadata,
        Column("id", UUID(as_uuid=True), primary_key=True),
        Column("type", String(120), nullable=False),
        Column("stream", String(200), nullable=False),
        Column("envelope", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True), nullable=True),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("last_error", Text, nullable=True),
        Index(
            "ix_outbox_events_unpublished",
            "created_at",
            postgresql_where=text("published_at IS NULL"),
        ),
    )
    handled = Table(
        "handled_events",
        metadata,
        Column("event_id", UUID(as_uuid=True), primary_key=True),
        Column("handler", String(200), primary_key=True),
        Column("event_type", String(120), nullable=False),
        Column("handled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    return outbox, handled


def event_tables(metadata: MetaData) -> tuple[Table, Table]:
    schema = metadata.schema
    prefix = f"{schema}." if schema else ""
    return metadata.tables[f"{prefix}outbox_events"], metadata.tables[f"{prefix}handled_events"]
