"""What the services' problems mean to a shopper, in plain words (never the raw body)."""

from __future__ import annotations

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


def friendly(problem: ApiProblem, what: str = "") -> str:
    """One sentence for ``problem``; ``what`` names the thing acted on when the body does not."""
    if isinstance(problem, ApiUnavailable):
        return "We could not reach that part of the shop just now. Please try again in a moment."
    body = problem.body
    kind = problem.kind
    thing = what or "that coffee"
    match kind:
        case "sold-out":
            return f"Sorry, {thing} has just sold out."
        case "insufficient-stock":
            available = _int(body, "available")
            in_cart = _int(body, "in_cart")
            if available is None:
                return f"We do not have that many of {thing} left."
            if not available:
                return f"Sorry, {thing} has just sold out."
            extra = f" and {in_cart} are in your cart already" if in_cart else ""
            return f"We have only {available} of {thing} left{extra}."
        case "quantity-limit":
            limit = _int(body, "max_quantity")
            return (
                f"A cart can hold at most {limit} of one coffee."
                if limit
                else "That is more than one cart can hold."
            )
        case "product-archived":
            return f"Sorry, {thing} is no longer sold."
        case "product-not-found" | "not-in-cart":
            return "That item is not in the shop any more."
        case "cart-full":
            return "Your cart is full. Check out or remove something first."
        case "catalog-unavailable":
            return "We cannot check prices and stock right now. Please try again in a moment."
        case "cart-empty":
            return "Your cart is empty: add a coffee before checking out."
        case "price-changed":
            total = _int(body, "total")
            currency = str(body.get("currency") or "USD")
            if total is not None:
                return (
                    f"Prices changed since you opened your cart. The new total is "
                    f"{money(total, currency)}: check it, then pay."
                )
            return "Prices changed since you opened your cart: check the new total, then pay."
        case "lines-unavailable":
            return "Some items in your cart cannot be bought right now: see below."
        case "payment-in-progress":
            return (
                "A payment for this cart is being confirmed. Wait a moment, then check your orders."
            )
        case "email-required":
            return "Give an email address for your receipt."
        case "address-required":
            return "Give a shipping address."
        case "currency-mismatch":
            return "Your cart holds items priced in another currency; remove them to check out."
        case "unauthenticated" | "token-expired" | "session-ended":
            return "Please sign in again."
        case "invalid-credentials":
            return (
                "That email and password do not match an account. Just signed up? Open the "
                "link we emailed you first."
            )
        case "rate-limited":
            retry = _int(body, "retry_after")
            return (
                f"Too many tries. Wait {retry} seconds and try again."
                if retry
                else "Too many tries. Wait a moment and try again."
            )
        case "weak-password":
            return str(problem.detail) or "Choose a longer, less common password."
        case "invalid-sign-up-link":
            return SIGN_UP_LINK_INVALID
        case "already-registered":
            return "Your account is ready: sign in."
        case "invalid-reset-token":
            return "That reset link has expired or was already used. Ask for a new one."
        case "wrong-password":
            return "Your current password is not right."
        case "no-password":
            return "Your account signs in with Google: it has no password to change."
        case "has-password":
            return "Your account has a password already: change it with the current one."
        case "recent-sign-in-required":
            return (
                "For your safety, sign in with Google again, then set your password "
                "within 15 minutes."
            )
        case "account-disabled":
            return "This account is disabled. Contact us if you think that is a mistake."
        case "too-many-addresses":
            return "You have saved as many addresses as we keep. Delete one first."
        case "validation":
            return "Some fields need another look."
        case "invalid-transition":
            return "The order cannot move to that status from where it is."
    if problem.status == 401:
        return "Please sign in again."
    if problem.status == 403:
        return "Your account cannot do that."
    if problem.status == 404:
        return f"{thing[:1].upper()}{thing[1:]} could not be found."
    if problem.status == 429:
        return "Too many tries. Wait a moment and try again."
    # The services write their details for people; show one when it is a plain sentence.
    detail = problem.detail.strip()
    if detail and len(detail) <= 240 and "{" not in detail and "Traceback" not in detail:
        return detail
    return GENERIC
