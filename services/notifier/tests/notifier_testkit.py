"""Helpers shared by the notifier's tests (a module of its own: ``conftest`` is not importable
by name when several test folders have one)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from ember_devkit.testing.events import envelope, publish  # noqa: F401 - the suite imports them from here
from ember_devkit.testing.waiting import eventually_async as until  # noqa: F401 - the suite imports it from here
from ember_shared.events import Envelope
from ember_shared.events.contracts import Address, OrderLine, OrderPaid
from ember_shared.events.envelope import encode
from ember_shared.events.wire import entry_fields
from ember_shared.ids import new_id
from ember_shared.sealing import public_key, seal
from ember_shared.settings import service_settings
from notifier.events import queue_order_confirmation
from notifier.models import DeliveryAttempt, PendingEmail
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession


def unique_address(label: str = "shopper") -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}@example.com"


def guest_order_link(order_id: uuid.UUID) -> str:
    """The link a guest's order opens with (the token is the capability)."""
    return f"https://shop.example.com/order/{order_id}?token=tok_guest_{order_id.hex}"


def order_paid(email: str, *, name: str = "Ada Lovelace", **changes: Any) -> OrderPaid:
    """A guest's one-off order, as orders announces it once paid (what the confirmation mails)."""
    order_id = changes.pop("order_id", None) or new_id()
    values: dict[str, Any] = {
        "order_id": order_id,
        "user_id": None,
        "email": email,
        "lines": [
            OrderLine(
                product_id=new_id(),
                slug="ethiopia",
                name="Ethiopia Guji",
                unit_price=1850,
                quantity=2,
            ),
            OrderLine(
                product_id=new_id(),
                slug="colombia",
                name="Colombia Huila",
                unit_price=1600,
                quantity=1,
            ),
        ],
        "subtotal": 5300,
        "shipping": 495,
        "total": 5795,
        "currency": "USD",
        "shipping_address": Address(
            name=name, line1="12 Roastery Lane", city="Portland", postal_code="97201", country="US"
        ),
        # Orders seals a guest's link (its token) for the notifier.
        "sealed_order_url": seal(guest_order_link(order_id), public_key(local=True)),
    }
    values.update(changes)
    return OrderPaid(**values)


Handler = Callable[[Envelope, Any, AsyncSession, str], Awaitable[None]]


async def handle(engine: AsyncEngine, handler: Handler, event: Envelope, data: Any) -> None:
    """Run an event handler as the consumer does: in a transaction of its own, with the
    ``public_url`` the notifier app provides."""
    public_url = service_settings("notifier").app.public_url
    async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
        await handler(event, data, session, public_url)


async def fields_of(event: Envelope) -> dict[bytes, bytes]:
    fields = await entry_fields(
        encode(event),
        event_id=event.id,
        event_type=event.type,
        correlation_id=event.correlation_id,
        producer=event.producer,
    )
    return {k.encode(): v for k, v in fields.items()}


async def emails_to(engine: AsyncEngine, address: str) -> list[PendingEmail]:
    async with AsyncSession(engine) as session:
        rows = await session.execute(
            select(PendingEmail)
            .where(PendingEmail.to_email == address)
            .order_by(PendingEmail.created_at)
        )
        return list(rows.scalars())


async def email_by_id(engine: AsyncEngine, email_id: uuid.UUID) -> PendingEmail:
    async with AsyncSession(engine) as session:
        row = await session.get(PendingEmail, email_id)
        assert row is not None
        return row


async def attempts_of(engine: AsyncEngine, email_id: uuid.UUID) -> list[DeliveryAttempt]:
    async with AsyncSession(engine) as session:
        rows = await session.execute(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.email_id == email_id)
            .order_by(DeliveryAttempt.attempt)
        )
        return list(rows.scalars())


@dataclass
class Standin:
    url: str
    client: httpx.Client

    def emails(self, to: str | None = None) -> list[dict[str, Any]]:
        params = {"to": to} if to else {}
        response = self.client.get(f"{self.url}/_standin/emails", params=params)
        response.raise_for_status()
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    def fail(self, count: int, status: int = 500, **extra: Any) -> None:
        response = self.client.post(
            f"{self.url}/_standin/fail", json={"count": count, "status": status, **extra}
        )
        response.raise_for_status()

    def webhooks(self, email_id: str | None = None) -> list[dict[str, Any]]:
        params = {"email_id": email_id} if email_id else {}
        data: list[dict[str, Any]] = self.client.get(
            f"{self.url}/_standin/webhooks", params=params
        ).json()["data"]
        return data

    def settle(self, within: float = 15.0) -> None:
        """Wait until the stand-in has no webhook left to deliver."""
        deadline = time.monotonic() + within
        while self.client.get(f"{self.url}/_standin/webhooks").json()["pending"]:
            if time.monotonic() > deadline:
                raise AssertionError("the stand-in still has webhooks to deliver")
            time.sleep(0.05)

    def clear(self) -> None:
        self.client.delete(f"{self.url}/_standin/emails").raise_for_status()
        self.fail(0)


async def queued_confirmation(engine: AsyncEngine, to: str) -> PendingEmail:
    """An order confirmation to ``to``, queued as ``order.paid`` queues it."""
    data = order_paid(to)
    await handle(engine, queue_order_confirmation, envelope(data), data)
    (email,) = await emails_to(engine, to)
    return email
