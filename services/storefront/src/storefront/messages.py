"""What the services' problems mean to a shopper, in plain words (never the raw body)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from storefront.api import ApiProblem, ApiUnavailable
from storefront.web import money

GENERIC = "Something did not work. Please try again."
SIGN_UP_LINK_INVALID = (
    "That link has expired or was used already. If your account is ready, sign in; "
    "if not, sign up again for a new link."
)


def _int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    return value if isinstance(value, int) else None


#: A problem kind's sentence for a shopper, whatever the body says.
SAID: dict[str, str] = {
    "product-not-found": "That item is not in the shop any more.",
    "not-in-cart": "That item is not in the shop any more.",
    "cart-full": "Your cart is full. Check out or remove something first.",
    "catalog-unavailable": "We cannot check prices and stock right now. Please try again in a moment.",
    "cart-empty": "Your cart is empty: add a coffee before checking out.",
    "lines-unavailable": "Some items in your cart cannot be bought right now: see below.",
    "payment-in-progress": (
        "A payment for this cart is being confirmed. Wait a moment, then check your orders."
    ),
    "email-required": "Give an email address for your receipt.",
    "address-required": "Give a shipping address.",
    "currency-mismatch": (
        "Your cart holds items priced in another currency; remove them to check out."
    ),
    "unauthenticated": "Please sign in again.",
    "token-expired": "Please sign in again.",
    "session-ended": "Please sign in again.",
    "invalid-credentials": (
        "That email and password do not match an account. Just signed up? Open the "
        "link we emailed you first."
    ),
    "invalid-sign-up-link": SIGN_UP_LINK_INVALID,
    "already-registered": "Your account is ready: sign in.",
    "invalid-reset-token": "That reset link has expired or was already used. Ask for a new one.",
    "wrong-password": "Your current password is not right.",
    "no-password": "Your account signs in with Google: it has no password to change.",
    "has-password": "Your account has a password already: change it with the current one.",
    "recent-sign-in-required": (
        "For your safety, sign in with Google again, then set your password within 15 minutes."
    ),
    "account-disabled": "This account is disabled. Contact us if you think that is a mistake.",
    "too-many-addresses": "You have saved as many addresses as we keep. Delete one first.",
    "validation": "Some fields need another look.",
    "invalid-transition": "The order cannot move to that status from where it is.",
}
#: When nothing more precise is known, what a status means to a shopper.
BY_STATUS: dict[int, str] = {
    401: "Please sign in again.",
    403: "Your account cannot do that.",
    429: "Too many tries. Wait a moment and try again.",
}


def _insufficient_stock(problem: ApiProblem, thing: str) -> str:
    available = _int(problem.body, "available")
    in_cart = _int(problem.body, "in_cart")
    if available is None:
        return f"We do not have that many of {thing} left."
    if not available:
        return f"Sorry, {thing} has just sold out."
    extra = f" and {in_cart} are in your cart already" if in_cart else ""
    return f"We have only {available} of {thing} left{extra}."


def _quantity_limit(problem: ApiProblem, thing: str) -> str:
    limit = _int(problem.body, "max_quantity")
    if limit:
        return f"A cart can hold at most {limit} of one coffee."
    return "That is more than one cart can hold."


def _price_changed(problem: ApiProblem, thing: str) -> str:
    total = _int(problem.body, "total")
    if total is None:
        return "Prices changed since you opened your cart: check the new total, then pay."
    currency = str(problem.body.get("currency") or "USD")
    return (
        f"Prices changed since you opened your cart. The new total is "
        f"{money(total, currency)}: check it, then pay."
    )


def _rate_limited(problem: ApiProblem, thing: str) -> str:
    retry = _int(problem.body, "retry_after")
    if retry:
        return f"Too many tries. Wait {retry} seconds and try again."
    return BY_STATUS[429]


#: Kinds whose sentence uses the problem's figures or the thing acted on.
WORDED: dict[str, Callable[[ApiProblem, str], str]] = {
    "sold-out": lambda problem, thing: f"Sorry, {thing} has just sold out.",
    "insufficient-stock": _insufficient_stock,
    "quantity-limit": _quantity_limit,
    "product-archived": lambda problem, thing: f"Sorry, {thing} is no longer sold.",
    "price-changed": _price_changed,
    "rate-limited": _rate_limited,
    "weak-password": lambda problem, thing: (
        str(problem.detail) or "Choose a longer, less common password."
    ),
}


def friendly(problem: ApiProblem, what: str = "") -> str:
    """One sentence for ``problem``; ``what`` names the thing acted on when the body does not."""
    if isinstance(problem, ApiUnavailable):
        return "We could not reach that part of the shop just now. Please try again in a moment."
    thing = what or "that coffee"
    if problem.kind in SAID:
        return SAID[problem.kind]
    if problem.kind in WORDED:
        return WORDED[problem.kind](problem, thing)
    if problem.status in BY_STATUS:
        return BY_STATUS[problem.status]
    if problem.status == 404:
        return f"{thing[:1].upper()}{thing[1:]} could not be found."
    # The services write their details for people; show one when it is a plain sentence.
    detail = problem.detail.strip()
    if detail and len(detail) <= 240 and "{" not in detail and "Traceback" not in detail:
        return detail
    return GENERIC
