"""Reconciliation: webhooks are the truth, this is the net (a webhook lost for good, an endpoint
down past Stripe's retries, a mis-set secret must not leave money taken and no order).

Every replica runs :func:`reconcile_forever`. Each pass leases the checkouts that are still open
or pending and have not been heard of for ``CHECKOUT_RECONCILE_AFTER_S`` (see
:meth:`ReconciliationRepository.lease_due`: replicas share the work and none asks twice), asks
Stripe for each Checkout Session, and hands what it learns to
:meth:`WebhookService.reconcile`: the webhook's own claim-and-move path, in a transaction of its
own, so the order is paid, the stock sold and the mail sent exactly as if the webhook had come,
and the webhook that comes after all changes nothing. Each pass also deletes lapsed stock-hold
claims (:class:`checkout.models.HoldClaim`) and gives back the discount-code uses held by
checkouts that will not be paid (:func:`checkout.offers.services.sweep_holds`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from dataclasses import dataclass

import structlog
from ember_shared.metrics import record_reconciliation
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from checkout.offers.services import sweep_holds
from checkout.payments import PaymentProviderError, StripeGateway
from checkout.reconciliation.repositories import ReconciliationRepository
from checkout.sessions.repositories import HoldBudgetRepository
from checkout.settings import CheckoutSettings
from checkout.webhooks.services import WebhookService

log = structlog.get_logger("checkout.reconciliation")


@dataclass(frozen=True)
class Pass:
    asked: int
    applied: int


async def reconcile_once(
    engine: AsyncEngine, gateway: StripeGateway, settings: CheckoutSettings
) -> Pass:
    async with AsyncSession(engine, expire_on_commit=False) as db, db.begin():
        now = dt.datetime.now(dt.UTC)
        quiet_since = now - dt.timedelta(seconds=settings.reconcile_after_s)
        due = await ReconciliationRepository(db).lease_due(
            quiet_since=quiet_since, limit=settings.reconcile_batch
        )
        # Stock-hold claims left by starts that died (a crash between claim and settling).
        await HoldBudgetRepository(db).forget_lapsed(now)
    asked = applied = 0
    for checkout in due:
        try:
            session = await gateway.retrieve_session(checkout.stripe_session_id)
        except PaymentProviderError as exc:
            if exc.retryable:
                # Stripe is unreachable: the rest waits for the next pass (their lease lapses).
                log.warning("reconcile_stripe_unavailable", error=str(exc)[:200])
                record_reconciliation("checkout", "unavailable")
                break
            log.warning(
                "reconcile_session_unknown",
                stripe_session_id=checkout.stripe_session_id,
                error=str(exc)[:200],
            )
            record_reconciliation("checkout", "unknown")
            continue
        asked += 1
        async with AsyncSession(engine, expire_on_commit=False) as db, db.begin():
            received = await WebhookService(db, gateway).reconcile(session, checkout.status)
        # An "ignored" outcome: the webhook came meanwhile, and this changed nothing.
        applied_now = (
            received is not None
            and not received.duplicate
            and not received.outcome.startswith("ignored")
        )
        record_reconciliation("checkout", "applied" if applied_now else "unchanged")
        if received is not None and applied_now:
            applied += 1
            log.warning(
                "checkout_reconciled",
                stripe_session_id=checkout.stripe_session_id,
                was=checkout.status,
                outcome=received.outcome,
            )
    # Uses of discount codes held by checkouts that will not be paid (after the asks, which
    # settle the holds of the checkouts Stripe closed).
    await sweep_holds(engine, settings)
    return Pass(asked=asked, applied=applied)


async def reconcile_forever(
    engine: AsyncEngine, gateway: StripeGateway, settings: CheckoutSettings
) -> None:
    while True:
        # Replicas started together drift apart instead of asking Stripe in step.
        await asyncio.sleep(settings.reconcile_interval_s * random.uniform(0.8, 1.2))
        try:
            done = await reconcile_once(engine, gateway, settings)
        except Exception as exc:  # the net must outlive any outage
            log.warning("reconcile_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        else:
            if done.asked:
                log.info("reconcile_pass", asked=done.asked, applied=done.applied)
