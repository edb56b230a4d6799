"""How a guest (no account to sign in to) gets back to their order: the capability link.

The mailed link carries a random secret of ours (``?token=``). Orders keeps only its SHA-256,
to check it, and the whole link sealed for the notifier (``ember_shared.sealing``), to put in
later mails (shipped, delivered, refunded); only the notifier opens that, while it sends a
mail. So no table, stream, log or admin view holds a link that opens the order.

Stripe's Checkout Session id (``?session_id=cs_...``, which Stripe's success redirect carries)
must rest in clear: checkout talks to Stripe with it. It opens the order only for a short while
(``REDIRECT_GRACE`` after the payment, or after the payment deadline while unpaid): long enough
for the page that Stripe redirects to, useless later to whoever reads it at rest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from ember_shared.sealing import public_key, seal
from ember_shared.settings import service_settings

from orders.models import Order

#: How long after paying (or after the payment deadline, before paying) Stripe's session id
#: still opens the order: the success page and its wait for the webhook fit well within it.
REDIRECT_GRACE = dt.timedelta(hours=1)


def order_page_url(order: Order) -> str:
    """The order's page, with no capability in it (a customer signs in to see it)."""
    return f"{service_settings('orders').app.public_url.rstrip('/')}/order/{order.id}"


def link_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_guest_link(order: Order) -> None:
    """Give a guest's order its capability, once: kept as a hash and a sealed link only."""
    if order.user_id is not None or order.guest_link_hash:
        return
    token = secrets.token_urlsafe(32)
    app = service_settings("orders").app
    order.guest_link_hash = link_hash(token)
    order.sealed_order_url = seal(
        f"{order_page_url(order)}?token={token}", public_key(local=app.is_local)
    )


def token_opens(order: Order, token: str | None) -> bool:
    if not token or not order.guest_link_hash:
        return False
    return hmac.compare_digest(link_hash(token), order.guest_link_hash)


def redirect_opens(order: Order, session_id: str | None, now: dt.datetime) -> bool:
    """Stripe's session id from the success redirect, while it is fresh."""
    if not session_id or not order.stripe_session_id:
        return False
    anchor = order.paid_at or order.payment_expires_at or order.created_at
    if now > anchor + REDIRECT_GRACE:
        return False
    return hmac.compare_digest(session_id.encode(), order.stripe_session_id.encode())


def sealed_guest_url(order: Order) -> str:
    """The sealed link for a mail about ``order`` (issued now for a guest order paid before
    links were), or "" for a customer's order."""
    issue_guest_link(order)
    return order.sealed_order_url or ""
