"""Time-ordered identifiers: UUIDv7 for rows and events, so they sort by creation."""

from __future__ import annotations

import uuid

import uuid_utils


def new_id() -> uuid.UUID:
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)
