"""Shipping rates, discount codes and tax: what a checkout charges beyond its lines.

- Shipping: the active rates serving the destination country, cheapest position first; a rate
  is free from its ``free_over`` subtotal (after any discount) on. With no rate configured at
  all, the flat rate of the settings (``CHECKOUT_SHIPPING_FLAT_RATE``, free from
  ``CHECKOUT_FREE_SHIPPING_THRESHOLD``) is the one choice, as before rates existed.
- Discount codes: one per checkout, checked here with a clear problem for each way it can
  fail; the amount is taken off the eligible lines (those of the products or the catalog
  categories it names, or every line when it names none) in proportion (integer minor units, the
  remainders to the largest fractions), and travels to Stripe as a one-off ``amount_off``
  coupon of exactly that amount, so Stripe charges what Ember records.
- A use is held at start (one conditional UPDATE in a short transaction of its own, under the
  table's CHECK), counted when the payment's webhook says paid, and given back when the
  checkout expires, fails or does not start; the reconciler's pass (:func:`sweep_holds`) gives
  back on its own a hold whose start died or whose checkout lapsed unheard of.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
from ember_shared.ids import new_id
from ember_shared.problems import Problem, not_found
from ember_shared.settings import env_bool
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from checkout.models import DiscountCode, DiscountHold, ShippingRate
from checkout.offers.repositories import OffersRepository
from checkout.offers.schemas import (
    DiscountCodeIn,
    DiscountCodeOut,
    DiscountCodePatch,
    ShippingOption,
    ShippingRateIn,
    ShippingRateOut,
    ShippingRatePatch,
)
from checkout.settings import CheckoutSettings

log = structlog.get_logger("checkout.offers")

#: A hold whose checkout was never written lapses this long after its checkout would have.
HOLD_GRACE = dt.timedelta(hours=1)


def tax_enabled() -> bool:
    """``CHECKOUT_TAX`` (default on): Stripe Tax computes each checkout's tax. Off: no tax."""
    return env_bool("CHECKOUT_TAX", True)


