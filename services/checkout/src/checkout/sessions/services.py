"""Starting a checkout: price the cart from catalog, hold the stock, open Stripe's payment page.

The rules, in order:

1. The lines come from cart (``/internal/cart/resolve``), the prices from catalog: whatever the
   client believes a product costs is never used. Unknown, archived or short lines are refused
   together in one problem naming them.
2. If the client says which total it showed the shopper (``expected_total``) and catalog's
   prices now make another, nothing stays reserved: 409 ``price-changed`` with the new lines.
3. Stock held without paying has a budget per client address and per email. It is decided by
   one statement outside any transaction (a function: per-subject advisory locks, the open
   checkouts and claims counted, a ``hold_claims`` row written when there is room) before
   anything is reserved, so no lock of a budget is held beyond that statement: checkouts from
   one address (a shared NAT) run side by side. The claim is deleted in the transaction that
   writes the session row, or at once when the start fails; a claim whose request died lapses
   by itself.
4. Checkouts of one cart run one at a time (a transaction-scoped advisory lock). A repeat of the
   same checkout (same lines, prices, address and email) answers the session already open; a
   changed one closes the previous session at Stripe and gives its stock back first.
5. Catalog reserves every line or none, under a new order id. A cart without an open checkout
   and without a discount code is priced by that same call (catalog answers the reserved lines'
   variants, read in the reservation's transaction): one call to catalog, and a total or line
   refused after it releases the reservation before answering. A discount code (its use is held
   before the reservation) or an open checkout of the cart (whether it is this very checkout
   depends on the prices) has the lines looked up first. Then Stripe opens a Checkout
   Session that closes a little before the reservation lapses. Then the session row and its
   ``checkout.started`` event are written in the request's transaction. If Stripe fails, the
   reservation is released and the shopper gets a 502/503 problem.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from ember_shared.auth import Principal
from ember_shared.contracts.cart import ResolvedCart, ResolvedLine
from ember_shared.contracts.catalog import LookupProduct, ReservationOut
from ember_shared.countries import ISO_COUNTRIES
from ember_shared.db import transaction_begun_with
from ember_shared.events.contracts import Address
from ember_shared.ids import new_id
from ember_shared.problems import Problem, not_found
from ember_shared.tracing import current_traceparent
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from checkout import events
from checkout.models import CheckoutSession, CheckoutStatus, ShippingRate
from checkout.offers.services import (
    AppliedDiscount,
    ChosenShipping,
    Offers,
    PricedLineRef,
    choose_shipping,
    customer_key,
    hold_use,
    release_use,
    stripe_coupon_params,
    tax_enabled,
)
from checkout.payments import PaymentProviderError, StripeGateway, unix_to_datetime
from checkout.sessions.repositories import (
    CheckoutSessionRepository,
    HoldBudget,
    HoldBudgetRepository,
    cart_lock,
)
from checkout.sessions.schemas import AddressOut, PricedLine, Quote, StartCheckout
from checkout.settings import CheckoutSettings
from checkout.upstream import StockUnavailable, Upstream

log = structlog.get_logger("checkout.sessions")

MAX_LINES = 100
#: An open session closer than this to its expiry is not handed out again: a new one is opened.
REUSE_MIN_REMAINING = dt.timedelta(seconds=120)


@dataclass(frozen=True)
class Buyer:
    """Who is checking out: the signed-in principal, and/or the guest cart cookie's raw value."""

    principal: Principal | None
    cart_token: str | None
    #: The shopper's address (Caddy's or the storefront's X-Forwarded-For): budgets holds.
    client_ip: str | None = None

    @property
    def user_id(self) -> uuid.UUID | None:
        return self.principal.user_id if self.principal else None


@dataclass(frozen=True)
class Priced:
    cart_id: uuid.UUID
    refs: list[ResolvedLine]
    lines: list[PricedLine]
    subtotal: int
    shipping: int
    #: Before tax (Stripe Tax adds it when the checkout starts).
    total: int
    currency: str
    discount: AppliedDiscount | None = None
    shipping_choice: ChosenShipping | None = None

    def quote(self) -> Quote:
        return Quote(
            cart_id=self.cart_id,
            lines=self.lines,
            subtotal=self.subtotal,
            shipping=self.shipping,
            total=self.total,
            currency=self.currency,
            discount=self.discount.amount if self.discount else 0,
            discount_code=self.discount.code if self.discount else "",
            shipping_rate=self.shipping_choice.code if self.shipping_choice else "",
            shipping_name=self.shipping_choice.name if self.shipping_choice else "",
            tax_at_payment=tax_enabled(),
        )


