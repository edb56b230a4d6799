"""Shipping an order and keeping its tracking current from the provider."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import structlog
from ember_shared.events.contracts import OrderDelivered, OrderShipped
from ember_shared.problems import Problem
from sqlalchemy.ext.asyncio import AsyncSession

from orders.events import outbox
from orders.models import Order, TrackingEvent
from orders.ordering.links import order_page_url, sealed_guest_url
from orders.ordering.services import OrderService, utcnow
from orders.ordering.status import SHIPPABLE, OrderStatus
from orders.settings import TrackingSettings
from orders.tracking.carriers import canonical_name, carrier_for, normalize_number, tracking_url
from orders.tracking.client import (
    NOT_REGISTERED,
    ProviderError,
    ProviderTracking,
    TrackingClient,
    TrackRequest,
)
from orders.tracking.repositories import TrackingRepository

log = structlog.get_logger("orders.tracking")

S = OrderStatus


def link_for(settings: TrackingSettings, carrier: str, number: str) -> str:
    template, forced = settings.link_template()
    return tracking_url(carrier, number, template, forced=forced)


def request_for(carrier: str, number: str) -> TrackRequest:
    return TrackRequest(number=number, carrier_key=carrier_for(carrier).provider_key)


class TrackingService:
    def __init__(
        self, session: AsyncSession, client: TrackingClient, settings: TrackingSettings
    ) -> None:
        self.session = session
        self.client = client
        self.settings = settings
        self.orders = OrderService(session)
        self.repo = TrackingRepository(session)

    async def ship(
        self, order_id: uuid.UUID, carrier: str, number: str, *, actor: str
    ) -> tuple[Order, bool]:
        """Hand the order to a carrier; (order, changed). Shipping again with the same carrier
        and number changes nothing; with another number it corrects the tracking."""
        order = await self.orders.lock(order_id)
        name = canonical_name(carrier)
        number = normalize_number(number)
        if len(number) < 5:
            raise Problem(422, "invalid-tracking-number", "The tracking number is too short.")
        status = S(order.status)
        if status == S.SHIPPED and order.carrier == name and order.tracking_number == number:
            return order, False
        if status not in SHIPPABLE:
            raise Problem(
                409,
                "not-shippable",
                f"An order that is {status.value} cannot be shipped.",
                current=status.value,
            )
        if status == S.SHIPPED:
            await self.repo.forget_scans(order.id)
            self.orders.history.record(
                order.id,
                status.value,
                status.value,
                actor=actor,
                reason=f"tracking corrected: {order.carrier} {order.tracking_number} -> {name} {number}",
            )
        else:
            self.orders.move(order, S.SHIPPED, actor=actor, reason=f"shipped with {name} {number}")
        order.carrier = name
        order.tracking_number = number
        order.tracking_status = None
        order.tracking_details = None
        order.tracking_last_sync = None
        order.tracking_registered = False
        order.tracking_error = None
        await self.register(order)
        await outbox.add(
            self.session,
            OrderShipped(
                order_id=order.id,
                email=order.email,
                carrier=name,
                tracking_number=number,
                tracking_url=link_for(self.settings, name, number),
                order_url=order_page_url(order),
                sealed_order_url=sealed_guest_url(order),
            ),
        )
        return order, True

    async def register(self, order: Order) -> None:
        """Ask the provider to follow the number; a failure is kept on the order and retried by
        the poller, it never stops a shipment."""
        assert order.carrier
        assert order.tracking_number
        try:
            result = await self.client.register([request_for(order.carrier, order.tracking_number)])
        except ProviderError as exc:
            log.warning("tracking_register_failed", order_id=str(order.id), error=str(exc))
            order.tracking_error = str(exc)[:500]
            return
        if order.tracking_number in result.accepted:
            order.tracking_registered = True
            order.tracking_error = None
        else:
            code, message = result.rejected.get(order.tracking_number, (0, "not accepted"))
            order.tracking_error = f"register refused ({code}): {message}"[:500]

    async def sync(self, order: Order, *, now: dt.datetime | None = None) -> None:
        """Fetch the order's tracking now and apply it (staff's "sync now")."""
        if not order.carrier or not order.tracking_number:
            raise Problem(409, "not-shipped", "This order has no tracking number yet.")
        now = now or utcnow()
        if not order.tracking_registered:
            await self.register(order)
        try:
            result = await self.client.track([request_for(order.carrier, order.tracking_number)])
        except ProviderError as exc:
            order.tracking_error = str(exc)[:500]
            order.tracking_last_sync = now
            raise Problem(
                503, "tracking-unavailable", "The tracking provider did not answer; try later."
            ) from exc
        await self.apply_result(
            order, result.tracking.get(order.tracking_number), result.rejected, now
        )

    async def apply_result(
        self,
        order: Order,
        tracking: ProviderTracking | None,
        rejected: dict[str, tuple[int, str]],
        now: dt.datetime,
    ) -> None:
        order.tracking_last_sync = now
        number = order.tracking_number or ""
        if tracking is None:
            code, message = rejected.get(number, (0, "no answer for this number"))
            if code == NOT_REGISTERED:
                # The provider forgot it (or never had it): register again on the next round.
                order.tracking_registered = False
            order.tracking_error = f"tracking refused ({code}): {message}"[:500]
            return
        await self.apply(order, tracking, now)

    async def apply(self, order: Order, tracking: ProviderTracking, now: dt.datetime) -> None:
        added = await self.repo.add_scans(order.id, tracking.scans)
        order.tracking_registered = True
        order.tracking_status = tracking.status
        order.tracking_details = tracking.summary
        order.tracking_last_sync = now
        order.tracking_error = None
        if added:
            log.info("tracking_scans_added", order_id=str(order.id), added=added)
        if tracking.delivered and S(order.status) in (S.SHIPPED, S.PARTIALLY_REFUNDED):
            if order.delivered_at is not None or order.shipped_at is None:
                return
            delivered_at = tracking.delivered_at or now
            self.orders.move(
                order,
                S.DELIVERED,
                actor="tracking",
                reason=f"{order.carrier} reported delivery",
                at=delivered_at,
            )
            await outbox.add(
                self.session,
                OrderDelivered(
                    order_id=order.id,
                    email=order.email,
                    carrier=order.carrier or "",
                    tracking_number=number_of(order),
                    delivered_at=delivered_at.isoformat(),
                    order_url=order_page_url(order),
                    sealed_order_url=sealed_guest_url(order),
                ),
            )

    async def scans(self, order_id: uuid.UUID) -> Sequence[TrackingEvent]:
        return await self.repo.scans_for(order_id)


def number_of(order: Order) -> str:
    return order.tracking_number or ""
