"""What a Checkout Session charges beyond its line items: discounts, shipping and Stripe Tax.

- Coupons (``/v1/coupons``: ``percent_off`` or ``amount_off`` + ``currency``, ``max_redemptions``,
  ``redeem_by``) and promotion codes (``/v1/promotion_codes``: ``promotion[coupon]``, or the
  older ``coupon``; ``code``, ``max_redemptions``, ``expires_at``, ``active``). A session takes
  one of them in ``discounts=[{"coupon": ...}]`` or ``[{"promotion_code": ...}]``; a redemption
  is counted when the session is paid, as Stripe does.
- Shipping rates (``/v1/shipping_rates``, or ``shipping_rate_data`` inline), up to five per
  session; the first is the one selected, as on Stripe's page before the shopper changes it.
- ``automatic_tax[enabled]``: tax from :data:`TAX_RATES` (a small shipped table by country and
  state, in basis points) at the address Stripe Tax would use: the session's customer's
  shipping address, else its address. Prices are tax-exclusive; each line's tax is rounded
  half up on its discounted amount, and shipping is taxed like a line.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from standins.stripe.errors import StripeError
from standins.stripe.forms import as_int, as_metadata, as_str

if TYPE_CHECKING:
    from standins.stripe.store import Store

#: Basis points by (country, state); a country's own rate is under state "". Anywhere else: 0.
TAX_RATES: dict[tuple[str, str], int] = {
    ("US", "CA"): 725,
    ("US", "NY"): 400,
    ("US", "TX"): 625,
    ("US", "WA"): 650,
    ("US", "IL"): 625,
    ("CA", ""): 500,
    ("CA", "ON"): 1300,
    ("GB", ""): 2000,
    ("DE", ""): 1900,
    ("FR", ""): 2000,
    ("NL", ""): 2100,
    ("IE", ""): 2300,
    ("AU", ""): 1000,
}
_CODE = re.compile(r"^[A-Za-z0-9-]{1,500}$")
MAX_SHIPPING_OPTIONS = 5


def tax_rate(country: str, state: str) -> int:
    country, state = country.upper(), state.upper()
    return TAX_RATES.get((country, state), TAX_RATES.get((country, ""), 0))


def _bool(params: dict[str, Any], key: str) -> bool | None:
    raw = params.get(key)
    if raw in (None, ""):
        return None
    if raw not in ("true", "false"):
        raise StripeError(400, f"Invalid boolean: {raw}", param=key)
    return bool(raw == "true")


def half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


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


# --- coupons and promotion codes ----------------------------------------------------------


def create_coupon(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    from standins.stripe.store import new_object_id, now

    percent = params.get("percent_off")
    amount_off = as_int(params, "amount_off", minimum=1)
    if (percent in (None, "")) == (amount_off is None):
        raise StripeError(
            400,
            "You must pass either `percent_off` or `amount_off`, but not both.",
            param="percent_off",
        )
    percent_off: float | None = None
    if percent not in (None, ""):
        try:
            percent_off = float(str(percent))
        except ValueError:
            raise StripeError(400, f"Invalid decimal: {percent}", param="percent_off") from None
        if not 0 < percent_off <= 100:
            raise StripeError(
                400, "percent_off must be greater than 0 and at most 100.", param="percent_off"
            )
    currency = (as_str(params, "currency") or "").lower() or None
    if amount_off is not None and currency is None:
        raise StripeError(
            400,
            "You must pass currency when passing amount_off.",
            param="currency",
            code="parameter_missing",
        )
    duration = as_str(params, "duration") or "once"
    if duration not in ("once", "repeating", "forever"):
        raise StripeError(400, f"Invalid duration: {duration}", param="duration")
    coupon_id = as_str(params, "id", max_length=200) or new_object_id("co")[:11]
    if coupon_id in store.state.coupons:
        raise StripeError(400, "Coupon already exists.", param="id", code="resource_already_exists")
    coupon: dict[str, Any] = {
        "id": coupon_id,
        "object": "coupon",
        "amount_off": amount_off,
        "created": now(),
        "currency": currency,
        "duration": duration,
        "duration_in_months": None,
        "livemode": False,
        "max_redemptions": as_int(params, "max_redemptions", minimum=1),
        "metadata": as_metadata(params),
        "name": as_str(params, "name", max_length=40),
        "percent_off": percent_off,
        "redeem_by": as_int(params, "redeem_by"),
        "times_redeemed": 0,
        "valid": True,
    }
    store.state.coupons[coupon_id] = coupon
    store.save()
    return coupon


def coupon(store: Store, coupon_id: str) -> dict[str, Any]:
    return _with_validity(store.state.coupons.found(coupon_id, "coupon", param="coupon"))


def delete_coupon(store: Store, coupon_id: str) -> dict[str, Any]:
    coupon(store, coupon_id)
    del store.state.coupons[coupon_id]
    store.save()
    return {"id": coupon_id, "object": "coupon", "deleted": True}


def _with_validity(found: dict[str, Any]) -> dict[str, Any]:
    from standins.stripe.store import now

    used_up = found["max_redemptions"] is not None and (
        found["times_redeemed"] >= found["max_redemptions"]
    )
    late = found["redeem_by"] is not None and found["redeem_by"] <= now()
    found["valid"] = not (used_up or late)
    return found


def create_promotion_code(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    from standins.stripe.store import new_object_id, now

    promotion = params.get("promotion")
    coupon_id = None
    if isinstance(promotion, dict):
        if promotion.get("type") != "coupon":
            raise StripeError(400, "Invalid promotion[type]: must be coupon", param="promotion")
        coupon_id = as_str(promotion, "coupon", param="promotion[coupon]")
    coupon_id = coupon_id or as_str(params, "coupon")
    if coupon_id is None:
        raise StripeError(
            400,
            "Missing required param: promotion[coupon].",
            param="promotion[coupon]",
            code="parameter_missing",
        )
    found = coupon(store, coupon_id)
    code = as_str(params, "code", max_length=500) or new_object_id("PROMO")[6:14].upper()
    if not _CODE.match(code):
        raise StripeError(400, f"Invalid code: {code}", param="code")
    active = _bool(params, "active")
    if any(
        p["code"].lower() == code.lower() and p["active"]
        for p in store.state.promotion_codes.values()
    ):
        raise StripeError(
            400,
            "An active promotion code with `code` already exists.",
            param="code",
            code="resource_already_exists",
        )
    restrictions = params.get("restrictions") or {}
    if not isinstance(restrictions, dict):
        raise StripeError(400, "Invalid object", param="restrictions")
    minimum = as_int(
        restrictions, "minimum_amount", minimum=0, param="restrictions[minimum_amount]"
    )
    promo: dict[str, Any] = {
        "id": new_object_id("promo"),
        "object": "promotion_code",
        "active": True if active is None else active,
        "code": code,
        "created": now(),
        "customer": as_str(params, "customer"),
        "expires_at": as_int(params, "expires_at"),
        "livemode": False,
        "max_redemptions": as_int(params, "max_redemptions", minimum=1),
        "metadata": as_metadata(params),
        "promotion": {"type": "coupon", "coupon": found["id"]},
        "restrictions": {
            "first_time_transaction": _bool(restrictions, "first_time_transaction") or False,
            "minimum_amount": minimum,
            "minimum_amount_currency": (
                as_str(restrictions, "minimum_amount_currency") or ""
            ).lower()
            or None,
        },
        "times_redeemed": 0,
    }
    store.state.promotion_codes[promo["id"]] = promo
    store.save()
    return promo


def promotion_code(store: Store, promo_id: str) -> dict[str, Any]:
    return store.state.promotion_codes.found(promo_id, "promotion_code", param="promotion_code")


def list_promotion_codes(store: Store, params: dict[str, Any]) -> list[dict[str, Any]]:
    found = sorted(
        store.state.promotion_codes.values(), key=lambda p: (p["created"], p["id"]), reverse=True
    )
    code = as_str(params, "code")
    if code is not None:
        found = [p for p in found if p["code"].lower() == code.lower()]
    active = _bool(params, "active")
    if active is not None:
        found = [p for p in found if p["active"] == active]
    return found


def session_discount(
    store: Store, params: dict[str, Any], currency: str, subtotal: int
) -> tuple[list[dict[str, Any]], int]:
    """The session's ``discounts`` and the amount they take off ``subtotal`` (never more)."""
    from standins.stripe.store import now

    raw = params.get("discounts")
    if raw in (None, ""):
        return [], 0
    if not isinstance(raw, list) or len(raw) > 1:
        raise StripeError(
            400, "You may only specify one discount on a Checkout Session.", param="discounts"
        )
    if params.get("allow_promotion_codes") == "true":
        raise StripeError(
            400,
            "You may only specify one of these parameters: allow_promotion_codes, discounts.",
            param="discounts",
        )
    entry = raw[0]
    if not isinstance(entry, dict):
        raise StripeError(400, "Invalid object", param="discounts[0]")
    promo_id = as_str(entry, "promotion_code", param="discounts[0][promotion_code]")
    coupon_id = as_str(entry, "coupon", param="discounts[0][coupon]")
    if (promo_id is None) == (coupon_id is None):
        raise StripeError(
            400,
            "Each discount takes exactly one of `coupon` or `promotion_code`.",
            param="discounts[0]",
        )
    if promo_id is not None:
        promo = promotion_code(store, promo_id)
        unusable = (
            not promo["active"]
            or (promo["expires_at"] is not None and promo["expires_at"] <= now())
            or (
                promo["max_redemptions"] is not None
                and promo["times_redeemed"] >= promo["max_redemptions"]
            )
        )
        if unusable:
            raise StripeError(
                400,
                f"This promotion code cannot be redeemed: {promo['code']}",
                param="discounts[0][promotion_code]",
                code="promotion_code_invalid",
            )
        minimum = promo["restrictions"].get("minimum_amount")
        if minimum is not None and subtotal < minimum:
            raise StripeError(
                400,
                f"This promotion code requires a minimum amount of {minimum}.",
                param="discounts[0][promotion_code]",
                code="promotion_code_invalid",
            )
        coupon_id = promo["promotion"]["coupon"]
    assert coupon_id is not None
    found = coupon(store, coupon_id)
    if not found["valid"]:
        raise StripeError(
            400,
            f"Coupon {coupon_id} is no longer valid.",
            param="discounts[0][coupon]",
            code="coupon_expired",
        )
    if found["amount_off"] is not None:
        if found["currency"] != currency:
            raise StripeError(
                400,
                "The coupon's currency must match the session's.",
                param="discounts[0][coupon]",
            )
        amount = min(int(found["amount_off"]), subtotal)
    else:
        amount = min(half_up(round(subtotal * float(found["percent_off"]) * 100), 10_000), subtotal)
    return [{"coupon": coupon_id, "promotion_code": promo_id}], amount


