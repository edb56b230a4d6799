"""Shapes of the audit log as admins read it."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from ember_shared.pagination import NumberedPage


class AuditEntryOut(msgspec.Struct, kw_only=True):
    """One admin write: who, what, when, and the state before and after, as recorded."""

    id: uuid.UUID
    at: Annotated[dt.datetime, msgspec.Meta(description="When the write's transaction began.")]
    actor_id: Annotated[
        uuid.UUID | None,
        msgspec.Meta(
            description=(
                "The admin's user id; null for the demo seed and for what the catalog "
                "recorded itself (a subscription delivery it could not fill)."
            )
        ),
    ]
    actor_email: Annotated[
        str,
        msgspec.Meta(
            description="The admin's email when they wrote; empty for the seed and the catalog."
        ),
    ]
    action: Annotated[str, msgspec.Meta(examples=["product.updated", "inventory.set"])]
    entity: Annotated[
        str,
        msgspec.Meta(
            description="catalog, category, inventory, product or product_image.",
            examples=["product"],
        ),
    ]
    entity_id: Annotated[
        str,
        msgspec.Meta(
            description=(
                "The id of what was changed, as stored: a UUID (inventory entries carry the "
                "product's), `*` for a new category order, `demo` for the demo seed."
            )
        ),
    ]
    before: Annotated[
        dict[str, Any] | None,
        msgspec.Meta(description="The recorded state before the write; null for a creation."),
    ]
    after: Annotated[
        dict[str, Any] | None,
        msgspec.Meta(description="The recorded state after the write; null for a deletion."),
    ]


AuditLogPage = NumberedPage[AuditEntryOut]
