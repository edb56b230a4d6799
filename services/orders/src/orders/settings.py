"""The orders service's own settings, beside the shared groups (documented in ``.env.example``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ember_shared.sealing import PUBLIC_KEY_VAR
from ember_shared.settings import (
    ServiceSettings,
    SettingsError,
    checked_settings,
    env_bool,
    env_int,
    env_str,
    refuse_to_start,
    service_settings,
    service_url,
)

#: 17track accepts at most 40 numbers per register / gettrackinfo call.
PROVIDER_MAX_BATCH = 40


def _default_tracking_url() -> str:
    return service_url("tracking-standin") + "/track/v2"


@dataclass(frozen=True)
class TrackingSettings:
    #: Base of a 17track-compatible API (``.../track/v2``); the local stand-in by default.
    api_url: str = field(
        default_factory=lambda: env_str("TRACKING_API_URL") or _default_tracking_url()
    )
    #: Sent as the ``17token`` header. Required outside local mode.
    api_key: str = field(default_factory=lambda: env_str("TRACKING_API_KEY"))
    #: A shipped order's tracking is fetched again once its last sync is older than this.
    #: (Default 30 minutes; one minute against the stand-in, so a local demo parcel moves.)
    sync_interval_s: int = field(
        default_factory=lambda: env_int(
            "TRACKING_SYNC_INTERVAL", 1800 if env_str("TRACKING_API_URL") else 60
        )
    )
    #: How often the background poller wakes up to look for orders due a sync.
    poll_interval_s: int = field(default_factory=lambda: env_int("TRACKING_POLL_INTERVAL", 60))
    #: Orders asked of the provider per call (17track allows up to 40).
    batch_size: int = field(default_factory=lambda: env_int("TRACKING_SYNC_BATCH", 40))
    #: Shipments older than this are no longer polled (17track stops tracking them too).
    max_age_days: int = field(default_factory=lambda: env_int("TRACKING_MAX_AGE_DAYS", 90))
    timeout_ms: int = field(default_factory=lambda: env_int("TRACKING_TIMEOUT_MS", 5000))
    #: Turns the background poller off (the admin "sync now" route still works).
    poller_enabled: bool = field(default_factory=lambda: env_bool("TRACKING_POLLER_ENABLED", True))
    #: Template of the tracking link shown to shoppers (``{number}`` is replaced). When empty:
    #: the stand-in's page if TRACKING_API_URL is unset, else the carrier's page or 17track's.
    public_url: str = field(default_factory=lambda: env_str("TRACKING_PUBLIC_URL"))
    uses_standin: bool = field(default_factory=lambda: not env_str("TRACKING_API_URL"))

    def link_template(self) -> tuple[str, bool]:
        """(template, forced): a forced template is used even for carriers with their own page."""
        if self.public_url:
            return self.public_url, True
        if self.uses_standin:
            return service_url("tracking-standin") + "/track?nums={number}", True
        return "https://t.17track.net/en#nums={number}", False

    @property
    def local_key(self) -> str:
        """The key used against the local stand-in when none is configured."""
        return self.api_key or "ember-local-tracking-key"

    def validate(self, local: bool) -> None:
        if not self.api_url.startswith(("http://", "https://")):
            raise SettingsError("TRACKING_API_URL must be an http(s) URL")
        if not 10 <= self.sync_interval_s <= 7 * 86_400:
            raise SettingsError("TRACKING_SYNC_INTERVAL must be 10..604800 seconds")
        if not 1 <= self.poll_interval_s <= 86_400:
            raise SettingsError("TRACKING_POLL_INTERVAL must be 1..86400 seconds")
        if not 1 <= self.batch_size <= PROVIDER_MAX_BATCH:
            raise SettingsError(f"TRACKING_SYNC_BATCH must be 1..{PROVIDER_MAX_BATCH}")
        if not 1 <= self.max_age_days <= 365:
            raise SettingsError("TRACKING_MAX_AGE_DAYS must be 1..365")
        if not 100 <= self.timeout_ms <= 60_000:
            raise SettingsError("TRACKING_TIMEOUT_MS must be 100..60000")
        if not local:
            refuse_to_start(self.production_problems())

    def production_problems(self) -> list[str]:
        """Why this configuration must not run in production (names every setting at fault)."""
        problems: list[str] = []
        if not self.api_key:
            problems.append("TRACKING_API_KEY must be set")
        if self.uses_standin:
            problems.append("TRACKING_API_URL must be set to 17track's API, never the stand-in")
        return problems


@dataclass(frozen=True)
class OrdersSettings:
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    #: Largest page the order lists answer.
    max_page_size: int = 100
    #: Longest date range the sales figures cover in one request.
    stats_max_days: int = field(default_factory=lambda: env_int("ORDERS_STATS_MAX_DAYS", 366))

    def validate(self, *, local: bool) -> None:
        self.tracking.validate(local)
        if not 1 <= self.stats_max_days <= 3660:
            raise SettingsError("ORDERS_STATS_MAX_DAYS must be 1..3660")

    def production_problems(self) -> list[str]:
        """Why this configuration must not run in production (names every setting at fault)."""
        sealing = (
            []
            if env_str(PUBLIC_KEY_VAR)
            else [f"{PUBLIC_KEY_VAR} must be set (the notifier's key for guests' order links)"]
        )
        return self.tracking.production_problems() + sealing


def load_settings(
    settings: OrdersSettings | None = None, service: ServiceSettings | None = None
) -> OrdersSettings:
    """The orders service's settings (``settings``, or the environment's), refused if unsafe."""
    return checked_settings(settings or OrdersSettings(), service or service_settings("orders"))