def spread(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainders first), summing exactly."""
    whole = sum(weights)
    if whole <= 0 or total <= 0:
        return [0] * len(weights)
    shares = [total * w // whole for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


@dataclass(frozen=True)
class ChosenShipping:
    code: str
    name: str
    amount: int


@dataclass(frozen=True)
class AppliedDiscount:
    code_id: uuid.UUID
    code: str
    amount: int
    #: Per line (in the lines' order): what it takes off each.
    per_line: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class PricedLineRef:
    product_id: uuid.UUID
    line_total: int
    #: The product's catalog category (None: in none).
    category_id: uuid.UUID | None = None


def eligible(code: DiscountCode, line: PricedLineRef) -> bool:
    """Whether the code takes money off this line: its product is listed, or its product's
    category is; a code listing neither is for every product."""
    if not code.product_ids and not code.category_ids:
        return True
    return line.product_id in code.product_ids or (
        line.category_id is not None and line.category_id in code.category_ids
    )


def customer_key(user_id: uuid.UUID | None, email: str) -> str:
    return f"user:{user_id}" if user_id else f"email:{email.lower()}"


def _fallback(settings: CheckoutSettings, subtotal: int) -> ShippingOption:
    amount = settings.shipping_for(subtotal)
    return ShippingOption(
        code="standard",
        name="Free shipping" if amount == 0 else "Standard shipping",
        amount=amount,
        currency=settings.currency,
    )


def shipping_options(
    settings: CheckoutSettings, rates: list[ShippingRate], country: str | None, subtotal: int
) -> list[ShippingOption]:
    """The options ``rates`` (the active ones, read beforehand) give for a country and subtotal."""
    if not rates:
        return [_fallback(settings, subtotal)]
    options = []
    for rate in rates:
        if country and rate.countries and country.upper() not in rate.countries:
            continue
        free = rate.free_over is not None and subtotal >= rate.free_over
        options.append(
            ShippingOption(
                code=rate.code,
                name=rate.name,
                amount=0 if free else rate.price,
                currency=settings.currency,
                min_days=rate.min_days,
                max_days=rate.max_days,
            )
        )
    return options


def choose_shipping(
    settings: CheckoutSettings,
    rates: list[ShippingRate],
    code: str | None,
    country: str | None,
    subtotal: int,
) -> ChosenShipping:
    """The rate named (or the first) among the options: a pure function of the rates read, so a
    checkout reads them in a transaction it has anyway and chooses once its prices are known."""
    options = shipping_options(settings, rates, country, subtotal)
    if not options:
        raise Problem(
            422,
            "shipping-unavailable",
            f"We do not ship to {country} yet.",
            title="No shipping to this country",
            country=country,
        )
    chosen = options[0] if code is None else next((o for o in options if o.code == code), None)
    if chosen is None:
        raise Problem(
            422,
            "shipping-rate-unavailable",
            f"The shipping rate {code!r} does not ship there: pick one of "
            + ", ".join(o.code for o in options)
            + ".",
            title="Shipping rate unavailable",
            options=[o.code for o in options],
        )
    return ChosenShipping(chosen.code, chosen.name, chosen.amount)


class Offers:
    def __init__(self, db: AsyncSession, settings: CheckoutSettings) -> None:
        self.db = db
        self.settings = settings
        self.repo = OffersRepository(db)

    # --- shipping -------------------------------------------------------------------------

    async def active_rates(self) -> list[ShippingRate]:
        return await self.repo.rates(active_only=True)

    async def shipping_options(self, country: str | None, subtotal: int) -> list[ShippingOption]:
        return shipping_options(self.settings, await self.active_rates(), country, subtotal)

    async def choose_shipping(
        self, code: str | None, country: str | None, subtotal: int
    ) -> ChosenShipping:
        return choose_shipping(self.settings, await self.active_rates(), code, country, subtotal)

    def rate_out(self, rate: ShippingRate) -> ShippingRateOut:
        return ShippingRateOut(
            id=rate.id,
            code=rate.code,
            name=rate.name,
            price=rate.price,
            free_over=rate.free_over,
            countries=list(rate.countries),
            min_days=rate.min_days,
            max_days=rate.max_days,
            position=rate.position,
            active=rate.active,
            currency=self.settings.currency,
        )

    async def list_rates(self) -> list[ShippingRateOut]:
        return [self.rate_out(r) for r in await self.repo.rates(active_only=False)]

    async def create_rate(self, data: ShippingRateIn) -> ShippingRateOut:
        _days_in_order(data.min_days, data.max_days)
        if await self.repo.rate_by_code(data.code) is not None:
            raise Problem(409, "conflict", f"A shipping rate {data.code!r} exists already.")
        rate = ShippingRate(
            id=new_id(),
            code=data.code,
            name=data.name,
            price=data.price,
            free_over=data.free_over,
            countries=sorted(set(data.countries)),
            min_days=data.min_days,
            max_days=data.max_days,
            position=data.position,
            active=data.active,
        )
        self.db.add(rate)
        await self.db.flush()
        return self.rate_out(rate)

    async def update_rate(self, rate_id: uuid.UUID, data: ShippingRatePatch) -> ShippingRateOut:
        rate = await self.repo.rate(rate_id)
        if rate is None:
            raise not_found("shipping rate")
        changes = _given(data)
        if "countries" in changes:
            changes["countries"] = sorted(set(changes["countries"] or []))
        if changes.get("free_over") == 0:
            changes["free_over"] = None
        for key, value in changes.items():
            setattr(rate, key, value)
        _days_in_order(rate.min_days, rate.max_days)
        await self.db.flush()
        return self.rate_out(rate)

    # --- discount codes -------------------------------------------------------------------

    def code_out(self, code: DiscountCode) -> DiscountCodeOut:
        return DiscountCodeOut(
            id=code.id,
            code=code.code,
            description=code.description,
            percent_off=code.percent_off,
            amount_off=code.amount_off,
            min_subtotal=code.min_subtotal,
            starts_at=code.starts_at,
            ends_at=code.ends_at,
            max_uses=code.max_uses,
            max_uses_per_customer=code.max_uses_per_customer,
            first_order_only=code.first_order_only,
            product_ids=list(code.product_ids),
            category_ids=list(code.category_ids),
            active=code.active,
            uses=code.uses,
            holds=code.holds,
            currency=self.settings.currency,
            created_at=code.created_at,
        )

    async def list_codes(self) -> list[DiscountCodeOut]:
        return [self.code_out(c) for c in await self.repo.codes()]

    async def get_code(self, code_id: uuid.UUID) -> DiscountCodeOut:
        code = await self.repo.code(code_id)
        if code is None:
            raise not_found("discount code")
        return self.code_out(code)

    async def create_code(self, data: DiscountCodeIn) -> DiscountCodeOut:
        if (data.percent_off is None) == (data.amount_off is None):
            raise _invalid("percent_off", "give percent_off or amount_off, one of them")
        _window(data.starts_at, data.ends_at)
        if await self.repo.code_by_text(data.code) is not None:
            raise Problem(409, "conflict", f"A discount code {data.code.upper()!r} exists already.")
        code = DiscountCode(
            id=new_id(),
            code=data.code.upper(),
            description=data.description,
            percent_off=data.percent_off,
            amount_off=data.amount_off,
            min_subtotal=data.min_subtotal,
            starts_at=data.starts_at,
            ends_at=data.ends_at,
            max_uses=data.max_uses,
            max_uses_per_customer=data.max_uses_per_customer,
            first_order_only=data.first_order_only,
            product_ids=sorted(set(data.product_ids)),
            category_ids=sorted(set(data.category_ids)),
            active=data.active,
            uses=0,
            holds=0,
        )
        self.db.add(code)
        await self.db.flush()
        await self.db.refresh(code)
        return self.code_out(code)

    async def update_code(self, code_id: uuid.UUID, data: DiscountCodePatch) -> DiscountCodeOut:
        code = await self.repo.code(code_id)
        if code is None:
            raise not_found("discount code")
        changes = _given(data)
        if "percent_off" in changes and "amount_off" in changes:
            raise _invalid("percent_off", "give percent_off or amount_off, one of them")
        # The other kind goes: a code takes off a percentage or an amount, never both.
        if "percent_off" in changes:
            changes["amount_off"] = None
        elif "amount_off" in changes:
            changes["percent_off"] = None
        for key, value in changes.items():
            setattr(code, key, sorted(set(value)) if key.endswith("_ids") else value)
        _window(code.starts_at, code.ends_at)
        try:
            await self.db.flush()
        except IntegrityError:
            raise Problem(
                409,
                "max-uses-below-taken",
                "max_uses cannot go below the uses already paid or held.",
                uses=code.uses,
                holds=code.holds,
            ) from None
        await self.db.refresh(code)
        return self.code_out(code)

    async def evaluate(
        self,
        text: str,
        lines: list[PricedLineRef],
        *,
        user_id: uuid.UUID | None,
        email: str,
        now: dt.datetime | None = None,
    ) -> AppliedDiscount:
        """What the code takes off these lines for this shopper, or the problem saying why not.

        The total and per-customer limits are checked again, for good, when the use is held."""
        now = now or dt.datetime.now(dt.UTC)
        code = await self.repo.code_by_text(text.strip())
        if code is None or not code.active:
            raise Problem(
                422,
                "discount-code-unknown",
                f"There is no discount code {text.strip().upper()!r}: check its spelling.",
                title="Unknown discount code",
                code=text.strip().upper(),
            )
        if code.starts_at is not None and now < code.starts_at:
            raise Problem(
                422,
                "discount-code-not-yet-valid",
                f"The code {code.code} can be used from {code.starts_at.isoformat()} on.",
                title="Discount code not valid yet",
                code=code.code,
                starts_at=code.starts_at.isoformat(),
            )
        if code.ends_at is not None and now >= code.ends_at:
            raise Problem(
                422,
                "discount-code-expired",
                f"The code {code.code} ended on {code.ends_at.isoformat()}.",
                title="Discount code expired",
                code=code.code,
                ends_at=code.ends_at.isoformat(),
            )
        subtotal = sum(line.line_total for line in lines)
        if subtotal < code.min_subtotal:
            raise Problem(
                422,
                "discount-code-minimum-not-met",
                f"The code {code.code} needs a subtotal of at least {code.min_subtotal} "
                f"(minor units of {self.settings.currency}); this cart's is {subtotal}.",
                title="Minimum not met",
                code=code.code,
                min_subtotal=code.min_subtotal,
                subtotal=subtotal,
                currency=self.settings.currency,
            )
        weights = [line.line_total if eligible(code, line) else 0 for line in lines]
        base = sum(weights)
        if base == 0:
            raise Problem(
                422,
                "discount-code-not-applicable",
                f"The code {code.code} is for other products than this cart holds.",
                title="Discount code not applicable",
                code=code.code,
                product_ids=[str(p) for p in code.product_ids],
                category_ids=[str(c) for c in code.category_ids],
            )
        # Paid uses only: whether an open checkout's hold still counts (or has lapsed) is
        # decided when this checkout takes its own.
        if code.max_uses is not None and code.uses >= code.max_uses:
            raise used_up(code.code)
        key = customer_key(user_id, email)
        known = user_id is not None or bool(email)
        if (
            known
            and code.max_uses_per_customer is not None
            and (await self.repo.customer_uses(code.id, key) >= code.max_uses_per_customer)
        ):
            raise used_up(code.code, per_customer=True)
        if known and code.first_order_only and await self.repo.has_paid_before(user_id, email):
            raise Problem(
                422,
                "discount-code-first-order-only",
                f"The code {code.code} is for a first order only.",
                title="First order only",
                code=code.code,
            )
        if code.percent_off is not None:
            amount = (2 * base * code.percent_off + 100) // 200
        else:
            amount = min(int(code.amount_off or 0), base)
        return AppliedDiscount(
            code_id=code.id, code=code.code, amount=amount, per_line=spread(amount, weights)
        )


async def hold_use(
    engine: AsyncEngine,
    applied: AppliedDiscount,
    *,
    order_id: uuid.UUID,
    customer: str,
    expires_at: dt.datetime,
) -> None:
    """Take one use of the code for this checkout, in a short transaction of its own committed
    before anything is reserved (no lock is held across catalog or Stripe). The conditional
    UPDATE decides: when ``uses + holds`` has reached ``max_uses`` nothing is taken."""
    now = dt.datetime.now(dt.UTC)
    async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
        repo = OffersRepository(session)
        await repo.lapse_holds(applied.code_id, now)
        if not await repo.take_hold(applied.code_id):
            raise used_up(applied.code)
        code = await repo.code(applied.code_id)
        assert code is not None
        if code.max_uses_per_customer is not None and (
            await repo.customer_uses(code.id, customer) >= code.max_uses_per_customer
        ):
            raise used_up(applied.code, per_customer=True)
        await repo.add_hold(
            DiscountHold(
                id=new_id(),
                code_id=applied.code_id,
                order_id=order_id,
                customer=customer,
                status="held",
                amount=applied.amount,
                expires_at=expires_at + HOLD_GRACE,
            )
        )


async def sweep_holds(
    engine: AsyncEngine, settings: CheckoutSettings, now: dt.datetime | None = None
) -> dict[str, int]:
    """Give back, in a transaction of its own, the uses held by checkouts that will not be paid
    (lapsed, or whose start died before writing its checkout), so that a code's remaining uses
    are true without waiting for its next use. Run by the reconciler on each pass."""
    now = now or dt.datetime.now(dt.UTC)
    orphaned_before = now - dt.timedelta(seconds=settings.start_bound_s)
    async with AsyncSession(engine) as session, session.begin():
        released = await OffersRepository(session).sweep_holds(now, orphaned_before)
    if released:
        log.info("discount_holds_lapsed", released=released)
    return released


async def release_use(engine: AsyncEngine, order_id: uuid.UUID) -> None:
    """A start that failed after its hold gives the use back at once (its own transaction)."""
    try:
        async with AsyncSession(engine) as session, session.begin():
            await OffersRepository(session).move_hold(order_id, "released")
    except Exception:  # the hold lapses by itself; the start's own error is the answer
        log.warning("discount_hold_release_failed", order_id=str(order_id), exc_info=True)


async def settle_use(db: AsyncSession, order_id: uuid.UUID, *, paid: bool) -> None:
    """The webhook's move of the checkout's hold, in the webhook's transaction: paid counts the
    use, expired or failed gives it back. A checkout without a code has no hold."""
    moved = await OffersRepository(db).move_hold(order_id, "used" if paid else "released")
    if moved is not None:
        log.info("discount_use_" + ("counted" if paid else "released"), order_id=str(order_id))


def used_up(code: str, *, per_customer: bool = False) -> Problem:
    return Problem(
        409,
        "discount-code-used-up",
        f"The code {code} has been used as many times as it may be"
        + (" by you." if per_customer else "."),
        title="Discount code used up",
        code=code,
        per_customer=per_customer,
    )


def stripe_coupon_params(applied: AppliedDiscount, currency: str) -> dict[str, Any]:
    """A one-off coupon of exactly the amount Ember computed (redeemable once)."""
    return {
        "amount_off": applied.amount,
        "currency": currency.lower(),
        "duration": "once",
        "max_redemptions": 1,
        "name": applied.code[:40],
        "metadata": {"discount_code": applied.code},
    }


#: Patch fields whose null removes what was set (a code's window and limits).
CLEARABLE = frozenset({"starts_at", "ends_at", "max_uses", "max_uses_per_customer"})


def _given(data: Any) -> dict[str, Any]:
    return {
        k: v
        for k, v in msgspec.structs.asdict(data).items()
        if v is not msgspec.UNSET and (v is not None or k in CLEARABLE)
    }


def _days_in_order(low: int | None, high: int | None) -> None:
    if low is not None and high is not None and low > high:
        raise _invalid("min_days", "must not be more than max_days")


def _window(starts: dt.datetime | None, ends: dt.datetime | None) -> None:
    for key, value in (("starts_at", starts), ("ends_at", ends)):
        if value is not None and value.tzinfo is None:
            raise _invalid(key, "needs a time zone")
    if starts is not None and ends is not None and ends <= starts:
        raise _invalid("ends_at", "must be after starts_at")


def _invalid(key: str, message: str) -> Problem:
    return Problem(
        422,
        "validation",
        "The request is not valid: see errors.",
        title="Invalid request",
        errors=[{"key": key, "message": message}],
    )
