"""Every query on ``checkout_sessions`` and ``hold_claims``. Nothing here commits: the request,
the handler does, and the budget's claim is a statement of its own (outside any transaction)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import cast

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import Table, bindparam, delete, insert, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from checkout.models import CheckoutSession, CheckoutStatus, HoldClaim

#: The budget decided and, when there is room, claimed: one call of the function the migration
#: ``a4c8e2f6b1d3`` made, outside any transaction, so that the subjects' advisory locks are taken
#: and released inside this one statement (see the migration for why a function).
_CLAIM = text(
    "SELECT checkout.claim_hold_budget(:claim_id, :cart, :ip, :email, :units, :expires_at, "
    ":now, :most_per_client, :most_per_email, :most_units)"
)


@dataclass(frozen=True)
class HoldBudget:
    """How much stock one client address, and one email, may hold without paying."""

    most_per_client: int  # open checkouts
    most_per_email: int
    most_units: int


class HoldBudgetRepository:
    """The stock-hold budget's queries: the claim on an autocommit session (a transaction of
    its own), the settling and the sweep in whichever transaction the caller gives."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(
        self,
        *,
        claim_id: uuid.UUID,
        cart_id: uuid.UUID,
        client_ip: str | None,
        email: str,
        units: int,
        expires_at: dt.datetime,
        now: dt.datetime,
        budget: HoldBudget,
    ) -> dt.datetime | None:
        """Claim ``units`` for a start unless its client address's or its email's other holds
        leave no room in ``budget``. None when claimed; else when the first hold of the subject
        that refused lapses. The session must not be in a transaction: the statement is its own, and
        its locks last no longer than it does."""
        refused_until: dt.datetime | None = await self.session.scalar(
            _CLAIM,
            {
                "claim_id": claim_id,
                "cart": cart_id,
                "ip": client_ip,
                "email": email,
                "units": units,
                "expires_at": expires_at,
                "now": now,
                "most_per_client": budget.most_per_client,
                "most_per_email": budget.most_per_email,
                "most_units": budget.most_units,
            },
        )
        return refused_until

    async def forget_lapsed(self, now: dt.datetime) -> int:
        """Every lapsed claim (each subject's are also deleted when it next checks out)."""
        result = await self.session.execute(delete(HoldClaim).where(HoldClaim.expires_at <= now))
        return int(getattr(result, "rowcount", 0) or 0)

    async def drop_claim(self, claim_id: uuid.UUID) -> None:
        await self.session.execute(delete(HoldClaim).where(HoldClaim.id == claim_id))


#: The statements of each order's path on ``checkout_sessions``, built once: their cache keys
#: are memoized on them, not walked again for every start (a statement made per call is).
_OPEN_FOR_CART = (
    select(CheckoutSession)
    .where(
        CheckoutSession.cart_id == bindparam("cart"),
        CheckoutSession.status == CheckoutStatus.OPEN.value,
    )
    .order_by(CheckoutSession.created_at.desc())
    .execution_options(populate_existing=True)
)
_OPEN_FOR_CART_DROPPING_CLAIM = _OPEN_FOR_CART.add_cte(
    delete(HoldClaim).where(HoldClaim.id == bindparam("claim")).cte("dropped_claim")
)
#: The status read (each poll of the order page) and the payment webhook's lock.
_BY_ORDER_ID = select(CheckoutSession).where(CheckoutSession.order_id == bindparam("order_id"))
_LOCK_BY_STRIPE_SESSION = (
    select(CheckoutSession)
    .where(CheckoutSession.stripe_session_id == bindparam("stripe_session_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)
_TABLE = cast(Table, CheckoutSession.__table__)
_INSERT_ROW = insert(_TABLE).returning(_TABLE.c.created_at, _TABLE.c.updated_at)
#: (attribute, column) of every mapped column.
_ROW_COLUMNS = [(a.key, a.columns[0].key) for a in inspect(CheckoutSession).column_attrs]


class CheckoutSessionRepository(SQLAlchemyAsyncRepository[CheckoutSession]):
    model_type = CheckoutSession

    async def lock_cart(self, cart_id: uuid.UUID) -> None:
        """Serialise checkouts of one cart until the transaction ends (across replicas too): a
        double click waits here, then finds the first click's session instead of opening another."""
        await self.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"checkout:cart:{cart_id}"},
        )

    async def open_for_cart(
        self, cart_id: uuid.UUID, *, dropping_claim: uuid.UUID | None = None
    ) -> list[CheckoutSession]:
        """The cart's open sessions; ``dropping_claim``: the start's budget claim is deleted by
        the same statement (a data-modifying CTE). It is deleted in the transaction that writes
        the session row (or answers the one open), so other starts see the claim until that
        commits and the row from then on; a failed start rolls the deletion back with it."""
        if dropping_claim is None:
            found = await self.session.execute(_OPEN_FOR_CART, {"cart": cart_id})
        else:
            found = await self.session.execute(
                _OPEN_FOR_CART_DROPPING_CLAIM, {"cart": cart_id, "claim": dropping_claim}
            )
        return list(found.scalars())

    async def insert_new(self, row: CheckoutSession) -> None:
        """Write a new session row (every column its start set; the columns' defaults for the
        rest) by one INSERT built once, its RETURNING bringing the server's timestamps back.
        The row is not added to the ORM session: nothing of the request changes it after, and
        the unit of work's flush of one new row cost as much again as this."""
        state = row.__dict__
        written = await self.session.execute(
            _INSERT_ROW, {column: state[key] for key, column in _ROW_COLUMNS if key in state}
        )
        row.created_at, row.updated_at = written.one()

    async def by_order_id(self, order_id: uuid.UUID) -> CheckoutSession | None:
        found = await self.session.execute(_BY_ORDER_ID, {"order_id": order_id})
        return found.scalar_one_or_none()

    async def lock_by_stripe_session(self, stripe_session_id: str) -> CheckoutSession | None:
        found = await self.session.execute(
            _LOCK_BY_STRIPE_SESSION, {"stripe_session_id": stripe_session_id}
        )
        return found.scalar_one_or_none()

    async def lock_by_id(self, checkout_session_id: uuid.UUID) -> CheckoutSession | None:
        statement = (
            select(CheckoutSession)
            .where(CheckoutSession.id == checkout_session_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def lock_by_payment_intent(self, payment_intent_id: str) -> CheckoutSession | None:
        statement = (
            select(CheckoutSession)
            .where(CheckoutSession.stripe_payment_intent_id == payment_intent_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalars().first()

    async def lock_by_order_id(self, order_id: uuid.UUID) -> CheckoutSession | None:
        statement = (
            select(CheckoutSession)
            .where(CheckoutSession.order_id == order_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()
