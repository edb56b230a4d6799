"""``/api/checkout*``: thin routes over :class:`CheckoutService`.

Signed-in shoppers and guests (through cart's ``ember_cart`` cookie) alike. Credentials that
were presented and failed (an expired token, a cookie-authenticated POST without the CSRF
header) are refused rather than treated as a guest.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from ember_shared.auth import current_principal, requires_signed_in
from ember_shared.cookies import CART_COOKIE
from litestar import Controller, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import Parameter

from checkout.events import offer_totals
from checkout.models import CheckoutSession
from checkout.sessions.schemas import (
    CheckoutStarted,
    CheckoutView,
    PricedLine,
    Quote,
    StartCheckout,
)
from checkout.sessions.services import Buyer, CheckoutService, address_out
from checkout.sessions.status import MOST_WAIT_S, CheckoutStatusReader

NO_STORE = {"Cache-Control": "no-store"}


async def refuses_failed_credentials(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    if connection.scope.get("auth"):
        await requires_signed_in(connection, handler)


def shopper_origin(request: Request[Any, Any, Any], state: State) -> str:
    """Where Stripe sends the shopper back: the configured origin they used (Caddy passes their
    Host; the storefront, calling directly, names it in X-Forwarded-Host), so the cart and
    sign-in cookies of that host are there when they return. Any other host gets PUBLIC_URL."""
    host = request.headers.get("x-forwarded-host") or request.headers.get("host") or ""
    return str(state.settings.app.origin_for(host.split(",")[0]))


def checkout_service(state: State, request: Request[Any, Any, Any]) -> CheckoutService:
    return CheckoutService(
        state.checkout_settings,
        state.upstream,
        state.stripe,
        shopper_origin(request, state),
        engine=state.db_engine,
        claims=state.claim_sessions,
        transactions=state.db_reads,
    )


async def provide_checkout_service(
    state: State, request: Request[Any, Any, Any]
) -> CheckoutService:
    """The checkout service works on sessions and transactions of its own (a start's begins
    with its cart's lock), never on the request's."""
    return checkout_service(state, request)


def provide_status_reader(state: State) -> CheckoutStatusReader:
    """Reads on the autocommit engine: one statement each, no BEGIN and COMMIT round trips,
    no request transaction, no connection held while a read waits."""
    return CheckoutStatusReader(state.db_autocommit, state.checkout_changes)


def buyer_of(request: Request[Any, Any, Any]) -> Buyer:
    token = request.cookies.get(CART_COOKIE) or None
    return Buyer(
        principal=current_principal(request),
        cart_token=token[:4096] if token else None,
        client_ip=(request.client.host[:64] if request.client else None) or None,
    )


def _lines(row: CheckoutSession) -> list[PricedLine]:
    return [
        PricedLine(
            product_id=uuid.UUID(str(line["product_id"])),
            slug=line["slug"],
            name=line["name"],
            unit_price=line["unit_price"],
            quantity=line["quantity"],
            line_total=line["line_total"],
            image_url=line.get("image_url") or "",
            # Lines stored before variants hold their product's default variant.
            variant_id=uuid.UUID(str(line.get("variant_id") or line["product_id"])),
            sku=line.get("sku") or "",
            variant_title=line.get("variant_title") or "",
            option_values=list(line.get("option_values") or []),
            discount=int(line.get("discount") or 0),
        )
        for line in row.lines
    ]


def started_view(row: CheckoutSession) -> CheckoutStarted:
    return CheckoutStarted(
        order_id=row.order_id,
        checkout_session_id=row.id,
        status=row.status,  # type: ignore[arg-type]
        checkout_url=row.checkout_url,
        expires_at=row.expires_at,
        lines=_lines(row),
        subtotal=row.subtotal,
        shipping=row.shipping,
        total=row.total,
        currency=row.currency,
        email=row.email,
        **offer_totals(row),
    )


def checkout_view(row: CheckoutSession) -> CheckoutView:
    return CheckoutView(
        order_id=row.order_id,
        checkout_session_id=row.id,
        status=row.status,  # type: ignore[arg-type]
        checkout_url=row.checkout_url if row.status == "open" else None,
        expires_at=row.expires_at,
        lines=_lines(row),
        subtotal=row.subtotal,
        shipping=row.shipping,
        total=row.total,
        currency=row.currency,
        email=row.email,
        **offer_totals(row),
        shipping_address=address_out(row),
        amount_refunded=row.amount_refunded,
        paid_at=row.paid_at,
        created_at=row.created_at,
    )


class CheckoutController(Controller):
    path = "/api/checkout"
    tags = ["checkout"]
    guards = [refuses_failed_credentials]
    dependencies = {"checkout": Provide(provide_checkout_service)}
    security = [{"BearerToken": []}, {}]

    @get(
        "/quote",
        summary="Price the cart now",
        description="The cart's lines priced from catalog, with shipping and total: what a checkout "
        "would charge right now. Nothing is reserved.",
        cache=False,
    )
    async def quote(
        self,
        request: Request[Any, Any, Any],
        checkout: CheckoutService,
        discount_code: Annotated[
            str | None,
            Parameter(query="discount_code", max_length=40, description="A code to try."),
        ] = None,
        shipping_rate: Annotated[
            str | None,
            Parameter(query="shipping_rate", max_length=40, description="A rate's code."),
        ] = None,
        country: Annotated[
            str | None,
            Parameter(query="country", pattern="^[A-Z]{2}$", description="Where it ships."),
        ] = None,
    ) -> Response[Quote]:
        quote = await checkout.quote(
            buyer_of(request),
            discount_code=discount_code,
            shipping_rate=shipping_rate,
            country=country,
        )
        return Response(quote, headers=NO_STORE)

    @post(
        "/session",
        summary="Start paying for the cart",
        description=(
            "Re-prices every line from catalog, reserves all of them (or none: 409 "
            "``lines-unavailable`` names the lines), records the checkout under a new order id and "
            "opens a Stripe Checkout Session. Answers the URL to send the shopper to (201), or the "
            "same checkout again (200) when it is repeated unchanged while open. With "
            "``expected_total`` differing from the new total: 409 ``price-changed`` with the new lines."
        ),
        status_code=201,
        responses={
            200: ResponseSpec(CheckoutStarted, description="The same checkout, already open."),
            502: ResponseSpec(None, description="Stripe refused to open the payment page."),
        },
    )
    async def start(
        self, request: Request[Any, Any, Any], data: StartCheckout, checkout: CheckoutService
    ) -> Response[CheckoutStarted]:
        row, created = await checkout.start(buyer_of(request), data)
        return Response(started_view(row), status_code=201 if created else 200, headers=NO_STORE)

    @get(
        "/session/{order_id:uuid}",
        summary="A checkout's status",
        description=(
            "For the shopper who started it (signed in, or holding the same cart cookie), or for "
            "whoever holds Stripe's ``session_id`` from the success redirect (for an hour after "
            "paying, or after the session's expiry while unpaid). ``paid`` comes only "
            "from Stripe's verified webhook, never from the redirect. With ``wait``, a checkout "
            "still awaiting its payment (``open``, ``payment_pending``) is answered as soon as "
            "its status changes, or as it is after that many seconds."
        ),
        cache=False,
        dependencies={"reader": Provide(provide_status_reader, sync_to_thread=False)},
    )
    async def status(
        self,
        request: Request[Any, Any, Any],
        order_id: uuid.UUID,
        reader: CheckoutStatusReader,
        session_id: Annotated[
            str | None,
            Parameter(
                query="session_id", max_length=255, description="Stripe's Checkout Session id."
            ),
        ] = None,
        wait: Annotated[
            float,
            Parameter(
                query="wait",
                ge=0,
                le=MOST_WAIT_S,
                description=(
                    "Seconds to wait for a checkout awaiting its payment to change before "
                    "answering (0, the default: answer now)."
                ),
            ),
        ] = 0,
    ) -> Response[CheckoutView]:
        row = await reader.view(order_id, buyer_of(request), session_id, wait)
        return Response(checkout_view(row), headers=NO_STORE)
