"""Identity's own settings, beside the shared :class:`~ember_shared.settings.ServiceSettings`.

Every variable is documented in the repo's ``.env.example`` under ``# identity``. They are read
when the app is created (not cached), so a test can set the environment and build a fresh app.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ember_shared.sealing import PUBLIC_KEY_VAR
from ember_shared.settings import (
    ServiceSettings,
    checked_settings,
    env_int,
    env_str,
    read_service_settings,
    refuse_to_start,
    service_url,
)

#: The local Google stand-in's client credentials (standins.oidc accepts these by default).
STANDIN_CLIENT_ID = "ember-local"
STANDIN_CLIENT_SECRET = "ember-local-secret"  # noqa: S105 - a public, local-only test credential
GOOGLE_ISSUER = "https://accounts.google.com"
#: ``HIBP_API_URL`` value that means "never call out: use the shipped list only".
HIBP_OFFLINE = "offline"


def _google_client_id() -> str:
    return env_str("GOOGLE_CLIENT_ID") or STANDIN_CLIENT_ID


def _google_client_secret() -> str:
    if env_str("GOOGLE_CLIENT_ID"):
        return env_str("GOOGLE_CLIENT_SECRET")
    return env_str("GOOGLE_CLIENT_SECRET") or STANDIN_CLIENT_SECRET


def _google_issuer() -> str:
    # With no client id of our own, Google itself would refuse us: use the local stand-in.
    default = GOOGLE_ISSUER if env_str("GOOGLE_CLIENT_ID") else service_url("oidc-standin")
    return env_str("GOOGLE_ISSUER", default).rstrip("/")


@dataclass(frozen=True)
class IdentitySettings:
    #: Ed25519 private key (PKCS8 PEM) that signs access tokens. Empty in local mode: one is
    #: generated once and kept under the data folder.
    signing_key_pem: str = field(default_factory=lambda: env_str("IDENTITY_SIGNING_KEY_PEM"))
    signing_key_id: str = field(
        default_factory=lambda: env_str("IDENTITY_SIGNING_KEY_ID", "ember-identity-1")
    )
    access_token_ttl: int = field(default_factory=lambda: env_int("ACCESS_TOKEN_TTL", 300))
    #: A session (refresh token) lives this long after its last use (sliding).
    session_ttl_days: int = field(default_factory=lambda: env_int("SESSION_TTL_DAYS", 30))

    password_min_length: int = field(default_factory=lambda: env_int("PASSWORD_MIN_LENGTH", 10))
    password_max_length: int = 128
    # argon2-cffi's defaults (RFC 9106 "low memory" profile); a change is applied to each
    # account's hash at its next sign-in.
    argon2_time_cost: int = field(default_factory=lambda: env_int("ARGON2_TIME_COST", 3))
    argon2_memory_cost: int = field(default_factory=lambda: env_int("ARGON2_MEMORY_COST", 65536))
    argon2_parallelism: int = field(default_factory=lambda: env_int("ARGON2_PARALLELISM", 4))

    #: Pwned Passwords range API; ``offline`` (or empty) uses only the shipped list.
    hibp_api_url: str = field(
        default_factory=lambda: env_str("HIBP_API_URL", "https://api.pwnedpasswords.com")
    )
    hibp_timeout_ms: int = field(default_factory=lambda: env_int("HIBP_TIMEOUT_MS", 2000))

    login_window_seconds: int = field(
        default_factory=lambda: env_int("LOGIN_RATE_WINDOW_SECONDS", 900)
    )
    login_max_per_ip: int = field(default_factory=lambda: env_int("LOGIN_RATE_MAX_PER_IP", 30))
    login_max_per_account: int = field(
        default_factory=lambda: env_int("LOGIN_RATE_MAX_PER_ACCOUNT", 10)
    )
    #: Failures per account from all addresses together before the account is refused for the
    #: rest of the window: a backstop far above what the growing delays let through.
    login_account_ceiling: int = field(
        default_factory=lambda: env_int("LOGIN_RATE_ACCOUNT_CEILING", 100)
    )
    #: Longest wait between two tries on an account past its free failures (seconds).
    login_delay_cap_s: int = field(default_factory=lambda: env_int("LOGIN_DELAY_CAP_SECONDS", 30))
    #: Registration, password-reset requests and resets, per client address and window.
    sensitive_max_per_ip: int = field(default_factory=lambda: env_int("AUTH_RATE_MAX_PER_IP", 20))

    reset_token_ttl_minutes: int = field(
        default_factory=lambda: env_int("PASSWORD_RESET_TTL_MINUTES", 30)
    )
    #: How long the emailed link that finishes a sign-up works.
    sign_up_ttl_hours: int = field(default_factory=lambda: env_int("SIGN_UP_TTL_HOURS", 24))

    google_client_id: str = field(default_factory=_google_client_id)
    google_client_secret: str = field(default_factory=_google_client_secret)
    google_issuer: str = field(default_factory=_google_issuer)
    #: Where the provider sends the browser back; empty means ``{PUBLIC_URL}/api/auth/google/callback``.
    google_redirect_uri: str = field(default_factory=lambda: env_str("GOOGLE_REDIRECT_URI"))

    admin_email: str = field(default_factory=lambda: env_str("ADMIN_EMAIL"))
    admin_password: str = field(default_factory=lambda: env_str("ADMIN_PASSWORD"))

    def validate(self, *, local: bool) -> None:
        if not local:
            refuse_to_start(self.production_problems())

    def production_problems(self) -> list[str]:
        """Why this configuration must not run in production (names every setting at fault)."""
        problems: list[str] = []
        if not self.signing_key_pem:
            problems.append("IDENTITY_SIGNING_KEY_PEM must be set")
        if not env_str("GOOGLE_CLIENT_ID") or self.google_client_id == STANDIN_CLIENT_ID:
            problems.append("GOOGLE_CLIENT_ID must be set to the shop's Google OAuth client")
        if not env_str("GOOGLE_CLIENT_SECRET") or self.google_client_secret == (
            STANDIN_CLIENT_SECRET
        ):
            problems.append("GOOGLE_CLIENT_SECRET must be set to the shop's Google OAuth secret")
        standin = service_url("oidc-standin").rstrip("/")
        if self.google_issuer == standin or not self.google_issuer.startswith("https://"):
            problems.append("GOOGLE_ISSUER must be an https issuer, never the local stand-in")
        if not env_str(PUBLIC_KEY_VAR):
            problems.append(f"{PUBLIC_KEY_VAR} must be set (the notifier's mail sealing key)")
        if self.hibp_offline:
            problems.append("HIBP_API_URL must not be offline (breached passwords go unseen)")
        return problems

    @property
    def hibp_offline(self) -> bool:
        return self.hibp_api_url.strip().lower() in ("", HIBP_OFFLINE)

    @property
    def session_ttl_seconds(self) -> int:
        return self.session_ttl_days * 86400


def load_settings(
    settings: IdentitySettings | None = None, service: ServiceSettings | None = None
) -> IdentitySettings:
    """Identity's settings (``settings``, or read from the environment), refused if unsafe.

    The shared groups are read afresh too (not cached), so a test can set the environment and
    build a fresh app.
    """
    return checked_settings(
        settings or IdentitySettings(), service or read_service_settings("identity")
    )
