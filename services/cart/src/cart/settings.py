"""The cart's own settings, beside the shared groups (documented in the repo's ``.env.example``)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

import structlog
from ember_shared.settings import (
    MIN_SECRET_LENGTH,
    ServiceSettings,
    SettingsError,
    checked_settings,
    env_int,
    env_str,
    refuse_to_start,
    service_settings,
    service_url,
)

log = structlog.get_logger("cart.settings")

#: The database's CHECK on ``cart_items.quantity``: the per-line limit may be set up to this.
HARD_MAX_QUANTITY_PER_LINE = 99
#: Bound on the lines of one cart, whatever the setting says (keeps catalog lookups to one page).
HARD_MAX_LINES = 100


@dataclass(frozen=True)
class CartSettings:
    #: Key of the HMAC that signs the guest cart cookie. Required outside local mode.
    cookie_secret: str = field(default_factory=lambda: env_str("CART_COOKIE_SECRET"))
    cookie_max_age_days: int = field(
        default_factory=lambda: env_int("CART_COOKIE_MAX_AGE_DAYS", 30)
    )
    max_quantity_per_line: int = field(
        default_factory=lambda: env_int("CART_MAX_QUANTITY_PER_LINE", 10)
    )
    max_lines: int = field(default_factory=lambda: env_int("CART_MAX_LINES", 50))
    catalog_url: str = field(default_factory=lambda: service_url("catalog"))
    catalog_timeout_ms: int = field(
        default_factory=lambda: env_int("CART_CATALOG_TIMEOUT_MS", 2000)
    )
    #: How often abandoned guest carts (and old merged/converted ones) are deleted; 0 turns it off.
    sweep_interval_s: int = field(default_factory=lambda: env_int("CART_SWEEP_INTERVAL_S", 3600))

    @property
    def cookie_max_age_s(self) -> int:
        return self.cookie_max_age_days * 86_400

    def production_problems(self) -> list[str]:
        """Why this configuration must not run in production (names every setting at fault)."""
        if len(self.cookie_secret) < MIN_SECRET_LENGTH:
            return [f"CART_COOKIE_SECRET must be set (at least {MIN_SECRET_LENGTH} characters)"]
        return []

    def validate(self, *, local: bool) -> None:
        if not 1 <= self.max_quantity_per_line <= HARD_MAX_QUANTITY_PER_LINE:
            raise SettingsError(
                f"CART_MAX_QUANTITY_PER_LINE must be 1..{HARD_MAX_QUANTITY_PER_LINE}"
            )
        if not 1 <= self.max_lines <= HARD_MAX_LINES:
            raise SettingsError(f"CART_MAX_LINES must be 1..{HARD_MAX_LINES}")
        if not 1 <= self.cookie_max_age_days <= 400:
            raise SettingsError("CART_COOKIE_MAX_AGE_DAYS must be 1..400")
        if not 50 <= self.catalog_timeout_ms <= 30_000:
            raise SettingsError("CART_CATALOG_TIMEOUT_MS must be 50..30000")
        if not local:
            refuse_to_start(self.production_problems())


def signing_key(cart: CartSettings, service: ServiceSettings) -> bytes:
    """The key that signs guest cookies.

    Outside local mode it is ``CART_COOKIE_SECRET`` (checked at startup). In local mode, with no
    secret configured, it is derived from the internal service token so that every cart process
    of one stack (and a restart) still accepts the cookies it gave out; failing that, a random
    key, which only costs guests their carts when the process restarts.
    """
    if cart.cookie_secret:
        return cart.cookie_secret.encode()
    if service.auth.service_token:
        return hmac.new(
            service.auth.service_token.encode(), b"ember-cart-cookie-v1", hashlib.sha256
        ).digest()
    log.warning(
        "cart_cookie_secret_random", reason="neither CART_COOKIE_SECRET nor service token set"
    )
    return secrets.token_bytes(32)


def load_settings(
    settings: CartSettings | None = None, service: ServiceSettings | None = None
) -> CartSettings:
    """The cart's settings (``settings``, or read from the environment), refused if unsafe."""
    return checked_settings(settings or CartSettings(), service or service_settings("cart"))
