"""Every query on ``checkout_sessions`` and ``hold_claims``. Nothing here commits: the request,
the handler does, and the budget's claim is a statement of its own (outside any transaction)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, cast

from ember_shared.db import sql_literal
from ember_shared.events.contracts import CheckoutStarted
from sqlalchemy import (
    Row,
    Table,
    bindparam,
    delete,
    func,
    insert,
    inspect,
    literal_column,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from checkout.events import outbox
from checkout.models import CheckoutSession, CheckoutStatus, HoldClaim, ShippingRate
from checkout.offers.repositories import ACTIVE_RATES_JSON, MAX_RATES, rates_from_json

#: The budget decided and, when there is room, claimed: one call of the function the migration
#: ``a4c8e2f6b1d3`` made, outside any transaction, so that the subjects' advisory locks are taken
#: and released inside this one statement (see the migration for why a function).
_CLAIM_CALL = (
    "checkout.claim_hold_budget(:claim_id, :cart, :ip, :email, :units, :expires_at, "
    ":now, :most_per_client, :most_per_email, :most_units)"
)
_CLAIM = text(f"SELECT {_CLAIM_CALL}")
#: The same, with the active shipping rates read by that statement (one round trip, not two):
#: the rates come first in its target list, so they are read before the function takes its
#: locks, as when they were a statement of their own before the claim.
_CLAIM_WITH_RATES = text(f"SELECT ({ACTIVE_RATES_JSON}) AS rates, {_CLAIM_CALL} AS refused_until")


@dataclass(frozen=True)
class HoldBudget:
    """How much stock one client address, and one email, may hold without paying."""

    most_per_client: int  # open checkouts
    most_per_email: int
    most_units: int


class HoldBudgetRepository:
    """The stock-hold budget's queries: the claim on an autocommit session (a transaction of
    its own), the settling and the sweep in whichever transaction the caller gives."""

    def __init__(self, session: AsyncSession, *, with_rates: bool = False) -> None:
        """``with_rates``: a claim also reads the active shipping rates, in its statement."""
        self.session = session
        self.with_rates = with_rates

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
    ) -> tuple[dt.datetime | None, list[ShippingRate]]:
        """Claim ``units`` for a start unless its client address's or its email's other holds
        leave no room in ``budget``. None when claimed; else when the first hold of the subject
        that refused lapses. The session must not be in a transaction: the statement is its own, and
        its locks last no longer than it does. With the repository's ``with_rates``, the active
        shipping rates are read by the same statement and answered too (else none)."""
        found = await self.session.execute(
            _CLAIM_WITH_RATES if self.with_rates else _CLAIM,
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
                **({"most_rates": MAX_RATES} if self.with_rates else {}),
            },
        )
        row = found.one()
        if not self.with_rates:
            return row[0], []
        refused_until: dt.datetime | None = row.refused_until
        return refused_until, rates_from_json(row.rates)

    async def forget_lapsed(self, now: dt.datetime) -> int:
        """Every lapsed claim (each subject's are also deleted when it next checks out)."""
        result = await self.session.execute(delete(HoldClaim).where(HoldClaim.expires_at <= now))
        return int(getattr(result, "rowcount", 0) or 0)

    async def drop_claim(self, claim_id: uuid.UUID) -> None:
        await self.session.execute(delete(HoldClaim).where(HoldClaim.id == claim_id))


def cart_lock(cart_id: uuid.UUID) -> str:
    """The statement that takes a cart's lock until the transaction ends (across replicas too),
    as text for a simple query (sent with BEGIN): a double click waits here, then finds the first
    click's session instead of opening another."""
    return f"SELECT pg_advisory_xact_lock(hashtextextended({sql_literal(f'checkout:cart:{cart_id}')}, 0))"


_TABLE = cast(Table, CheckoutSession.__table__)
#: (attribute, column) of every mapped column.
_ROW_COLUMNS = [(a.key, a.columns[0].key) for a in inspect(CheckoutSession).column_attrs]

#: The statements of each order's path on ``checkout_sessions``, built once: their cache keys
#: are memoized on them, not walked again for every start (a statement made per call is). The
#: start's and the payment webhook's are Core on the table: their rows are made into models
#: the ORM session does not track (no identity map, no loading, no unit of work's flush).
#: ``'open'`` is written into the statement, not bound: only then can a plan made for any cart
#: (Postgres' generic plan) read ix_checkout_sessions_cart_open (cart_id WHERE status = 'open').
#: With the status bound that plan read the whole table (every checkout ever started), never
#: looked as cheap as the one for the values given, and each start's read was planned again
#: (~0.14 ms of Postgres' CPU per start).
_OPEN_FOR_CART = (
    select(_TABLE)
    .where(
        _TABLE.c.cart_id == bindparam("cart"),
        _TABLE.c.status == literal_column(f"'{CheckoutStatus.OPEN.value}'"),
    )
    .order_by(_TABLE.c.created_at.desc())
)
#: The status read (each poll of the order page) and the payment webhook's lock.
_BY_ORDER_ID = select(CheckoutSession).where(CheckoutSession.order_id == bindparam("order_id"))
_LOCK_BY_STRIPE_SESSION = (
    select(CheckoutSession)
    .where(CheckoutSession.stripe_session_id == bindparam("stripe_session_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)
_LOCK_FOR_EVENT = (
    select(_TABLE)
    .where(_TABLE.c.stripe_session_id == bindparam("stripe_session_id"))
    .with_for_update()
)
#: A new session's row, its ``checkout.started`` and the deletion of the start's budget claim in
#: one statement. Its columns' Python-side defaults are bound by ``insert_new`` (``_DEFAULTS``):
#: SQLAlchemy fills them for a plain INSERT but leaves them NULL in one with a data-modifying
#: ``WITH``.
_INSERT_ROW = outbox.with_event(
    insert(_TABLE)
    .add_cte(delete(HoldClaim).where(HoldClaim.id == bindparam("claim")).cte("dropped_claim"))
    .returning(_TABLE.c.created_at, _TABLE.c.updated_at)
)
_DEFAULTS = {
    column.key: column.default.arg
    for column in _TABLE.c
    if isinstance(column.default, ScalarElementColumnDefault)
}
#: What a webhook's move may change on a checkout (the rest is written once, at its start).
MOVABLE = (
    "status",
    "stripe_payment_intent_id",
    "paid_at",
    "closed_at",
    "status_reason",
    "attention",
    "tax",
    "total",
    "amount_refunded",
)
#: The move's new values, bound as ``new_<column>`` (a statement that writes it, as the webhook's
#: claim does, names them so).
MOVED_VALUES: dict[str, Any] = {name: bindparam(f"new_{name}") for name in MOVABLE} | {
    "updated_at": func.now()
}
CHECKOUT_SESSIONS = _TABLE


_new_checkout = inspect(CheckoutSession).class_manager.new_instance
#: A checkout by its order id, read by Core (a status look, on an autocommit connection).
_LOOK_BY_ORDER_ID = select(_TABLE).where(_TABLE.c.order_id == bindparam("order_id"))


def _untracked(row: Row[Any]) -> CheckoutSession:
    """A row read by Core, as a model no ORM session tracks, its attributes written as the
    ORM's loading writes them (straight into the instance's dict: the instrumented
    ``__init__``'s attribute events cost ~7x as much for its 32 columns)."""
    checkout = _new_checkout()
    mapping = row._mapping
    checkout.__dict__.update({key: mapping[column] for key, column in _ROW_COLUMNS})
    return checkout


async def look_by_order_id(
    connection: AsyncConnection, order_id: uuid.UUID
) -> CheckoutSession | None:
    """The checkout of ``order_id`` read on ``connection`` by one statement built once (no
    ORM session: its identity map, loading and closing cost as much again as the statement)."""
    found = (await connection.execute(_LOOK_BY_ORDER_ID, {"order_id": order_id})).first()
    return _untracked(found) if found is not None else None


def movable_state(row: CheckoutSession) -> tuple[Any, ...]:
    """What a move may have changed of ``row`` (:data:`MOVABLE`), as it is now."""
    return tuple(getattr(row, name) for name in MOVABLE)


class CheckoutSessionRepository:
    """Made for every request and webhook: a plain holder of the session (advanced-alchemy's
    repository, which none of these queries use, built its own statement and options on each)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def open_for_cart(self, cart_id: uuid.UUID) -> list[CheckoutSession]:
        """The cart's open sessions."""
        found = await self.session.execute(_OPEN_FOR_CART, {"cart": cart_id})
        return [_untracked(row) for row in found]

    async def insert_new(
        self, row: CheckoutSession, started: CheckoutStarted, *, dropping_claim: uuid.UUID
    ) -> None:
        """Write a new session row (every column its start set; the columns' defaults for the
        rest) and its ``started`` event, and delete the start's budget claim (the row counts
        against the budget from the commit on), by one INSERT built once, its RETURNING
        bringing the server's timestamps back. The row is not added to the ORM session: nothing
        of the start changes it after, and the unit of work's flush of one new row cost as much
        again as this."""
        state = row.__dict__
        event, _ = outbox.event_params(started)
        written = await self.session.execute(
            _INSERT_ROW,
            _DEFAULTS
            | {column: state[key] for key, column in _ROW_COLUMNS if key in state}
            | event
            | {"claim": dropping_claim},
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

    async def lock_for_event(self, stripe_session_id: str) -> CheckoutSession | None:
        """The checkout of a Checkout Session's event, locked for this transaction, as a model
        the session does not track: the webhook writes what its move changed with its claim
        (:meth:`checkout.webhooks.repositories.ProviderEventRepository.claim`), never by a
        flush."""
        found = (
            await self.session.execute(_LOCK_FOR_EVENT, {"stripe_session_id": stripe_session_id})
        ).first()
        return _untracked(found) if found is not None else None

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
