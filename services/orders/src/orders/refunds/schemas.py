"""What staff send to refund an order and what they get back."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

import msgspec


class RefundOrder(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: The form's (or client's) id for this refund: sending it again asks Stripe nothing more.
    idempotency_key: Annotated[
        str, msgspec.Meta(min_length=8, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    ]
    #: Minor units; the whole amount not yet refunded when left out.
    amount: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)] | None = None
    #: Put the order's items back in stock when Stripe confirms (once per order).
    restock: bool = False
    reason: Annotated[str, msgspec.Meta(max_length=300)] = ""


class RefundView(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    order_id: uuid.UUID
    amount: int
    currency: str
    restock: bool
    reason: str
    #: ``requested`` until Stripe's ``charge.refunded`` arrives, then ``refunded``.
    status: str
    stripe_refund_id: str | None
    created_at: dt.datetime
    refunded_at: dt.datetime | None


class RefundList(msgspec.Struct, kw_only=True):
    items: list[RefundView]