def redeem(store: Store, session: dict[str, Any]) -> None:
    """A paid session counts a redemption on its coupon and promotion code."""
    for discount in session.get("discounts") or []:
        found = store.state.coupons.get(discount["coupon"])
        if found is not None:
            found["times_redeemed"] += 1
            _with_validity(found)
        promo = store.state.promotion_codes.get(discount.get("promotion_code") or "")
        if promo is not None:
            promo["times_redeemed"] += 1


# --- shipping rates -----------------------------------------------------------------------


def create_shipping_rate(store: Store, params: dict[str, Any], where: str = "") -> dict[str, Any]:
    from standins.stripe.store import new_object_id, now

    prefix = f"{where}[" if where else ""
    suffix = "]" if where else ""

    def name(key: str) -> str:
        return f"{prefix}{key}{suffix}" if where else key

    kind = as_str(params, "type") or "fixed_amount"
    if kind != "fixed_amount":
        raise StripeError(400, f"Invalid type: {kind}", param=name("type"))
    display_name = as_str(
        params, "display_name", required=True, max_length=100, param=name("display_name")
    )
    fixed = params.get("fixed_amount")
    if not isinstance(fixed, dict):
        raise StripeError(
            400,
            "fixed_amount is required for a fixed_amount shipping rate.",
            param=name("fixed_amount"),
            code="parameter_missing",
        )
    amount = as_int(
        fixed, "amount", minimum=0, required=True, param=f"{name('fixed_amount')}[amount]"
    )
    currency = (
        as_str(fixed, "currency", required=True, param=f"{name('fixed_amount')}[currency]") or ""
    ).lower()
    tax_behavior = as_str(params, "tax_behavior") or "unspecified"
    if tax_behavior not in ("exclusive", "inclusive", "unspecified"):
        raise StripeError(400, f"Invalid tax_behavior: {tax_behavior}", param=name("tax_behavior"))
    rate: dict[str, Any] = {
        "id": new_object_id("shr"),
        "object": "shipping_rate",
        "active": True,
        "created": now(),
        "delivery_estimate": params.get("delivery_estimate") or None,
        "display_name": display_name,
        "fixed_amount": {"amount": amount, "currency": currency},
        "livemode": False,
        "metadata": as_metadata(params),
        "tax_behavior": tax_behavior,
        "tax_code": as_str(params, "tax_code"),
        "type": "fixed_amount",
    }
    store.state.shipping_rates[rate["id"]] = rate
    return rate


