"""Checkout's internal API: refunds that staff start from orders (checkout alone speaks to
Stripe about payments)."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec

#: Checkout's refusals of a refund that staff can act on (409 problem kinds).
REFUND_REFUSALS = frozenset({"not-paid", "refund-too-large", "refund-refused"})


def refund_path(order_id: uuid.UUID) -> str:
    return f"/internal/checkout/orders/{order_id}/refund"


class RefundRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: Minor units to refund; the whole remaining amount when left out.
    amount: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)] | None = None
    #: The caller's id for this refund: the same key never refunds twice.
    idempotency_key: Annotated[str, msgspec.Meta(min_length=8, max_length=200)]


class RefundAccepted(msgspec.Struct, kw_only=True):
    order_id: uuid.UUID
    refund_id: str
    status: str
