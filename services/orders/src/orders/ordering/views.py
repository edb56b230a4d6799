"""Turning orders into what the APIs answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orders.models import Order, OrderStatusChange, TrackingEvent
from orders.ordering.schemas import (
    AddressView,
    AdminOrderSummary,
    AdminOrderView,
    OrderItemView,
    OrderView,
    ShipmentView,
    StatusChangeView,
    TrackingEventView,
    TrackingView,
)
from orders.ordering.status import ADMIN_TARGETS, OrderStatus
from orders.settings import TrackingSettings
from orders.tracking.services import link_for


def _address(order: Order) -> AddressView:
    data: dict[str, Any] = order.shipping_address or {}
    return AddressView(
        name=order.shipping_name,
        line1=str(data.get("line1", "")),
        line2=str(data.get("line2", "")),
        city=str(data.get("city", "")),
        state=str(data.get("state", "")),
        postal_code=str(data.get("postal_code", "")),
        country=str(data.get("country", "")),
        phone=order.shipping_phone,
    )


def _shipment(order: Order, tracking: TrackingSettings) -> ShipmentView | None:
    if not order.carrier or not order.tracking_number:
        return None
    return ShipmentView(
        carrier=order.carrier,
        tracking_number=order.tracking_number,
        tracking_url=link_for(tracking, order.carrier, order.tracking_number),
        status=order.tracking_status,
        shipped_at=order.shipped_at,
        delivered_at=order.delivered_at,
        last_sync=order.tracking_last_sync,
    )


def _base(order: Order, tracking: TrackingSettings) -> dict[str, Any]:
    items = [
        OrderItemView(
            product_id=item.product_id,
            slug=item.slug,
            name=item.name,
            image_url=item.image_url,
            unit_price=item.unit_price,
            quantity=item.quantity,
            line_total=item.line_total,
            discount=item.discount,
            variant_id=item.variant_id,
            sku=item.sku or "",
            variant_title=item.variant_title or "",
            option_values=list(item.option_values or []),
        )
        for item in order.items
    ]
    return {
        "id": order.id,
        "status": order.status,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "paid_at": order.paid_at,
        "cancelled_at": order.cancelled_at,
        "email": order.email,
        "currency": order.currency,
        "subtotal": order.subtotal,
        "shipping_total": order.shipping_total,
        "total": order.total,
        "amount_refunded": order.amount_refunded,
        "item_count": sum(i.quantity for i in items),
        "items": items,
        "shipping_address": _address(order),
        "shipment": _shipment(order, tracking),
        "subscription_id": order.subscription_id,
        "discount_total": order.discount_total,
        "discount_code": order.discount_code,
        "tax_total": order.tax_total,
        "shipping_method": order.shipping_method,
    }


def order_view(order: Order, tracking: TrackingSettings) -> OrderView:
    return OrderView(**_base(order, tracking))


def admin_order_view(
    order: Order,
    history: Sequence[OrderStatusChange],
    tracking: TrackingSettings,
    allowed: Sequence[OrderStatus],
) -> AdminOrderView:
    return AdminOrderView(
        **_base(order, tracking),
        user_id=order.user_id,
        checkout_session_id=order.checkout_session_id,
        reservation_id=order.reservation_id,
        stripe_invoice_id=order.stripe_invoice_id,
        stripe_session_id=order.stripe_session_id,
        payment_intent_id=order.payment_intent_id,
        notes=order.notes,
        tracking_registered=order.tracking_registered,
        tracking_error=order.tracking_error,
        fulfilled_at=order.fulfilled_at,
        refunded_at=order.refunded_at,
        attention=order.attention,
        allowed_statuses=[s.value for s in allowed if s in ADMIN_TARGETS],  # type: ignore[misc]
        history=[
            StatusChangeView(
                from_status=change.from_status,  # type: ignore[arg-type]
                to_status=change.to_status,  # type: ignore[arg-type]
                reason=change.reason,
                actor=change.actor,
                at=change.created_at,
            )
            for change in history
        ],
    )


def admin_summary(order: Order) -> AdminOrderSummary:
    return AdminOrderSummary(
        id=order.id,
        status=order.status,  # type: ignore[arg-type]
        created_at=order.created_at,
        paid_at=order.paid_at,
        email=order.email,
        user_id=order.user_id,
        currency=order.currency,
        total=order.total,
        amount_refunded=order.amount_refunded,
        item_count=sum(i.quantity for i in order.items),
        carrier=order.carrier,
        tracking_number=order.tracking_number,
        subscription_id=order.subscription_id,
        attention=order.attention,
    )


def tracking_view(
    order: Order, scans: Sequence[TrackingEvent], tracking: TrackingSettings
) -> TrackingView:
    assert order.carrier
    assert order.tracking_number
    return TrackingView(
        order_id=order.id,
        order_status=order.status,  # type: ignore[arg-type]
        carrier=order.carrier,
        tracking_number=order.tracking_number,
        tracking_url=link_for(tracking, order.carrier, order.tracking_number),
        status=order.tracking_status,
        shipped_at=order.shipped_at,
        delivered_at=order.delivered_at,
        last_sync=order.tracking_last_sync,
        events=[
            TrackingEventView(
                occurred_at=scan.occurred_at,
                status=scan.status,
                sub_status=scan.sub_status,
                description=scan.description,
                location=scan.location,
            )
            for scan in scans
        ],
    )