@dataclass(frozen=True)
class Claim:
    """A start's claim on the hold budget, and the shipping rates read in its transaction."""

    id: uuid.UUID
    rates: list[ShippingRate]


@dataclass(frozen=True)
class Held:
    """What a start holds before it reserves: its budget claim, and the cart's lock (with the
    cart's open sessions, read under it) in its transaction."""

    claim: Claim
    open_rows: list[CheckoutSession]
    transaction: AsyncSession


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class CheckoutService:
    def __init__(
        self,
        settings: CheckoutSettings,
        upstream: Upstream,
        stripe: StripeGateway,
        public_url: str,
        *,
        engine: AsyncEngine,
        claims: async_sessionmaker[AsyncSession],
        transactions: async_sessionmaker[AsyncSession],
    ) -> None:
        #: For the code's own short transactions, apart from the request's.
        self.engine = engine
        #: The budget's claims: sessions on a pool of their own whose every statement is a
        #: transaction of its own.
        self.claims = claims
        #: Autocommit sessions on the service's pool, for a transaction of the code's own that
        #: begins with its first statement (a start's, with the cart's lock).
        self.transactions = transactions
        self.settings = settings
        self.upstream = upstream
        self.stripe = stripe
        self.public_url = public_url.rstrip("/")

    # --- pricing ------------------------------------------------------------------------

    async def _cart(self, buyer: Buyer) -> ResolvedCart:
        return await self.upstream.resolve_cart(buyer.user_id, buyer.cart_token)

    async def price(
        self,
        cart: ResolvedCart,
        *,
        discount_code: str | None = None,
        shipping_rate: str | None = None,
        country: str | None = None,
        user_id: uuid.UUID | None = None,
        email: str = "",
    ) -> Priced:
        quantities = cart_quantities(cart)
        variants = await self.upstream.lookup_lines(list(quantities))
        lines = self._priced_lines(quantities, variants, stock_checked=False)
        subtotal = sum(line.line_total for line in lines)
        # Read in a short session of its own: the request's transaction stays unopened until
        # the budget's and the code's own short transactions are done.
        async with AsyncSession(self.engine) as session:
            offers = Offers(session, self.settings)
            applied = None
            if discount_code:
                applied = await offers.evaluate(
                    discount_code,
                    [
                        PricedLineRef(
                            line.product_id,
                            line.line_total,
                            variants[line.variant_id or line.product_id].category_id,
                        )
                        for line in lines
                    ],
                    user_id=user_id,
                    email=email,
                )
                lines = [
                    msgspec.structs.replace(line, discount=share)
                    for line, share in zip(lines, applied.per_line, strict=True)
                ]
            discount = applied.amount if applied else 0
            chosen = await offers.choose_shipping(shipping_rate, country, subtotal - discount)
        return self._priced(cart, lines, chosen, applied)

    def _priced(
        self,
        cart: ResolvedCart,
        lines: list[PricedLine],
        chosen: ChosenShipping,
        applied: AppliedDiscount | None = None,
    ) -> Priced:
        assert cart.cart_id is not None
        subtotal = sum(line.line_total for line in lines)
        discount = applied.amount if applied else 0
        return Priced(
            cart_id=cart.cart_id,
            refs=[
                ResolvedLine(
                    product_id=line.product_id, variant_id=line.variant_id, quantity=line.quantity
                )
                for line in lines
            ],
            lines=lines,
            subtotal=subtotal,
            shipping=chosen.amount,
            total=subtotal - discount + chosen.amount,
            currency=self.settings.currency,
            discount=applied,
            shipping_choice=chosen,
        )

    def _priced_lines(
        self,
        quantities: dict[tuple[uuid.UUID, uuid.UUID], int],
        variants: dict[uuid.UUID, LookupProduct],
        *,
        stock_checked: bool,
    ) -> list[PricedLine]:
        """The cart's lines at catalog's prices (``variants``: by variant id, only those of the
        product named). Unknown, archived or short lines are refused together; ``stock_checked``:
        catalog has just reserved them, so its ``available`` is what is left after them."""
        unavailable: list[dict[str, Any]] = []
        lines: list[PricedLine] = []
        for (product_id, variant_id), quantity in quantities.items():
            product = variants.get(variant_id)
            if product is None:
                unavailable.append(
                    {
                        "product_id": str(product_id),
                        "name": None,
                        "requested": quantity,
                        "available": 0,
                        "reason": "unknown",
                    }
                )
                continue
            if not product.active:
                unavailable.append(
                    {
                        "product_id": str(product_id),
                        "name": product.name,
                        "requested": quantity,
                        "available": 0,
                        "reason": "archived",
                    }
                )
                continue
            if not stock_checked and product.available < quantity:
                unavailable.append(
                    {
                        "product_id": str(product_id),
                        "name": product.name,
                        "requested": quantity,
                        "available": max(product.available, 0),
                        "reason": "insufficient_stock",
                    }
                )
                continue
            lines.append(
                PricedLine(
                    product_id=product_id,
                    slug=product.slug,
                    name=product.name,
                    unit_price=product.price,
                    quantity=quantity,
                    line_total=product.price * quantity,
                    image_url=product.image_url or "",
                    variant_id=variant_id,
                    sku=product.sku,
                    variant_title=product.variant_title,
                    option_values=list(product.option_values),
                )
            )
        if unavailable:
            raise lines_unavailable(unavailable)
        currencies = {
            variants[line.variant_id or line.product_id].currency.upper() for line in lines
        }
        if currencies != {self.settings.currency}:
            raise Problem(
                409,
                "currency-mismatch",
                f"This shop charges in {self.settings.currency}; the cart holds other currencies.",
            )
        return lines

    async def quote(
        self,
        buyer: Buyer,
        *,
        discount_code: str | None = None,
        shipping_rate: str | None = None,
        country: str | None = None,
    ) -> Quote:
        priced = await self.price(
            await self._cart(buyer),
            discount_code=discount_code,
            shipping_rate=shipping_rate,
            country=country,
            user_id=buyer.user_id,
            email=buyer.principal.email if buyer.principal else "",
        )
        return priced.quote()

    # --- starting -----------------------------------------------------------------------

    async def start(self, buyer: Buyer, data: StartCheckout) -> tuple[CheckoutSession, bool]:
        """The checkout to pay and whether it is new (False: the same one, already open)."""
        email = data.email or (buyer.principal.email if buyer.principal else None)
        if not email:
            raise Problem(
                400,
                "email-required",
                "Give an email address for the receipt.",
                errors=[{"key": "email", "message": "required for guests"}],
            )
        address = await self._address(buyer, data)
        cart = await self._cart(buyer)
        priced: Priced | None = None
        if data.discount_code:
            # The code's use is held before anything is reserved, so its prices come first.
            priced = await self.price(
                cart,
                discount_code=data.discount_code,
                shipping_rate=data.shipping_rate,
                country=address.country,
                user_id=buyer.user_id,
                email=email,
            )
            _expect_total(data, priced)
        quantities = cart_quantities(cart)
        assert cart.cart_id is not None
        order_id = new_id()
        # The budget's claim is a statement of its own on a pool of its own (its round trip,
        # a turn of this loop under load, is not added to the start's): it runs while the
        # start's transaction takes the cart's lock and reads its open sessions. Both are done
        # before anything is reserved. The claims' pool is not the transaction's, so no start
        # holds one connection while it waits for a second from the same pool.
        claiming = asyncio.ensure_future(
            self._claim_budget(
                buyer, email, cart.cart_id, sum(quantities.values()), read_rates=priced is None
            )
        )
        try:
            if priced is not None and priced.discount is not None:
                await hold_use(
                    self.engine,
                    priced.discount,
                    order_id=order_id,
                    customer=customer_key(buyer.user_id, email),
                    expires_at=dt.datetime.now(dt.UTC)
                    + dt.timedelta(seconds=self.settings.reservation_ttl_s),
                )
            # The start's own transaction, begun with the cart's lock in one round trip.
            async with transaction_begun_with(self.transactions, cart_lock(cart.cart_id)) as db:
                open_rows = await CheckoutSessionRepository(db).open_for_cart(cart.cart_id)
                claim = await claiming
                row, created = await self._start_claimed(
                    buyer,
                    data,
                    cart=cart,
                    email=email,
                    address=address,
                    priced=priced,
                    held=Held(claim, open_rows, db),
                    order_id=order_id,
                )
        except BaseException:
            taken = await _claim_taken(claiming)
            if taken is not None:
                await self._release_claim(taken.id)
            if priced is not None and priced.discount is not None:
                await release_use(self.engine, order_id)
            raise
        if not created and priced is not None and priced.discount is not None:
            # The same checkout, already open, holds its own use.
            await release_use(self.engine, order_id)
        return row, created

    async def _start_claimed(
        self,
        buyer: Buyer,
        data: StartCheckout,
        *,
        cart: ResolvedCart,
        email: str,
        address: Address,
        priced: Priced | None,
        held: Held,
        order_id: uuid.UUID,
    ) -> tuple[CheckoutSession, bool]:
        """``priced``: the cart priced already (with a discount code); None: priced here, by the
        reservation itself when the cart has no open checkout (one call to catalog), else by a
        lookup first (whether the open one is this very checkout depends on the prices).
        The start's claim is deleted in this transaction either way (with the session row
        written, or the open one answered), so other starts count it until that commits and
        the row from then on."""
        assert cart.cart_id is not None
        claim, open_rows = held.claim, held.open_rows
        sessions = CheckoutSessionRepository(held.transaction)
        if priced is None and open_rows:
            priced = await self._price_at(cart, address, data, claim.rates)
        customer: asyncio.Task[str] | None = None
        if priced is None:
            # Stripe Tax's customer (the shipping address, for where the sale is taxed) needs
            # nothing of the reservation: it is made while catalog reserves, not after it.
            customer = self._customer_beside(order_id, email, address)
            try:
                reservation, priced = await self._reserve_priced(
                    cart, address, data, claim.rates, order_id
                )
            except BaseException:
                await _abandoned(customer)
                raise
            content = _content_hash(buyer, email, address, priced)
        else:
            content = _content_hash(buyer, email, address, priced)
            existing = await self._settle_open_sessions(open_rows, content)
            if existing is not None:
                await HoldBudgetRepository(held.transaction).drop_claim(claim.id)
                return existing, False
            reservation = await self._reserve(order_id, priced)
        row_id = new_id()
        expires_at = self._stripe_expiry(reservation.expires_at)
        try:
            params = self._stripe_params(
                order_id=order_id,
                row_id=row_id,
                email=email,
                address=address,
                priced=priced,
                expires_at=expires_at,
            )
            await self._stripe_extras(
                params, order_id, email, address, priced, await customer if customer else None
            )
            opened = await self.stripe.open_session(
                params,
                idempotency_key=f"ember-checkout:{priced.cart_id}:{content[:24]}:{order_id}",
            )
        except PaymentProviderError as exc:
            await self.upstream.release(order_id)
            raise exc.problem() from exc
        except BaseException:
            if customer is not None:
                await _abandoned(customer)
            raise
        tax = opened.amount_tax
        if opened.amount_total is not None and opened.amount_total != priced.total + tax:
            # Stripe would charge another amount than Ember records: no payment page.
            log.error(
                "stripe_total_differs",
                order_id=str(order_id),
                stripe_total=opened.amount_total,
                expected=priced.total + tax,
            )
            await self._abandon(opened.id, order_id)
            raise Problem(
                502,
                "payment-provider-error",
                "The payment provider priced this checkout differently: nothing was charged.",
            )
        try:
            row = CheckoutSession(
                id=row_id,
                order_id=order_id,
                status=CheckoutStatus.OPEN.value,
                user_id=buyer.user_id,
                cart_id=priced.cart_id,
                cart_token_hash=token_hash(buyer.cart_token) if buyer.cart_token else None,
                content_hash=content,
                email=email,
                lines=[msgspec.to_builtins(line) for line in priced.lines],
                subtotal=priced.subtotal,
                shipping=priced.shipping,
                total=priced.total + tax,
                currency=priced.currency,
                discount=priced.discount.amount if priced.discount else 0,
                discount_code=priced.discount.code if priced.discount else "",
                tax=tax,
                shipping_rate=priced.shipping_choice.code if priced.shipping_choice else "",
                shipping_name=priced.shipping_choice.name if priced.shipping_choice else "",
                shipping_address=msgspec.to_builtins(address),
                reservation_id=reservation.reservation_id,
                client_ip=buyer.client_ip,
                expires_at=unix_to_datetime(opened.expires_at),
                stripe_session_id=opened.id,
                checkout_url=opened.url,
            )
            # The session row counts against the budget from this commit on, the claim (deleted
            # by the same statement) no more.
            await sessions.insert_new(row, events.checkout_started(row), dropping_claim=claim.id)
        except Exception:
            # Nothing of this checkout will be committed: undo what the others hold for it.
            await self._abandon(opened.id, order_id)
            raise
        log.info(
            "checkout_started",
            order_id=str(order_id),
            checkout_session_id=str(row_id),
            stripe_session_id=opened.id,
            total=priced.total + tax,
            lines=len(priced.lines),
        )
        return row, True

    async def _price_at(
        self, cart: ResolvedCart, address: Address, data: StartCheckout, rates: list[ShippingRate]
    ) -> Priced:
        """The cart at catalog's prices now, without reserving (the shipping rates read with the
        budget's claim): no session of its own beside the request's transaction."""
        quantities = cart_quantities(cart)
        variants = await self.upstream.lookup_lines(list(quantities))
        priced = self._shipped(
            cart,
            self._priced_lines(quantities, variants, stock_checked=False),
            address,
            data,
            rates,
        )
        _expect_total(data, priced)
        return priced

    def _shipped(
        self,
        cart: ResolvedCart,
        lines: list[PricedLine],
        address: Address,
        data: StartCheckout,
        rates: list[ShippingRate],
    ) -> Priced:
        subtotal = sum(line.line_total for line in lines)
        chosen = choose_shipping(
            self.settings, rates, data.shipping_rate, address.country, subtotal
        )
        return self._priced(cart, lines, chosen)

    async def _reserve(self, order_id: uuid.UUID, priced: Priced) -> ReservationOut:
        try:
            return await self.upstream.reserve(
                order_id, priced.refs, self.settings.reservation_ttl_s
            )
        except StockUnavailable as exc:
            names = {line.product_id: line.name for line in priced.lines}
            raise lines_unavailable(
                [
                    {
                        "product_id": str(line.product_id),
                        "name": names.get(line.product_id),
                        "requested": line.requested,
                        "available": line.available,
                        "reason": "insufficient_stock",
                    }
                    for line in exc.lines
                ]
            ) from None

    async def _reserve_priced(
        self,
        cart: ResolvedCart,
        address: Address,
        data: StartCheckout,
        rates: list[ShippingRate],
        order_id: uuid.UUID,
    ) -> tuple[ReservationOut, Priced]:
        """Reserve every line and price them in one call to catalog (its prices read in the
        reservation's transaction). A refusal reserves nothing; a reservation whose prices are
        then refused here (another total than the shopper saw, an archived line) is released
        before the problem is answered, as when Stripe fails."""
        quantities = cart_quantities(cart)
        refs = [
            ResolvedLine(product_id=p, variant_id=v, quantity=q) for (p, v), q in quantities.items()
        ]
        try:
            reservation = await self.upstream.reserve(
                order_id, refs, self.settings.reservation_ttl_s, priced=True
            )
        except StockUnavailable as exc:
            raise _refused(exc) from None
        try:
            variants = _of_products(quantities, reservation.variants)
            lines = self._priced_lines(quantities, variants, stock_checked=True)
            priced = self._shipped(cart, lines, address, data, rates)
            _expect_total(data, priced)
        except BaseException:
            await self.upstream.release(order_id)
            raise
        return reservation, priced

    def _claim_ttl(self) -> dt.timedelta:
        """A claim outliving its request (a crash between the claim and its settling) stops
        counting after the longest a start can run."""
        return dt.timedelta(seconds=self.settings.start_bound_s)

    async def _claim_budget(
        self, buyer: Buyer, email: str, cart_id: uuid.UUID, units: int, *, read_rates: bool
    ) -> Claim:
        """Stock held without paying is bounded per client address and per email, so that no
        one client can make a product "sold out" for everyone by opening checkouts.

        Decided and claimed by one statement outside any transaction, before any stock is
        reserved: the per-subject locks that make two concurrent starts see each other's claims
        are held inside that statement only, never while this process is asked for the next
        one (under load, a turn of a busy event loop) nor across a call to catalog or Stripe.
        With ``read_rates``, the active shipping rates are read first (the checkout's prices are
        not known yet: the reservation answers them)."""
        limit = self.settings.max_held_units
        if units > limit:
            raise Problem(
                422,
                "checkout-too-large",
                f"One checkout can hold at most {limit} items. Remove some, or contact us for "
                "a larger order.",
                limit=limit,
            )
        claim_id = new_id()
        now = dt.datetime.now(dt.UTC)
        async with self.claims() as session:
            # With the rates: read by the claim's statement, before its locks are taken.
            claims = HoldBudgetRepository(session, with_rates=read_rates)
            refused_until, rates = await claims.claim(
                claim_id=claim_id,
                cart_id=cart_id,
                client_ip=buyer.client_ip,
                email=email,
                units=units,
                expires_at=now + self._claim_ttl(),
                now=now,
                budget=HoldBudget(
                    self.settings.max_open_per_client, self.settings.max_open_per_email, limit
                ),
            )
        if refused_until is not None:
            wait = max(1, int((refused_until - now).total_seconds()))
            raise Problem(
                429,
                "too-many-checkouts",
                "Other checkouts of yours are still waiting for payment. Pay or leave "
                "one of them (or wait until it lapses) before starting another.",
                title="Too many open checkouts",
                headers={"Retry-After": str(wait)},
            )
        return Claim(claim_id, rates)

    async def _release_claim(self, claim_id: uuid.UUID) -> None:
        """A start that failed after its claim gives the claim back at once (its transaction,
        with the cart's lock, has ended already)."""
        try:
            async with self.claims() as session:
                await HoldBudgetRepository(session).drop_claim(claim_id)
        except Exception:  # the claim lapses by itself; the start's own error is the answer
            log.warning("hold_claim_release_failed", claim_id=str(claim_id), exc_info=True)

    async def _address(self, buyer: Buyer, data: StartCheckout) -> Address:
        if (data.shipping_address is None) == (data.saved_address_id is None):
            raise Problem(
                400,
                "address-required",
                "Give either shipping_address or saved_address_id (one of them).",
                errors=[{"key": "shipping_address", "message": "exactly one of the two"}],
            )
        if data.shipping_address is not None:
            if data.shipping_address.country not in ISO_COUNTRIES:
                # The pattern lets through any two letters; identity's address book refuses
                # codes that name no country, and so must the order that ships there.
                raise Problem(
                    400,
                    "validation",
                    "The request is not valid: see errors.",
                    title="Invalid request",
                    errors=[
                        {
                            "key": "shipping_address.country",
                            "message": "not an ISO 3166-1 country code",
                        }
                    ],
                )
            return msgspec.convert(msgspec.to_builtins(data.shipping_address), Address)
        if buyer.principal is None:
            raise Problem(
                401,
                "unauthenticated",
                "Sign in to use a saved address.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        assert data.saved_address_id is not None
        saved = await self.upstream.saved_address(buyer.principal.user_id, data.saved_address_id)
        if saved is None:
            raise not_found("saved address")
        return saved

    async def _settle_open_sessions(
        self, open_rows: list[CheckoutSession], content: str
    ) -> CheckoutSession | None:
        """The open session to hand out again, if it is this very checkout; any other open
        session of the cart (``open_rows``, read under its lock) is closed at Stripe and its
        stock given back."""
        now = dt.datetime.now(dt.UTC)
        for row in open_rows:
            if row.content_hash == content and row.expires_at - now > REUSE_MIN_REMAINING:
                return row
            try:
                state = await self.stripe.expire_session(row.stripe_session_id)
            except PaymentProviderError as exc:
                raise exc.problem() from exc
            if state == "complete":
                raise Problem(
                    409,
                    "payment-in-progress",
                    "A payment for this cart is being confirmed. Wait a moment before "
                    "checking out again.",
                    order_id=str(row.order_id),
                )
            # The expiry webhook will close the row; the stock is wanted back now, for this checkout.
            await self.upstream.release(row.order_id)
            log.info("checkout_superseded", order_id=str(row.order_id), stripe_state=state)
        return None

    async def _abandon(self, stripe_session_id: str, order_id: uuid.UUID) -> None:
        try:
            await self.stripe.expire_session(stripe_session_id)
        except PaymentProviderError:
            log.warning("abandon_expire_failed", stripe_session_id=stripe_session_id)
        await self.upstream.release(order_id)

    def _stripe_expiry(self, reservation_expires_at: dt.datetime) -> int:
        latest = int(dt.datetime.now(dt.UTC).timestamp()) + self.settings.stripe_expiry_s
        return min(int(reservation_expires_at.timestamp()) - self.settings.expiry_margin_s, latest)

    def _absolute(self, url: str) -> str:
        return (
            url
            if url.startswith(("http://", "https://"))
            else f"{self.public_url}/{url.lstrip('/')}"
        )

    def _stripe_params(
        self,
        *,
        order_id: uuid.UUID,
        row_id: uuid.UUID,
        email: str,
        address: Address,
        priced: Priced,
        expires_at: int,
    ) -> dict[str, Any]:
        currency = priced.currency.lower()
        metadata = {"order_id": str(order_id), "checkout_session_id": str(row_id)}
        if traceparent := current_traceparent():
            # The payment's webhook links its trace to this checkout's.
            metadata["traceparent"] = traceparent
        line_items = []
        for line in priced.lines:
            # The variant is named on what Stripe shows and sends back ("Kenya AA - Espresso /
            # 1 kg"), and in its metadata.
            product_data: dict[str, Any] = {
                "name": f"{line.name} - {line.variant_title}" if line.variant_title else line.name,
                "metadata": {
                    "product_id": str(line.product_id),
                    "slug": line.slug,
                    **({"variant_id": str(line.variant_id)} if line.variant_id else {}),
                    **({"sku": line.sku} if line.sku else {}),
                },
            }
            if line.image_url:
                product_data["images"] = [self._absolute(line.image_url)]
            line_items.append(
                {
                    "quantity": line.quantity,
                    "price_data": {
                        "currency": currency,
                        "unit_amount": line.unit_price,
                        "product_data": product_data,
                    },
                }
            )
        shipping = _stripe_shipping(address)
        return {
            "mode": "payment",
            "line_items": line_items,
            "customer_email": email,
            "client_reference_id": str(order_id),
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata, "shipping": shipping},
            "shipping_options": [
                {
                    "shipping_rate_data": {
                        "type": "fixed_amount",
                        "display_name": priced.shipping_choice.name
                        if priced.shipping_choice
                        else "Standard shipping",
                        "fixed_amount": {"amount": priced.shipping, "currency": currency},
                    }
                }
            ],
            "success_url": f"{self.public_url}/order/{order_id}?session_id={{CHECKOUT_SESSION_ID}}",
            "cancel_url": f"{self.public_url}/cart",
            "expires_at": expires_at,
        }

    def _customer_beside(
        self, order_id: uuid.UUID, email: str, address: Address
    ) -> asyncio.Task[str] | None:
        """With Stripe Tax, the checkout's customer, being made (a task) while the caller goes
        on. A checkout has a session at Stripe only at that customer, and a Checkout Session
        takes no address of its own for a new customer (Stripe Checkout would ask the shopper
        for it on its page, and compute the tax only then)."""
        if not tax_enabled():
            return None
        return asyncio.create_task(
            self.stripe.create_customer(
                _customer_params(email, address), idempotency_key=f"ember-customer:{order_id}"
            ),
            name=f"stripe-customer:{order_id}",
        )

    async def _stripe_extras(
        self,
        params: dict[str, Any],
        order_id: uuid.UUID,
        email: str,
        address: Address,
        priced: Priced,
        customer: str | None = None,
    ) -> None:
        """The discount as a one-off coupon of exactly Ember's amount, and Stripe Tax at a
        customer carrying the shipping address (where Stripe Tax places the sale): ``customer``
        when made already, else made here."""
        if priced.discount is not None and priced.discount.amount > 0:
            coupon = await self.stripe.create_coupon(
                stripe_coupon_params(priced.discount, priced.currency),
                idempotency_key=f"ember-coupon:{order_id}",
            )
            params["discounts"] = [{"coupon": coupon}]
        if not tax_enabled():
            return
        if customer is None:
            customer = await self.stripe.create_customer(
                _customer_params(email, address), idempotency_key=f"ember-customer:{order_id}"
            )
        params.pop("customer_email", None)
        params["customer"] = customer
        params["automatic_tax"] = {"enabled": True}
        for item in params["line_items"]:
            item["price_data"]["tax_behavior"] = "exclusive"
        for option in params.get("shipping_options") or []:
            option["shipping_rate_data"]["tax_behavior"] = "exclusive"


