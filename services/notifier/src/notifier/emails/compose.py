"""What each mail says: the template context built from the event that caused it."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from ember_shared.events.contracts import (
    Address,
    OrderDelivered,
    OrderPaid,
    OrderRefunded,
    OrderShipped,
    PasswordResetRequested,
    SignUpForExistingAccount,
    SignUpRequested,
    SubscriptionPaymentFailed,
    UserRegistered,
)

from notifier.emails.rendering import SEALED_CONTEXT_KEY, SEALED_LINK, money, safe_link


def order_number(order_id: uuid.UUID) -> str:
    # The tail of a UUIDv7 is random; its head is a timestamp shared by orders of one moment.
    return order_id.hex[-8:].upper()


def order_url(public_url: str, order_id: uuid.UUID) -> str:
    return f"{public_url.rstrip('/')}/order/{order_id}"


def order_link(sealed: str, plain: str) -> dict[str, Any]:
    """The context that links the order: a guest's sealed link rests sealed (the stored body
    holds the placeholder, see rendering) and opens only as the mail is sent; else ``plain``."""
    if sealed:
        return {"order_url": SEALED_LINK, SEALED_CONTEXT_KEY: sealed}
    return {"order_url": plain}


def address_lines(address: Address) -> list[str]:
    if address.state:  # "Portland, OR 97201"
        region = " ".join(p for p in (address.state, address.postal_code) if p)
        locality = ", ".join(p for p in (address.city, region) if p)
    else:  # "75001 Paris"
        locality = " ".join(p for p in (address.postal_code, address.city) if p)
    parts = [address.name, address.line1, address.line2, locality, address.country]
    return [p for p in parts if p]


def readable_time(value: str) -> str:
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%H:%M UTC on %d %b %Y")


def order_confirmation(data: OrderPaid, public_url: str) -> dict[str, Any]:
    """A paid order, one-off or a subscription's delivery."""
    # A guest has no account to sign in to: the sealed link is what lets them see the order,
    # from any device the mail is opened on.
    return {
        "public_url": public_url,
        "customer_name": data.shipping_address.name if data.shipping_address else "",
        "order_number": order_number(data.order_id),
        **order_link(data.sealed_order_url, order_url(public_url, data.order_id)),
        "lines": [
            {
                "name": line.name,
                "variant_title": line.variant_title,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "line_total": line.unit_price * line.quantity,
            }
            for line in data.lines
        ],
        "subtotal": data.subtotal,
        "discount": data.discount,
        "discount_code": data.discount_code,
        "shipping": data.shipping,
        "shipping_name": data.shipping_name,
        "tax": data.tax,
        "total": data.total,
        "currency": data.currency,
        "address_lines": address_lines(data.shipping_address) if data.shipping_address else [],
    }


def shipment(data: OrderShipped, public_url: str) -> dict[str, Any]:
    linked = order_link(
        data.sealed_order_url, safe_link(data.order_url, order_url(public_url, data.order_id))
    )
    return {
        "public_url": public_url,
        "order_number": order_number(data.order_id),
        **linked,
        "carrier": data.carrier,
        "tracking_number": data.tracking_number,
        # Without a carrier link the order page shows the tracking events.
        "tracking_url": safe_link(data.tracking_url, linked["order_url"]),
    }


def password_reset(data: PasswordResetRequested, public_url: str) -> dict[str, Any]:
    return {
        "public_url": public_url,
        # The live link rests sealed; the stored body holds a placeholder (see rendering).
        "reset_url": SEALED_LINK,
        SEALED_CONTEXT_KEY: data.reset_url,
        "expires_at": readable_time(data.expires_at),
    }


def welcome(data: UserRegistered, public_url: str) -> dict[str, Any]:
    return {
        "public_url": public_url,
        "customer_name": data.name,
        "shop_url": f"{public_url.rstrip('/')}/",
    }


def delivered(data: OrderDelivered, public_url: str) -> dict[str, Any]:
    return {
        "public_url": public_url,
        "order_number": order_number(data.order_id),
        **order_link(
            data.sealed_order_url, safe_link(data.order_url, order_url(public_url, data.order_id))
        ),
        "carrier": data.carrier,
        "tracking_number": data.tracking_number,
        "delivered_at": readable_time(data.delivered_at),
    }


def subscription_payment_failed(data: SubscriptionPaymentFailed, public_url: str) -> dict[str, Any]:
    # The link is the subscription's page, not Stripe's portal: a portal session expires in
    # minutes and opens the card form to whoever holds it; the page makes one for the owner.
    return {
        "public_url": public_url,
        # The subscription as its page names it: "Ethiopia Guji (Espresso / 1 kg)".
        "product_name": f"{data.product_name} ({data.variant_title})"
        if data.variant_title
        else data.product_name,
        "amount": money(data.amount_due, data.currency),
        "subscription_url": f"{public_url.rstrip('/')}/account/subscriptions/{data.subscription_id}",
    }


def refunded(data: OrderRefunded, public_url: str) -> dict[str, Any]:
    return {
        "public_url": public_url,
        "order_number": order_number(data.order_id),
        **order_link(
            data.sealed_order_url, safe_link(data.order_url, order_url(public_url, data.order_id))
        ),
        "refund": money(data.amount, data.currency),
        "amount": data.amount,
        "amount_refunded": data.amount_refunded,
        "total": data.total,
        "currency": data.currency,
        "fully_refunded": data.fully_refunded,
    }


def sign_up(data: SignUpRequested, public_url: str) -> dict[str, Any]:
    # data.name is never shown: the requester chose it and need not own the address mailed.
    return {
        "public_url": public_url,
        "verify_url": SEALED_LINK,
        SEALED_CONTEXT_KEY: data.verify_url,
        "expires_at": readable_time(data.expires_at),
    }


def existing_account(data: SignUpForExistingAccount, public_url: str) -> dict[str, Any]:
    base = public_url.rstrip("/")
    return {
        "public_url": public_url,
        "customer_name": data.name,
        "sign_in_url": safe_link(data.sign_in_url, f"{base}/signin"),
        "reset_url": safe_link(data.reset_url, f"{base}/forgot-password"),
    }
