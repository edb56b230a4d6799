"""The notifier's own settings, beside the shared groups (documented in ``.env.example``).

They are read when the app or the worker is built (not cached), so a test can set the
environment, or pass a :class:`NotifierSettings` of its own, and build a fresh one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ember_shared.sealing import PRIVATE_KEY_VAR
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

#: API key the local Resend stand-in accepts (it takes any ``re_`` key); never valid at Resend.
STANDIN_API_KEY = "re_ember_local_standin"
#: Webhook signing secret shared by the notifier and the Resend stand-in in local mode only.
#: (``standins.resend`` carries the same value: services and stand-ins import nothing of each
#: other.) Production must set ``RESEND_WEBHOOK_SECRET`` to the secret Resend shows.
LOCAL_WEBHOOK_SECRET = "whsec_ZW1iZXItbG9jYWwtcmVzZW5kLXdlYmhvb2stc2VjcmV0"  # noqa: S105
RESEND_API_URL = "https://api.resend.com"


def _api_key() -> str:
    return env_str("RESEND_API_KEY") or STANDIN_API_KEY


def _api_url() -> str:
    # With no key of our own, Resend itself would refuse us: use the local stand-in.
    default = RESEND_API_URL if env_str("RESEND_API_KEY") else service_url("resend-standin")
    # An empty value means the default, as everywhere in .env.
    return (env_str("RESEND_API_URL") or default).rstrip("/")


@dataclass(frozen=True)
class NotifierSettings:
    resend_api_key: str = field(default_factory=_api_key)
    resend_api_url: str = field(default_factory=_api_url)
    #: ``whsec_<base64>``; empty means the local stand-in's secret (refused in production).
    webhook_secret: str = field(default_factory=lambda: env_str("RESEND_WEBHOOK_SECRET"))
    #: Webhooks signed longer ago (or further ahead) than this are refused: replay protection.
    webhook_tolerance_s: int = field(
        default_factory=lambda: env_int("RESEND_WEBHOOK_TOLERANCE_S", 300)
    )
    from_email: str = field(
        default_factory=lambda: (
            env_str("NOTIFIER_FROM_EMAIL") or "Ember Coffee <orders@ember.local>"
        )
    )
    reply_to: str = field(default_factory=lambda: env_str("NOTIFIER_REPLY_TO"))
    max_attempts: int = field(default_factory=lambda: env_int("NOTIFIER_MAX_ATTEMPTS", 6))
    backoff_base_ms: int = field(default_factory=lambda: env_int("NOTIFIER_BACKOFF_BASE_MS", 2000))
    backoff_cap_ms: int = field(default_factory=lambda: env_int("NOTIFIER_BACKOFF_CAP_MS", 600_000))
    poll_interval_ms: int = field(default_factory=lambda: env_int("NOTIFIER_POLL_INTERVAL_MS", 500))
    batch_size: int = field(default_factory=lambda: env_int("NOTIFIER_BATCH_SIZE", 20))
    concurrency: int = field(default_factory=lambda: env_int("NOTIFIER_CONCURRENCY", 4))
    send_timeout_s: int = field(default_factory=lambda: env_int("NOTIFIER_SEND_TIMEOUT_S", 15))
    #: A mail claimed by a worker that died is claimed again after this long.
    sending_lease_s: int = field(default_factory=lambda: env_int("NOTIFIER_SENDING_LEASE_S", 120))

    @property
    def signing_secret(self) -> str:
        return self.webhook_secret or LOCAL_WEBHOOK_SECRET

    @property
    def uses_standin(self) -> bool:
        return self.resend_api_key == STANDIN_API_KEY

    def validate(self, *, local: bool) -> None:
        checks = {
            "NOTIFIER_MAX_ATTEMPTS must be 1..50": 1 <= self.max_attempts <= 50,
            "NOTIFIER_BACKOFF_BASE_MS must be 1..3600000": 1 <= self.backoff_base_ms <= 3_600_000,
            "NOTIFIER_BACKOFF_CAP_MS must be at least the base": (
                self.backoff_base_ms <= self.backoff_cap_ms <= 86_400_000
            ),
            "NOTIFIER_POLL_INTERVAL_MS must be 10..60000": 10 <= self.poll_interval_ms <= 60_000,
            "NOTIFIER_BATCH_SIZE must be 1..500": 1 <= self.batch_size <= 500,
            "NOTIFIER_CONCURRENCY must be 1..64": 1 <= self.concurrency <= 64,
            "NOTIFIER_SEND_TIMEOUT_S must be 1..120": 1 <= self.send_timeout_s <= 120,
            "NOTIFIER_SENDING_LEASE_S must exceed the send timeout": (
                self.send_timeout_s < self.sending_lease_s <= 86_400
            ),
            "RESEND_WEBHOOK_TOLERANCE_S must be 1..3600": 1 <= self.webhook_tolerance_s <= 3600,
            "RESEND_WEBHOOK_SECRET must look like whsec_<base64>": (
                not self.webhook_secret or self.webhook_secret.startswith("whsec_")
            ),
            "RESEND_API_KEY must start with re_": self.resend_api_key.startswith("re_"),
        }
        if not local:
            refuse_to_start(self.production_problems())
        for message, ok in checks.items():
            if not ok:
                raise SettingsError(message)

    def production_problems(self) -> list[str]:
        """Why this configuration must not run in production (names every setting at fault)."""
        problems: list[str] = []
        if not self.webhook_secret or self.webhook_secret == LOCAL_WEBHOOK_SECRET:
            problems.append("RESEND_WEBHOOK_SECRET must be set to the secret Resend shows")
        if self.uses_standin:
            problems.append("RESEND_API_KEY must be set to the shop's Resend key")
        if not env_str(PRIVATE_KEY_VAR):
            problems.append(f"{PRIVATE_KEY_VAR} must be set (opens the mails' sealed links)")
        if self.resend_api_url == service_url("resend-standin").rstrip("/") or not (
            self.resend_api_url.startswith("https://")
        ):
            problems.append(
                f"RESEND_API_URL must be an https URL ({RESEND_API_URL}), never a stand-in"
            )
        return problems


def load_settings(
    settings: NotifierSettings | None = None, service: ServiceSettings | None = None
) -> NotifierSettings:
    """The notifier's settings (``settings``, or read from the environment), refused if unsafe."""
    return checked_settings(settings or NotifierSettings(), service or service_settings("notifier"))
