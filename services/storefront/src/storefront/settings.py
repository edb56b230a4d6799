"""The storefront's own settings, beside the shared groups (documented in ``.env.example``)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from ember_shared.settings import (
    MIN_SECRET_LENGTH,
    ServiceSettings,
    SettingsError,
    checked_settings,
    env_int,
    env_str,
    refuse_to_start,
    service_settings,
)


@dataclass(frozen=True)
class StorefrontSettings:
    #: The shop's name, in titles and the header.
    shop_name: str = field(default_factory=lambda: env_str("STOREFRONT_SHOP_NAME") or "Ember")
    #: Key of the HMAC that signs the storefront's own CSRF cookie (its form posts).
    csrf_secret: str = field(default_factory=lambda: env_str("STOREFRONT_CSRF_SECRET"))
    #: Timeout of each call to a service's API (milliseconds).
    api_timeout_ms: int = field(default_factory=lambda: env_int("STOREFRONT_API_TIMEOUT_MS", 5000))
    #: Products per page of the shop listing and search results.
    page_size: int = field(default_factory=lambda: env_int("STOREFRONT_PAGE_SIZE", 12))
    #: Products on the home page.
    featured_count: int = field(default_factory=lambda: env_int("STOREFRONT_FEATURED_COUNT", 4))
    #: How often the order page asks whether the payment is confirmed (seconds), and for how
    #: long before it says it is taking longer than usual.
    order_poll_seconds: int = field(
        default_factory=lambda: env_int("STOREFRONT_ORDER_POLL_SECONDS", 2)
    )
    order_poll_limit_seconds: int = field(
        default_factory=lambda: env_int("STOREFRONT_ORDER_POLL_LIMIT_SECONDS", 180)
    )

    def production_problems(self) -> list[str]:
        """Why this configuration must not run in production (names every setting at fault)."""
        if len(self.csrf_secret) < MIN_SECRET_LENGTH:
            return [
                f"STOREFRONT_CSRF_SECRET must be set (at least {MIN_SECRET_LENGTH} characters) "
                "outside local mode"
            ]
        return []

    def validate(self, *, local: bool) -> None:
        if not 1 <= self.page_size <= 48:
            raise SettingsError("STOREFRONT_PAGE_SIZE must be 1..48")
        if not 1 <= self.featured_count <= 12:
            raise SettingsError("STOREFRONT_FEATURED_COUNT must be 1..12")
        if not 100 <= self.api_timeout_ms <= 60_000:
            raise SettingsError("STOREFRONT_API_TIMEOUT_MS must be 100..60000")
        if not 1 <= self.order_poll_seconds <= 60:
            raise SettingsError("STOREFRONT_ORDER_POLL_SECONDS must be 1..60")
        if not local:
            refuse_to_start(self.production_problems())

    def csrf_key(self, service_token: str) -> str:
        """The CSRF signing key. In local mode without a setting, one derived from the service
        credential, so every replica (and a restart) signs alike."""
        if self.csrf_secret:
            return self.csrf_secret
        seed = service_token or "ember-local-storefront"
        return hmac.new(seed.encode(), b"storefront-csrf.v1", hashlib.sha256).hexdigest()


def load_settings(
    settings: StorefrontSettings | None = None, service: ServiceSettings | None = None
) -> StorefrontSettings:
    """The storefront's settings (``settings``, or the environment's), refused if unsafe."""
    return checked_settings(
        settings or StorefrontSettings(), service or service_settings("storefront")
    )
