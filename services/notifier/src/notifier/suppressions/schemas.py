"""Suppression list: what staff send and what they get back."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec
from ember_shared.pagination import Page

from notifier.models import ADDRESS_PATTERN, Suppression

EmailAddress = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=320,
        pattern=ADDRESS_PATTERN,
        description="An email address.",
        examples=["shopper@example.com"],
    ),
]
ReasonName = Literal["bounce", "complaint", "manual"]


class SuppressionIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: EmailAddress
    note: Annotated[str, msgspec.Meta(max_length=500, pattern=r"^[^\x00]*$")] = ""


class SuppressionOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    email: str
    reason: ReasonName
    source: str
    note: str
    created_at: dt.datetime

    @classmethod
    def of(cls, row: Suppression) -> SuppressionOut:
        return cls(
            id=row.id,
            email=row.email,
            reason=row.reason,  # type: ignore[arg-type]
            source=row.source,
            note=row.note,
            created_at=row.created_at,
        )


SuppressionPage = Page[SuppressionOut]
