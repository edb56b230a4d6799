"""Asking checkout (which alone speaks to Stripe about payments) to refund an order."""

from __future__ import annotations

import uuid

import httpx
import msgspec
import structlog
from ember_shared.contracts.checkout import (
    REFUND_REFUSALS,
    RefundAccepted,
    RefundRequest,
    refund_path,
)
from ember_shared.http import service_client
from ember_shared.problems import Problem

log = structlog.get_logger("orders.refunds")


async def ask_checkout_to_refund(order_id: uuid.UUID, amount: int, idempotency_key: str) -> str:
    """Stripe's refund id. Nothing changes here until Stripe's ``charge.refunded`` arrives."""
    try:
        async with service_client("checkout", timeout=httpx.Timeout(20.0, connect=2.0)) as client:
            response = await client.post(
                refund_path(order_id),
                content=msgspec.json.encode(
                    RefundRequest(amount=amount, idempotency_key=idempotency_key)
                ),
                headers={"Content-Type": "application/json"},
            )
    except httpx.HTTPError as exc:
        log.warning("refund_checkout_unreachable", order_id=str(order_id), error=str(exc))
        raise _unavailable() from exc
    if response.status_code == 202:
        try:
            return msgspec.json.decode(response.content, type=RefundAccepted).refund_id
        except msgspec.DecodeError as exc:
            log.warning("refund_checkout_unreadable", order_id=str(order_id), error=str(exc))
            raise _unavailable() from exc
    kind = ""
    detail = ""
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        body = response.json()
        kind = str(body.get("type", "")).rsplit("/", 1)[-1]
        detail = str(body.get("detail", ""))
    if response.status_code == 409 and kind in REFUND_REFUSALS:
        raise Problem(409, kind, detail or "Stripe refused the refund.")
    log.warning(
        "refund_checkout_failed", order_id=str(order_id), status=response.status_code, kind=kind
    )
    raise _unavailable()


def _unavailable() -> Problem:
    return Problem(
        503,
        "payment-provider-unavailable",
        "The refund could not be asked of Stripe just now; nothing was refunded. Try again.",
        headers={"Retry-After": "5"},
    )
