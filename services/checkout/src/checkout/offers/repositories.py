"""Every query on ``shipping_rates``, ``discount_codes`` and ``discount_holds``. Nothing here
commits: the request, the webhook or the hold's own short transaction does."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from checkout.models import CheckoutSession, DiscountCode, DiscountHold, ShippingRate

MAX_RATES = 100
MAX_CODES = 500

#: Take one use of a code for an open checkout: only while the code is active and
#: ``uses + holds`` stays within ``max_uses``. The row lock this UPDATE takes also orders the
#: per-customer count that follows in the same transaction.
_TAKE_HOLD = text(
    """
    UPDATE checkout.discount_codes
       SET holds = holds + 1, updated_at = now()
     WHERE id = :code_id AND active
       AND (max_uses IS NULL OR uses + holds < max_uses)
    RETURNING id
    """
)
#: A code's holds whose checkout never got written (the request died) are given back.
_LAPSE = text(
    """
    WITH lapsed AS (
        UPDATE checkout.discount_holds SET status = 'released', updated_at = now()
         WHERE code_id = :code_id AND status = 'held' AND expires_at <= :now
        RETURNING 1
    )
    UPDATE checkout.discount_codes
       SET holds = holds - (SELECT count(*) FROM lapsed)
     WHERE id = :code_id AND (SELECT count(*) FROM lapsed) > 0
    """
)

#: Every code's holds that will not be paid: past their expiry (their checkout long closed, its
#: webhook and the reconciler's look both missed), or taken by a start whose checkout was never
#: written (its request died). Replicas share the work (SKIP LOCKED); a deadlock between two
#: of them over the same codes fails one pass, and the next takes what is left.
_SWEEP = text(
    """
    WITH due AS (
        SELECT h.id FROM checkout.discount_holds h
         WHERE h.status = 'held'
           AND (h.expires_at <= :now
                OR (h.created_at <= :orphaned_before
                    AND NOT EXISTS (SELECT 1 FROM checkout.checkout_sessions s
                                     WHERE s.order_id = h.order_id)))
         ORDER BY h.code_id
         LIMIT :limit
         FOR UPDATE SKIP LOCKED
    ), lapsed AS (
        UPDATE checkout.discount_holds h SET status = 'released', updated_at = now()
          FROM due WHERE h.id = due.id AND h.status = 'held'
        RETURNING h.code_id
    ), counted AS (
        SELECT code_id, count(*) AS n FROM lapsed GROUP BY code_id
    )
    UPDATE checkout.discount_codes c SET holds = c.holds - counted.n, updated_at = now()
      FROM counted WHERE c.id = counted.code_id
    RETURNING c.code, counted.n
    """
)
SWEEP_BATCH = 500

#: The active shipping rates as one JSON array (in the order a checkout offers them), for a
#: statement that reads them beside something else: a start's budget claim reads them with it.
#: ``most_rates``: :data:`MAX_RATES`. Only what pricing reads of a rate (:func:`checkout.offers.services.shipping_options`).
ACTIVE_RATES_JSON = """
    SELECT coalesce(json_agg(r ORDER BY r.position, r.price, r.code), '[]')
      FROM (SELECT code, name, price, free_over, countries, min_days, max_days, position
              FROM checkout.shipping_rates WHERE active
             ORDER BY position, price, code LIMIT :most_rates) r
"""


def rates_from_json(rates: list[dict[str, Any]]) -> list[ShippingRate]:
    """:data:`ACTIVE_RATES_JSON`'s answer (the driver decodes JSON) as rates, not added to any
    session: only read. Its keys are the model's own column names, selected by name."""
    return [ShippingRate(**terms, active=True) for terms in rates]


_ALL_RATES = (
    select(ShippingRate)
    .order_by(ShippingRate.position, ShippingRate.price, ShippingRate.code)
    .limit(MAX_RATES)
)
#: Built once (keyed by ``active_only``): their cache keys are memoized on them.
_RATES = {False: _ALL_RATES, True: _ALL_RATES.where(ShippingRate.active.is_(True))}


class OffersRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- shipping rates -------------------------------------------------------------------

    async def rates(self, *, active_only: bool) -> list[ShippingRate]:
        return list((await self.session.scalars(_RATES[active_only])).all())

    async def rate(self, rate_id: uuid.UUID) -> ShippingRate | None:
        return await self.session.get(ShippingRate, rate_id)

    async def rate_by_code(self, code: str) -> ShippingRate | None:
        found: ShippingRate | None = await self.session.scalar(
            select(ShippingRate).where(ShippingRate.code == code)
        )
        return found

    # --- discount codes -------------------------------------------------------------------

    async def codes(self) -> list[DiscountCode]:
        query = select(DiscountCode).order_by(DiscountCode.created_at.desc()).limit(MAX_CODES)
        return list((await self.session.scalars(query)).all())

    async def code(self, code_id: uuid.UUID) -> DiscountCode | None:
        return await self.session.get(DiscountCode, code_id)

    async def code_by_text(self, code: str) -> DiscountCode | None:
        found: DiscountCode | None = await self.session.scalar(
            select(DiscountCode).where(DiscountCode.code == code.upper())
        )
        return found

    async def customer_uses(self, code_id: uuid.UUID, customer: str) -> int:
        count = await self.session.scalar(
            select(func.count())
            .select_from(DiscountHold)
            .where(
                DiscountHold.code_id == code_id,
                DiscountHold.customer == customer,
                DiscountHold.status.in_(("held", "used")),
            )
        )
        return int(count or 0)

    async def has_paid_before(self, user_id: uuid.UUID | None, email: str) -> bool:
        """Whether this shopper (their account, or their email as a guest) ever paid here."""
        who = [func.lower(CheckoutSession.email) == email.lower()]
        if user_id is not None:
            who.append(CheckoutSession.user_id == user_id)
        found = await self.session.scalar(
            select(CheckoutSession.id)
            .where(
                or_(*who),
                CheckoutSession.status.in_(("paid", "partially_refunded", "refunded")),
            )
            .limit(1)
        )
        return found is not None

    async def lapse_holds(self, code_id: uuid.UUID, now: dt.datetime) -> None:
        await self.session.execute(_LAPSE, {"code_id": code_id, "now": now})

    async def sweep_holds(self, now: dt.datetime, orphaned_before: dt.datetime) -> dict[str, int]:
        """Give back the holds that will not be paid (see ``_SWEEP``): released, by code."""
        rows = await self.session.execute(
            _SWEEP, {"now": now, "orphaned_before": orphaned_before, "limit": SWEEP_BATCH}
        )
        return {str(code): int(n) for code, n in rows.all()}

    async def take_hold(self, code_id: uuid.UUID) -> bool:
        taken = await self.session.execute(_TAKE_HOLD, {"code_id": code_id})
        return taken.first() is not None

    async def add_hold(self, hold: DiscountHold) -> None:
        self.session.add(hold)
        await self.session.flush()

    async def move_hold(self, order_id: uuid.UUID, to: str) -> DiscountHold | None:
        """Move the order's hold from ``held`` (or, to ``used``, from ``released``: paid after
        it lapsed) to ``to``, once; answers the moved hold, or None when nothing moved."""
        sources = ("held", "released") if to == "used" else ("held",)
        hold: DiscountHold | None = await self.session.scalar(
            select(DiscountHold)
            .where(DiscountHold.order_id == order_id, DiscountHold.status.in_(sources))
            .with_for_update()
        )
        if hold is None:
            return None
        was = hold.status
        hold.status = to
        await self.session.flush()
        if to == "used" and was == "held":
            await self.session.execute(
                update(DiscountCode)
                .where(DiscountCode.id == hold.code_id)
                .values(holds=DiscountCode.holds - 1, uses=DiscountCode.uses + 1)
            )
        elif to == "used":
            # Paid after its hold was given back: counted if the limit still allows it (the
            # CHECK must hold); otherwise the payment stands and only the count is short.
            await self.session.execute(
                update(DiscountCode)
                .where(
                    DiscountCode.id == hold.code_id,
                    or_(
                        DiscountCode.max_uses.is_(None),
                        DiscountCode.uses + DiscountCode.holds < DiscountCode.max_uses,
                    ),
                )
                .values(uses=DiscountCode.uses + 1)
            )
        else:
            await self.session.execute(
                update(DiscountCode)
                .where(DiscountCode.id == hold.code_id)
                .values(holds=DiscountCode.holds - 1)
            )
        return hold