#: How long after paying (or the payment deadline) Stripe's session id still opens a checkout.
REDIRECT_GRACE = dt.timedelta(hours=1)


def may_read(row: CheckoutSession, buyer: Buyer, stripe_session_id: str | None) -> bool:
    """Whether ``buyer`` may see the checkout: the signed-in shopper who started it (or staff),
    the guest holding the same cart cookie, or whoever holds Stripe's session id from the
    redirect."""
    if buyer.principal is not None and (
        row.user_id == buyer.principal.user_id or buyer.principal.is_admin
    ):
        return True
    if (
        buyer.cart_token
        and row.cart_token_hash
        and hmac.compare_digest(token_hash(buyer.cart_token), row.cart_token_hash)
    ):
        return True
    if not stripe_session_id:
        return False
    # Stripe's session id rests in clear (we talk to Stripe with it), so it opens the checkout
    # only for the page Stripe's success redirect lands on: for an hour after the payment, or
    # after the session's expiry while unpaid. A guest comes back later by the mailed link.
    if dt.datetime.now(dt.UTC) > (row.paid_at or row.expires_at) + REDIRECT_GRACE:
        return False
    return hmac.compare_digest(stripe_session_id.encode(), row.stripe_session_id.encode())


def _stripe_shipping(address: Address) -> dict[str, Any]:
    """The shipping address as Stripe takes it (on the PaymentIntent and on the customer)."""
    stripe_address = {
        k: v
        for k, v in {
            "line1": address.line1,
            "line2": address.line2,
            "city": address.city,
            "state": address.state,
            "postal_code": address.postal_code,
            "country": address.country,
        }.items()
        if v
    }
    shipping: dict[str, Any] = {"name": address.name, "address": stripe_address}
    if address.phone:
        shipping["phone"] = address.phone
    return shipping


