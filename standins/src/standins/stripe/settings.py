"""The Stripe stand-in's settings, read from the environment (all documented in ``.env.example``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ember_shared.settings import data_dir, env_int, env_str, port_of, service_url

#: The webhook secret both the stand-in and checkout use when nothing else is configured.
LOCAL_WEBHOOK_SECRET = "whsec_ember_local_standin"  # noqa: S105 - a public local-only default


def _default_public_url() -> str:
    return f"http://localhost:{port_of('stripe-standin')}"


def _default_webhook_url() -> str:
    return service_url("checkout") + "/api/webhooks/stripe"


def _default_state_file() -> str:
    return str(data_dir() / "stripe-standin" / "state.sqlite3")


def _env_float(name: str, default: float) -> float:
    raw = env_str(name)
    return float(raw) if raw else default


@dataclass(frozen=True)
class StandinSettings:
    #: Base URL the shopper's browser uses for the hosted pay page (a session's ``url``).
    public_url: str = field(
        default_factory=lambda: env_str("STRIPE_STANDIN_PUBLIC_URL") or _default_public_url()
    )
    #: Where webhooks are delivered (Stripe's "webhook endpoint"); "off": nowhere.
    webhook_url: str = field(
        default_factory=lambda: env_str("STRIPE_STANDIN_WEBHOOK_URL") or _default_webhook_url()
    )
    #: The endpoint's signing secret; checkout verifies with the same value.
    webhook_secret: str = field(
        default_factory=lambda: env_str("STRIPE_WEBHOOK_SECRET") or LOCAL_WEBHOOK_SECRET
    )
    #: SQLite file keeping sessions, payments and events across restarts ("memory": none). An
    #: older stand-in's JSON state found there (or as ``state.json`` beside it) is taken over.
    state_file: str = field(
        default_factory=lambda: env_str("STRIPE_STANDIN_STATE_FILE") or _default_state_file()
    )
    #: First retry delay after a failed delivery; doubled each attempt, capped at a minute.
    retry_base_seconds: float = field(
        default_factory=lambda: _env_float("STRIPE_STANDIN_RETRY_BASE_SECONDS", 1.0)
    )
    max_attempts: int = field(default_factory=lambda: env_int("STRIPE_STANDIN_MAX_ATTEMPTS", 8))
    #: The event types the endpoint listens for, comma-separated, as a Stripe endpoint's
    #: ``enabled_events`` ("*": every type). Others are recorded but never delivered.
    enabled_events: str = field(
        default_factory=lambda: env_str("STRIPE_STANDIN_ENABLED_EVENTS") or "*"
    )
    #: Deliveries in flight to the endpoint at once; more wait their turn.
    delivery_concurrency: int = field(
        default_factory=lambda: env_int("STRIPE_STANDIN_DELIVERY_CONCURRENCY", 10)
    )
    #: How often open sessions past ``expires_at`` are looked for.
    expiry_interval_seconds: float = field(
        default_factory=lambda: _env_float("STRIPE_STANDIN_EXPIRY_INTERVAL_SECONDS", 1.0)
    )
    #: Delay before a delayed payment (card 4000 0000 0000 3220) settles as paid; 0 = only on request.
    async_settle_seconds: float = field(
        default_factory=lambda: _env_float("STRIPE_STANDIN_ASYNC_SETTLE_SECONDS", 5.0)
    )
    #: Shortest ``expires_at`` accepted, from now (Stripe's rule: 30 minutes).
    min_expiry_seconds: int = field(
        default_factory=lambda: env_int("STRIPE_STANDIN_MIN_EXPIRY_SECONDS", 1800)
    )

    @property
    def state_path(self) -> Path | None:
        if self.state_file.strip().lower() in ("", "memory"):
            return None
        return Path(self.state_file)

    @property
    def enabled_event_types(self) -> frozenset[str] | None:
        """None: every type."""
        types = frozenset(t.strip() for t in self.enabled_events.split(",") if t.strip())
        return None if not types or "*" in types else types

    @property
    def delivers_webhooks(self) -> bool:
        return self.webhook_url.strip().lower() != "off"