def shipping_rate(store: Store, rate_id: str, param: str = "shipping_rate") -> dict[str, Any]:
    return store.state.shipping_rates.found(rate_id, "shipping_rate", param=param)


def session_shipping(
    store: Store, params: dict[str, Any], currency: str
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The session's ``shipping_options`` (each ``{shipping_amount, shipping_rate}``) and the
    selected one's rate object (None without options)."""
    raw = params.get("shipping_options")
    if raw in (None, ""):
        return [], None
    if not isinstance(raw, list) or not raw or len(raw) > MAX_SHIPPING_OPTIONS:
        raise StripeError(
            400,
            f"You may specify 1 to {MAX_SHIPPING_OPTIONS} shipping options.",
            param="shipping_options",
        )
    options: list[dict[str, Any]] = []
    rates: list[dict[str, Any]] = []
    for i, entry in enumerate(raw):
        where = f"shipping_options[{i}]"
        if not isinstance(entry, dict):
            raise StripeError(400, "Invalid object", param=where)
        rate_id = as_str(entry, "shipping_rate", param=f"{where}[shipping_rate]")
        data = entry.get("shipping_rate_data")
        if (rate_id is None) == (data is None):
            raise StripeError(
                400,
                f"{where} takes exactly one of `shipping_rate` or `shipping_rate_data`.",
                param=where,
            )
        if rate_id is not None:
            rate = shipping_rate(store, rate_id, param=f"{where}[shipping_rate]")
        elif isinstance(data, dict):
            rate = create_shipping_rate(store, data, where=f"{where}[shipping_rate_data]")
        else:
            raise StripeError(400, "Invalid object", param=f"{where}[shipping_rate_data]")
        if rate["fixed_amount"]["currency"] != currency:
            raise StripeError(
                400,
                "The shipping rate's currency must match the line items'.",
                param=f"{where}[shipping_rate_data][fixed_amount][currency]",
            )
        rates.append(rate)
        options.append(
            {"shipping_amount": rate["fixed_amount"]["amount"], "shipping_rate": rate["id"]}
        )
    return options, rates[0]


# --- customers and tax --------------------------------------------------------------------


def create_customer(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    from standins.stripe.store import new_object_id, now

    shipping = params.get("shipping")
    if shipping not in (None, "") and not isinstance(shipping, dict):
        raise StripeError(400, "Invalid object", param="shipping")
    if isinstance(shipping, dict):
        if not isinstance(shipping.get("address"), dict):
            raise StripeError(
                400,
                "Missing required param: shipping[address].",
                param="shipping[address]",
                code="parameter_missing",
            )
        as_str(shipping, "name", required=True, param="shipping[name]")
    address = params.get("address")
    customer: dict[str, Any] = {
        "id": new_object_id("cus"),
        "object": "customer",
        "address": address if isinstance(address, dict) else None,
        "created": now(),
        "email": as_str(params, "email", max_length=512),
        "livemode": False,
        "metadata": as_metadata(params),
        "name": as_str(params, "name", max_length=256),
        "shipping": shipping if isinstance(shipping, dict) else None,
    }
    store.state.customers[customer["id"]] = customer
    store.save()
    return customer


def customer(store: Store, customer_id: str) -> dict[str, Any]:
    return store.state.customers.found(customer_id, "customer", param="customer")


def automatic_tax_enabled(params: dict[str, Any]) -> bool:
    raw = params.get("automatic_tax")
    if raw in (None, ""):
        return False
    if not isinstance(raw, dict):
        raise StripeError(400, "Invalid object", param="automatic_tax")
    enabled = _bool(raw, "enabled")
    if enabled is None:
        raise StripeError(
            400,
            "Missing required param: automatic_tax[enabled].",
            param="automatic_tax[enabled]",
            code="parameter_missing",
        )
    return enabled


def tax_address(store: Store, customer_id: str | None) -> dict[str, Any]:
    """Where Stripe Tax places the sale: the customer's shipping address, else its address.

    Without either Stripe refuses the session (Checkout could collect one on its page; the
    stand-in's page does not)."""
    found = customer(store, customer_id) if customer_id else None
    address = None
    if found is not None:
        address = (found.get("shipping") or {}).get("address") or found.get("address")
    if not isinstance(address, dict) or not address.get("country"):
        raise StripeError(
            400,
            "Automatic tax calculation in Checkout requires a valid address on the Customer. "
            "Add a valid address to the Customer or set either `customer_update[address]` or "
            "`customer_update[shipping]` to 'auto' to save the address entered in Checkout.",
            param="automatic_tax[enabled]",
            code="customer_tax_location_invalid",
        )
    return address


def apply(
    items: list[dict[str, Any]],
    discount: int,
    shipping: dict[str, Any] | None,
    tax_bp: int | None,
) -> dict[str, int]:
    """Spread the discount over the lines, tax the lines and shipping, and answer the
    session's ``total_details`` (each line and the shipping rate get their own amounts)."""
    shares = spread(discount, [item["amount_subtotal"] for item in items])
    tax_total = 0
    for item, share in zip(items, shares, strict=True):
        taxable = item["amount_subtotal"] - share
        tax = half_up(taxable * tax_bp, 10_000) if tax_bp else 0
        item["amount_discount"] = share
        item["amount_tax"] = tax
        item["amount_total"] = taxable + tax
        tax_total += tax
    amount_shipping = 0
    if shipping is not None:
        amount = shipping["amount_subtotal"]
        shipping_tax = half_up(amount * tax_bp, 10_000) if tax_bp else 0
        shipping["amount_tax"] = shipping_tax
        shipping["amount_total"] = amount + shipping_tax
        tax_total += shipping_tax
        amount_shipping = amount
    return {
        "amount_discount": discount,
        "amount_shipping": amount_shipping,
        "amount_tax": tax_total,
    }