def _customer_params(email: str, address: Address) -> dict[str, Any]:
    return {"email": email, "name": address.name, "shipping": _stripe_shipping(address)}


async def _abandoned(customer: asyncio.Task[str] | None) -> None:
    """A customer being made for a start that failed meanwhile: not waited for (a customer
    nothing uses costs nothing at Stripe), and its own failure is not the start's."""
    if customer is None:
        return
    customer.cancel()
    await asyncio.gather(customer, return_exceptions=True)


def lines_unavailable(lines: list[dict[str, Any]]) -> Problem:
    described = ", ".join(
        f"{line['name'] or line['product_id']} ({_reason_text(line)})" for line in lines
    )
    return Problem(
        409,
        "lines-unavailable",
        f"Some items cannot be had: {described}. Change the cart and try again.",
        title="Items unavailable",
        unavailable=lines,
    )


def _reason_text(line: dict[str, Any]) -> str:
    if line["reason"] == "unknown":
        return "no longer sold"
    if line["reason"] == "archived":
        return "no longer sold"
    return f"{line['requested']} asked, {line['available']} left"


def _content_hash(buyer: Buyer, email: str, address: Address, priced: Priced) -> str:
    material = {
        "user": str(buyer.user_id) if buyer.user_id else None,
        "email": email.lower(),
        "address": msgspec.to_builtins(address),
        "currency": priced.currency,
        "shipping": priced.shipping,
        **(
            {"rate": priced.shipping_choice.code}
            if priced.shipping_choice and priced.shipping_choice.code != "standard"
            else {}
        ),
        **({"discount": priced.discount.code} if priced.discount else {}),
        "lines": sorted(
            (str(line.product_id), str(line.variant_id or ""), line.quantity, line.unit_price)
            for line in priced.lines
        ),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def address_out(row: CheckoutSession) -> AddressOut:
    raw = row.shipping_address
    return AddressOut(
        name=raw.get("name", ""),
        line1=raw.get("line1", ""),
        line2=raw.get("line2", ""),
        city=raw.get("city", ""),
        state=raw.get("state", ""),
        postal_code=raw.get("postal_code", ""),
        country=raw.get("country", ""),
        phone=raw.get("phone", ""),
    )


def cart_quantities(cart: ResolvedCart) -> dict[tuple[uuid.UUID, uuid.UUID], int]:
    """One quantity per ``(product id, variant id)`` (a line naming no variant holds its
    product's default variant, which has the product's id); an empty, too large or invalid
    cart is refused."""
    if cart.cart_id is None or not cart.lines:
        raise Problem(409, "cart-empty", "The cart is empty: add something before checking out.")
    quantities: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
    for line in cart.lines:
        key = (line.product_id, line.variant_id or line.product_id)
        quantities[key] = quantities.get(key, 0) + line.quantity
    if len(quantities) > MAX_LINES:
        raise Problem(
            409, "cart-too-large", f"A checkout takes at most {MAX_LINES} different products."
        )
    if any(q < 1 for q in quantities.values()):
        raise Problem(409, "cart-invalid", "A cart line has no quantity.")
    return quantities


def _of_products(
    quantities: dict[tuple[uuid.UUID, uuid.UUID], int], variants: list[LookupProduct]
) -> dict[uuid.UUID, LookupProduct]:
    """Catalog's variants by id, only those of the product each line names."""
    asked = {v: p for p, v in quantities}
    return {
        v.variant_id: v
        for v in variants
        if v.variant_id is not None and asked.get(v.variant_id) == v.id
    }


def _refused(exc: StockUnavailable) -> Problem:
    """Catalog's refusal of a priced reservation, said as the lookup would have: each line
    named, and unknown or archived apart from short."""
    known = {v.variant_id: v for v in exc.variants if v.variant_id is not None}
    lines = []
    for line in exc.lines:
        variant = known.get(line.variant_id or line.product_id)
        if variant is not None and variant.id != line.product_id:
            variant = None
        reason = (
            "unknown"
            if variant is None
            else "archived"
            if not variant.active
            else "insufficient_stock"
        )
        lines.append(
            {
                "product_id": str(line.product_id),
                "name": variant.name if variant is not None else None,
                "requested": line.requested,
                "available": line.available if reason == "insufficient_stock" else 0,
                "reason": reason,
            }
        )
    return lines_unavailable(lines)


def _expect_total(data: StartCheckout, priced: Priced) -> None:
    """If the client says which total it showed the shopper and the prices now make another,
    the shopper confirms the new total first."""
    if data.expected_total is not None and data.expected_total != priced.total:
        raise Problem(
            409,
            "price-changed",
            "Prices changed since the cart was shown: check the new total, then confirm it.",
            title="Prices changed",
            expected_total=data.expected_total,
            **msgspec.to_builtins(priced.quote()),
        )


async def _claim_taken(claiming: asyncio.Future[Claim]) -> Claim | None:
    """The budget's claim of a start that failed meanwhile, once its statement is done: it is
    let finish (a claim cut off mid-statement may have been taken all the same); None when it
    was refused or failed."""
    [outcome] = await asyncio.gather(claiming, return_exceptions=True)
    return outcome if isinstance(outcome, Claim) else None
