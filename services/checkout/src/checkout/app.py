"""The checkout service's ASGI app: ``uvicorn --factory checkout.app:create_app``.

Checkout sessions (cart priced from catalog, stock reserved, Stripe Checkout opened), coffee
subscriptions (Stripe Billing), Stripe's webhooks as the only source of payment and subscription
state, and the events that tell orders, catalog, cart and the notifier what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from ember_shared.app import ServiceSpec, create_service_app
from ember_shared.db import make_engine
from ember_shared.settings import service_settings
from ember_shared.tracing import instrument_engine
from litestar import Litestar
from sqlalchemy.ext.asyncio import async_sessionmaker

from checkout.internal.controllers import InternalCheckoutController
from checkout.models import Base
from checkout.offers.controllers import (
    AdminDiscountCodeController,
    AdminShippingRateController,
    ShippingOptionsController,
)
from checkout.payments import StripeGateway
from checkout.reconciliation.services import reconcile_forever
from checkout.sessions.changes import CheckoutChanges
from checkout.sessions.controllers import CheckoutController
from checkout.settings import CheckoutSettings, load_settings
from checkout.subscriptions.controllers import (
    AdminSubscriptionController,
    SubscriptionController,
    SubscriptionPauseController,
)
from checkout.upstream import Upstream
from checkout.webhooks.controllers import stripe_webhook

log = structlog.get_logger("checkout")


def create_app(settings: CheckoutSettings | None = None) -> Litestar:
    service = service_settings("checkout")
    checkout = load_settings(settings, service)

    @asynccontextmanager
    async def checkout_resources(app: Litestar) -> AsyncIterator[None]:
        upstream = Upstream(checkout.upstream_timeout_ms)
        gateway = StripeGateway(checkout)
        app.state.checkout_settings = checkout
        app.state.upstream = upstream
        app.state.stripe = gateway
        # The budget claims' pool: a start claims beside its own transaction (see
        # CheckoutService.start), so never on the pool that transaction holds a connection of.
        claims = app.state.claim_engine = make_engine(
            service, pool_size=checkout.claim_pool_size, max_overflow=0
        )
        instrument_engine(claims)
        app.state.claim_sessions = async_sessionmaker(
            claims.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )
        changes = CheckoutChanges(app.state.db_engine)
        app.state.checkout_changes = changes
        await changes.ensure()
        log.info(
            "stripe_configured", api_base=checkout.stripe_api_base, standin=checkout.uses_standin
        )
        reconciler = (
            asyncio.create_task(
                reconcile_forever(app.state.db_engine, gateway, checkout), name="reconciler"
            )
            if checkout.reconcile_interval_s > 0
            else None
        )
        try:
            yield
        finally:
            if reconciler is not None:
                reconciler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reconciler
            await changes.aclose()
            await gateway.aclose()
            await upstream.aclose()
            await claims.dispose()

    return create_service_app(
        ServiceSpec(
            name="checkout",
            title="Ember checkout",
            description=__doc__ or "",
            route_handlers=[
                CheckoutController,
                ShippingOptionsController,
                AdminShippingRateController,
                AdminDiscountCodeController,
                SubscriptionController,
                AdminSubscriptionController,
                SubscriptionPauseController,
                stripe_webhook,
                InternalCheckoutController,
            ],
            base=Base,
            lifespans=[checkout_resources],
        ),
        settings=service,
    )
