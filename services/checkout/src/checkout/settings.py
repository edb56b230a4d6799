"""Checkout's own settings, beside the shared groups (documented in the repo's ``.env.example``).

With no Stripe key configured, checkout talks to the repo's Stripe stand-in with a local test key;
with ``STRIPE_SECRET_KEY`` (and ``STRIPE_WEBHOOK_SECRET``) set, the same code talks to Stripe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ember_shared.settings import (
    ServiceSettings,
    SettingsError,
    checked_settings,
    env_int,
    env_str,
    refuse_to_start,
    service_settings,
    service_url,
)

#: The key used against the stand-in when no Stripe key is configured.
LOCAL_STRIPE_KEY = "sk_test_ember_local"
#: The stand-in's default signing secret (the devstack may generate another and give it to both).
LOCAL_WEBHOOK_SECRET = "whsec_ember_local_standin"  # noqa: S105 - a public local-only default
STRIPE_API = "https://api.stripe.com"
#: Stripe refuses a Checkout Session that expires sooner than this after its creation.
STRIPE_MIN_EXPIRY_SECONDS = 1800
STRIPE_MAX_EXPIRY_SECONDS = 24 * 3600


def _default_api_base() -> str:
    key = env_str("STRIPE_SECRET_KEY") or LOCAL_STRIPE_KEY
    return service_url("stripe-standin") if key == LOCAL_STRIPE_KEY else STRIPE_API


def _default_webhook_secret() -> str:
    key = env_str("STRIPE_SECRET_KEY") or LOCAL_STRIPE_KEY
    return LOCAL_WEBHOOK_SECRET if key == LOCAL_STRIPE_KEY else ""


@dataclass(frozen=True)
class CheckoutSettings:
    stripe_secret_key: str = field(
        default_factory=lambda: env_str("STRIPE_SECRET_KEY") or LOCAL_STRIPE_KEY
    )
    stripe_api_base: str = field(
        default_factory=lambda: env_str("STRIPE_API_BASE") or _default_api_base()
    )
    #: One ``whsec_...`` secret, or several separated by commas while rotating them.
    stripe_webhook_secret: str = field(
        default_factory=lambda: env_str("STRIPE_WEBHOOK_SECRET") or _default_webhook_secret()
    )
    #: How old (seconds) a webhook's signed timestamp may be: older deliveries are replays.
    stripe_webhook_tolerance: int = field(
        default_factory=lambda: env_int("STRIPE_WEBHOOK_TOLERANCE", 300)
    )
    stripe_timeout_ms: int = field(default_factory=lambda: env_int("STRIPE_TIMEOUT_MS", 10_000))
    stripe_max_network_retries: int = field(
        default_factory=lambda: env_int("STRIPE_MAX_NETWORK_RETRIES", 2)
    )
    #: How long catalog holds the stock of a started checkout.
    reservation_ttl_s: int = field(
        default_factory=lambda: env_int("CHECKOUT_RESERVATION_TTL_S", 2100)
    )
    #: The Stripe session closes this long before the reservation lapses, so a payment can
    #: never land on stock that is no longer held.
    expiry_margin_s: int = field(default_factory=lambda: env_int("CHECKOUT_EXPIRY_MARGIN_S", 120))
    #: Stock held without paying, per client address and per email: open checkouts at once,
    #: and units across them (also the most one checkout may hold). One client cannot hold more
    #: than this of any product, however many carts or addresses it makes up.
    max_open_per_client: int = field(
        default_factory=lambda: env_int("CHECKOUT_MAX_OPEN_PER_CLIENT", 3)
    )
    max_open_per_email: int = field(
        default_factory=lambda: env_int("CHECKOUT_MAX_OPEN_PER_EMAIL", 2)
    )
    max_held_units: int = field(default_factory=lambda: env_int("CHECKOUT_MAX_HELD_UNITS", 24))
    #: Connections of the budget claims' own pool (per process): a start's claim runs beside
    #: its transaction, never on the request's pool.
    claim_pool_size: int = field(default_factory=lambda: env_int("CHECKOUT_CLAIM_POOL_SIZE", 5))
    shipping_flat_rate: int = field(
        default_factory=lambda: env_int("CHECKOUT_SHIPPING_FLAT_RATE", 600)
    )
    #: Subtotals at or above this ship free; 0 means shipping is never free.
    free_shipping_threshold: int = field(
        default_factory=lambda: env_int("CHECKOUT_FREE_SHIPPING_THRESHOLD", 5000)
    )
    currency: str = field(default_factory=lambda: env_str("CHECKOUT_CURRENCY", "USD").upper())
    upstream_timeout_ms: int = field(
        default_factory=lambda: env_int("CHECKOUT_UPSTREAM_TIMEOUT_MS", 5000)
    )
    catalog_url: str = field(default_factory=lambda: service_url("catalog"))
    cart_url: str = field(default_factory=lambda: service_url("cart"))
    identity_url: str = field(default_factory=lambda: service_url("identity"))
    #: How often each replica looks for checkouts whose webhook never came (0: never).
    reconcile_interval_s: int = field(
        default_factory=lambda: env_int("CHECKOUT_RECONCILE_INTERVAL_S", 30)
    )
    #: A checkout open or pending this long with no news is asked about at Stripe (and again
    #: this long after each look).
    reconcile_after_s: int = field(
        default_factory=lambda: env_int("CHECKOUT_RECONCILE_AFTER_S", 120)
    )
    #: Most checkouts one replica asks about in one pass.
    reconcile_batch: int = field(default_factory=lambda: env_int("CHECKOUT_RECONCILE_BATCH", 100))

    @property
    def uses_standin(self) -> bool:
        return self.stripe_api_base.rstrip("/") != STRIPE_API

    @property
    def webhook_secrets(self) -> list[str]:
        return [s.strip() for s in self.stripe_webhook_secret.split(",") if s.strip()]

    @property
    def stripe_expiry_s(self) -> int:
        return self.reservation_ttl_s - self.expiry_margin_s

    @property
    def start_bound_s(self) -> float:
        """Longer than any checkout start can run (the calls it makes, each bounded by its
        timeout and retries, and a wait for another start of the same cart): what a start took
        (a stock-hold claim, a code's use) outliving its request is given back after this."""
        upstream_s = self.upstream_timeout_ms / 1000
        stripe_s = (self.stripe_max_network_retries + 1) * self.stripe_timeout_ms / 1000
        return 60 + 2 * (3 * upstream_s + 2 * stripe_s)

    def production_problems(self) -> list[str]:
        """Why this configuration must not run in production (names every setting at fault)."""
        problems: list[str] = []
        if not env_str("STRIPE_SECRET_KEY") or self.stripe_secret_key == LOCAL_STRIPE_KEY:
            problems.append("STRIPE_SECRET_KEY must be set to the shop's Stripe key")
        if not env_str("STRIPE_WEBHOOK_SECRET") or LOCAL_WEBHOOK_SECRET in self.webhook_secrets:
            problems.append(
                "STRIPE_WEBHOOK_SECRET must be set to the endpoint's secret Stripe shows "
                "(never the stand-in's)"
            )
        if self.uses_standin:
            problems.append(f"STRIPE_API_BASE must be {STRIPE_API}, never a stand-in")
        return problems

    def validate(self, *, local: bool) -> None:
        if not local:
            refuse_to_start(self.production_problems())
        if not self.stripe_secret_key.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")):
            raise SettingsError(
                "STRIPE_SECRET_KEY must be a Stripe secret key (sk_test_... or sk_live_...)"
            )
        if self.stripe_secret_key.startswith(("sk_live_", "rk_live_")) and local:
            raise SettingsError("A live Stripe key is refused in local mode (EMBER_MODE=local)")
        if not self.webhook_secrets:
            raise SettingsError("STRIPE_WEBHOOK_SECRET must be set when STRIPE_SECRET_KEY is")
        low = STRIPE_MIN_EXPIRY_SECONDS + 60 if not self.uses_standin else 60
        in_range = {
            "STRIPE_WEBHOOK_TOLERANCE must be 0..3600 seconds": (
                0 <= self.stripe_webhook_tolerance <= 3600
            ),
            "CHECKOUT_EXPIRY_MARGIN_S must be 0..3600": 0 <= self.expiry_margin_s <= 3600,
            "CHECKOUT_RESERVATION_TTL_S less CHECKOUT_EXPIRY_MARGIN_S must lie between "
            f"{low} s and 24 h (Stripe's limits on a Checkout Session's expiry)": (
                low <= self.stripe_expiry_s <= STRIPE_MAX_EXPIRY_SECONDS
            ),
            "CHECKOUT_SHIPPING_FLAT_RATE / CHECKOUT_FREE_SHIPPING_THRESHOLD out of range": (
                0 <= self.shipping_flat_rate <= 100_000
                and 0 <= self.free_shipping_threshold <= 10_000_000
            ),
            "CHECKOUT_MAX_OPEN_PER_CLIENT / CHECKOUT_MAX_OPEN_PER_EMAIL (1..100) or "
            "CHECKOUT_MAX_HELD_UNITS (1..10000) out of range": (
                1 <= self.max_open_per_client <= 100
                and 1 <= self.max_open_per_email <= 100
                and 1 <= self.max_held_units <= 10_000
            ),
            "CHECKOUT_CURRENCY must be an ISO 4217 code": (
                len(self.currency) == 3 and self.currency.isalpha()
            ),
            "CHECKOUT_RECONCILE_INTERVAL_S (0..86400), CHECKOUT_RECONCILE_AFTER_S (1..86400) "
            "or CHECKOUT_RECONCILE_BATCH (1..10000) out of range": (
                0 <= self.reconcile_interval_s <= 86_400
                and 1 <= self.reconcile_after_s <= 86_400
                and 1 <= self.reconcile_batch <= 10_000
            ),
            "CHECKOUT_UPSTREAM_TIMEOUT_MS / STRIPE_TIMEOUT_MS out of range": (
                100 <= self.upstream_timeout_ms <= 60_000
                and 100 <= self.stripe_timeout_ms <= 120_000
            ),
        }
        for problem, holds in in_range.items():
            if not holds:
                raise SettingsError(problem)

    def shipping_for(self, subtotal: int) -> int:
        if self.free_shipping_threshold and subtotal >= self.free_shipping_threshold:
            return 0
        return self.shipping_flat_rate


def load_settings(
    settings: CheckoutSettings | None = None, service: ServiceSettings | None = None
) -> CheckoutSettings:
    """Checkout's settings (``settings``, or read from the environment), refused if unsafe."""
    return checked_settings(settings or CheckoutSettings(), service or service_settings("checkout"))
