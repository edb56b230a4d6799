"""Settings read from the environment, in small typed groups (litestar-fullstack's pattern).

Every service builds one :class:`ServiceSettings` with :func:`service_settings`; a service
with settings of its own adds a group beside it. Every variable read here is documented in
the repo's ``.env.example``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from ember_shared.cookies import ACCESS_COOKIE, CSRF_COOKIE

#: The least length of a secret key (HMAC keys, the service token) outside local mode.
MIN_SECRET_LENGTH = 32
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
#: The only modes a process starts in. ``local`` and ``test`` may use the stand-ins and their
#: public credentials; ``production`` never does.
MODES = ("local", "test", "production")


class SettingsError(RuntimeError):
    """A setting is missing, out of range or unsafe: the process must not start with it."""


def refuse_to_start(problems: list[str], mode: str = "production") -> None:
    """Raise one error naming every problem, so an operator fixes them all in one go."""
    if problems:
        raise SettingsError(
            f"Refusing to start in {mode} mode: " + "; ".join(dict.fromkeys(problems))
        )


def check_mode(mode: str) -> str:
    # A typo must never fall back to local mode (stand-ins and their public secrets).
    if mode not in MODES:
        raise SettingsError(f"EMBER_MODE must be one of {', '.join(MODES)} (got {mode!r})")
    return mode


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    return raw.strip().lower() in TRUE_WORDS if raw not in (None, "") else default


def repo_root() -> Path:
    """The checkout's top folder (where the workspace ``pyproject.toml`` lives)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "Caddyfile").exists() and (parent / "services").is_dir():
            return parent
    return Path.cwd()


def data_dir() -> Path:
    """Where embedded servers, media and keys live when nothing else is configured."""
    return Path(env_str("EMBER_DATA_DIR", str(repo_root() / ".data"))).resolve()


#: Local ports of every process of the stack; Caddy routes to them by path.
SERVICE_PORTS: dict[str, int] = {
    "storefront": 8100,
    "identity": 8101,
    "catalog": 8102,
    "cart": 8103,
    "checkout": 8104,
    "orders": 8105,
    "notifier": 8106,
    "stripe-standin": 8201,
    "resend-standin": 8202,
    "oidc-standin": 8203,
    "tracking-standin": 8204,
}


#: Caddy's port in local mode.
GATEWAY_PORT = 8080


def port_of(name: str) -> int:
    """A process's local port. ``EMBER_PORT_OFFSET`` shifts every port, so a second stack
    (the test suite's) can run beside the one ``make run`` started."""
    offset = env_int("EMBER_PORT_OFFSET", 0)
    return (GATEWAY_PORT if name == "gateway" else SERVICE_PORTS[name]) + offset


def service_url(name: str) -> str:
    """Base URL at which one service reaches another directly (never through Caddy)."""
    var = f"{name.upper().replace('-', '_')}_URL"
    return env_str(var, f"http://127.0.0.1:{port_of(name)}")


@dataclass(frozen=True)
class AppSettings:
    name: str
    #: ``local``/``test`` (plain HTTP, demo data, stand-ins) or ``production``; see :data:`MODES`.
    mode: str = field(default_factory=lambda: check_mode(env_str("EMBER_MODE") or "local"))
    public_url: str = field(default_factory=lambda: env_str("PUBLIC_URL", "http://localhost:8080"))
    #: Other origins the shop is served on (``PUBLIC_URL_ALIASES``, comma-separated, e.g. a LAN
    #: address). Outside production PUBLIC_URL's localhost/127.0.0.1 twin counts too.
    public_url_aliases: str = field(default_factory=lambda: env_str("PUBLIC_URL_ALIASES"))
    log_level: str = field(default_factory=lambda: env_str("LOG_LEVEL", "INFO"))
    log_format: str = field(default_factory=lambda: env_str("LOG_FORMAT", "json"))
    debug: bool = field(default_factory=lambda: env_bool("EMBER_DEBUG", False))
    #: How long a replica told to stop keeps serving while its liveness probe says ``draining``
    #: (:mod:`ember_shared.drain`); 0 stops at once (a lone process, Kubernetes' preStop pause).
    shutdown_drain_ms: int = field(default_factory=lambda: env_int("SHUTDOWN_DRAIN_MS", 0))

    def __post_init__(self) -> None:
        check_mode(self.mode)

    @property
    def is_local(self) -> bool:
        return self.mode != "production"

    @property
    def is_production(self) -> bool:
        return self.mode == "production"

    @property
    def public_origins(self) -> dict[str, str]:
        """Every origin the shop is served on, by its ``host[:port]``."""
        urls = [self.public_url, *(u for u in self.public_url_aliases.split(",") if u.strip())]
        if self.is_local:
            twins = {"localhost": "127.0.0.1", "127.0.0.1": "localhost"}
            main = urlsplit(self.public_url)
            if main.hostname in twins:
                urls.append(self.public_url.replace(main.hostname, twins[main.hostname], 1))
        origins: dict[str, str] = {}
        for url in urls:
            parts = urlsplit(url.strip().rstrip("/"))
            if parts.scheme in ("http", "https") and parts.netloc:
                origins.setdefault(parts.netloc.lower(), f"{parts.scheme}://{parts.netloc}")
        return origins

    def origin_for(self, host: str | None) -> str:
        """The origin a shopper on ``host`` (the request's Host) is sent back to after a trip to
        a provider: that host when it is one of :attr:`public_origins`, else PUBLIC_URL (an
        unlisted or forged Host never becomes a redirect target)."""
        found = self.public_origins.get((host or "").strip().lower())
        return found or self.public_url.rstrip("/")


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = field(default_factory=lambda: env_str("DATABASE_URL"))
    # Connections kept, not only allowed: an overflow connection is closed when it is returned
    # to a full pool, so 16 requests at once against 10 kept + 10 overflow opened 6 new backends
    # every burst, each of whose first statements cost Postgres 10-20 ms of planning and
    # catalog lookups (the same peak, 20, kept instead).
    pool_size: int = field(default_factory=lambda: env_int("DATABASE_POOL_SIZE", 20))
    max_overflow: int = field(default_factory=lambda: env_int("DATABASE_MAX_OVERFLOW", 0))
    echo: bool = field(default_factory=lambda: env_bool("DATABASE_ECHO", False))

    @property
    def async_url(self) -> str:
        """The URL with the asyncpg driver, whatever scheme it was given in."""
        return with_driver(self.url, "asyncpg")


@dataclass(frozen=True)
class RedisSettings:
    url: str = field(default_factory=lambda: env_str("REDIS_URL"))


@dataclass(frozen=True)
class AuthSettings:
    #: Where identity publishes its public keys; other services verify tokens with them.
    jwks_url: str = field(
        default_factory=lambda: env_str(
            "AUTH_JWKS_URL", service_url("identity") + "/.well-known/jwks.json"
        )
    )
    issuer: str = field(default_factory=lambda: env_str("AUTH_ISSUER", "ember-identity"))
    audience: str = field(default_factory=lambda: env_str("AUTH_AUDIENCE", "ember"))
    #: PEM public key, used instead of the JWKS URL when set (tests, offline deploys).
    public_key_pem: str = field(default_factory=lambda: env_str("AUTH_PUBLIC_KEY_PEM"))
    access_cookie: str = ACCESS_COOKIE
    csrf_cookie: str = CSRF_COOKIE
    csrf_header: str = "X-CSRF-Token"
    #: Shared secret a service presents on ``/internal/...`` routes of another.
    service_token: str = field(default_factory=lambda: env_str("INTERNAL_SERVICE_TOKEN"))
    #: Key of the session-bound CSRF tokens (:mod:`ember_shared.csrf`), the same in every
    #: service; when unset, one derived from the service token.
    csrf_secret: str = field(default_factory=lambda: env_str("AUTH_CSRF_SECRET"))

    @property
    def csrf_key(self) -> bytes:
        from ember_shared.csrf import derive_csrf_key

        return derive_csrf_key(self.service_token, self.csrf_secret)


def reclaim_every_ms(reclaim_idle_ms: int) -> int:
    """The default reclaim check: a message waits ``reclaim_idle_ms`` before it may be claimed
    again, so a check every second (one XAUTOCLAIM per handled stream and replica, ~17 a second
    on an idle stack) only made that wait a little more exact. A sixth of it, 1 to 5 s."""
    return min(5_000, max(1_000, reclaim_idle_ms // 6))


@dataclass(frozen=True)
class EventSettings:
    relay_interval_ms: int = field(default_factory=lambda: env_int("EVENTS_RELAY_INTERVAL_MS", 200))
    #: The relay's poll while its LISTEN connection is up: commits wake it, so the poll only
    #: catches what no NOTIFY announced (a replica's rolled-back pass); never below the above.
    relay_listening_interval_ms: int = field(
        default_factory=lambda: env_int("EVENTS_RELAY_LISTENING_INTERVAL_MS", 2_000)
    )
    relay_batch: int = field(default_factory=lambda: env_int("EVENTS_RELAY_BATCH", 100))
    #: Messages pending longer than this are claimed again from a consumer that died.
    reclaim_idle_ms: int = field(default_factory=lambda: env_int("EVENTS_RECLAIM_IDLE_MS", 30_000))
    max_deliveries: int = field(default_factory=lambda: env_int("EVENTS_MAX_DELIVERIES", 5))
    stream_maxlen: int = field(default_factory=lambda: env_int("EVENTS_STREAM_MAXLEN", 100_000))
    #: How often a consumer looks for messages left pending longer than ``reclaim_idle_ms``;
    #: by default a sixth of that, 1 to 5 s (see :func:`reclaim_every_ms`).
    reclaim_interval_ms: int = field(
        default_factory=lambda: env_int(
            "EVENTS_RECLAIM_INTERVAL_MS",
            reclaim_every_ms(env_int("EVENTS_RECLAIM_IDLE_MS", 30_000)),
        )
    )
    #: Messages a consumer takes per read; a consumer that dies strands at most this many.
    read_batch: int = field(default_factory=lambda: env_int("EVENTS_READ_BATCH", 10))
    #: Where a new consumer group starts: ``0`` also takes what was published before the
    #: service first started (nothing is lost to start-up order); ``$`` only what comes after.
    group_start_id: str = field(default_factory=lambda: env_str("EVENTS_GROUP_START_ID", "0"))
    #: Longest pause between relay attempts while Postgres or Redis is down.
    relay_max_backoff_ms: int = field(
        default_factory=lambda: env_int("EVENTS_RELAY_MAX_BACKOFF_MS", 5_000)
    )
    #: Wake the relay with LISTEN/NOTIFY when an outbox row commits (polling stays as a fallback).
    relay_listen: bool = field(default_factory=lambda: env_bool("EVENTS_RELAY_LISTEN", True))
    #: How long Redis remembers a published event id, so a re-sent row is not published twice.
    publish_dedupe_ttl_s: int = field(
        default_factory=lambda: env_int("EVENTS_PUBLISH_DEDUPE_TTL_S", 86_400)
    )
    #: Published outbox rows are deleted after this many hours.
    outbox_retention_hours: int = field(
        default_factory=lambda: env_int("EVENTS_OUTBOX_RETENTION_HOURS", 168)
    )
    #: On shutdown, how long in-flight handlers may run before they are cancelled.
    shutdown_grace_ms: int = field(
        default_factory=lambda: env_int("EVENTS_SHUTDOWN_GRACE_MS", 10_000)
    )


@dataclass(frozen=True)
class ServiceSettings:
    app: AppSettings
    db: DatabaseSettings
    redis: RedisSettings
    auth: AuthSettings
    events: EventSettings

    @property
    def schema(self) -> str:
        """Each service keeps its tables in a Postgres schema of its own name."""
        return self.app.name

    def production_problems(self) -> list[str]:
        """What production needs of every service and is missing (empty outside production)."""
        if not self.app.is_production:
            return []
        problems = [
            f"{name} must be set"
            for name, value in (
                ("DATABASE_URL", self.db.url),
                ("REDIS_URL", self.redis.url),
                ("PUBLIC_URL", env_str("PUBLIC_URL")),
            )
            if not value
        ]
        if len(self.auth.service_token) < 32:
            problems.append("INTERNAL_SERVICE_TOKEN must be set (at least 32 characters)")
        if self.app.debug:
            problems.append("EMBER_DEBUG must be off")
        return problems


def read_service_settings(name: str) -> ServiceSettings:
    """The shared groups as the environment says now (:func:`service_settings` keeps one)."""
    return ServiceSettings(
        app=AppSettings(name=name),
        db=DatabaseSettings(),
        redis=RedisSettings(),
        auth=AuthSettings(),
        events=EventSettings(),
    )


#: The shared groups of one service, read once per process (tests ``cache_clear()`` it).
service_settings = cache(read_service_settings)


class OwnSettings(Protocol):
    """A service's own settings group, as :func:`checked_settings` takes it."""

    def production_problems(self) -> list[str]: ...

    def validate(self, *, local: bool) -> None: ...


OwnT = TypeVar("OwnT", bound=OwnSettings)


def checked_settings(own: OwnT, service: ServiceSettings) -> OwnT:
    """``own`` if the process may start with it beside ``service``; else a :class:`SettingsError`.

    Every service's ``load_settings()`` ends here, so they all refuse alike: in production one
    error names every problem of both groups, then ``own`` checks its ranges.
    """
    if service.app.is_production:
        refuse_to_start(service.production_problems() + own.production_problems())
    own.validate(local=service.app.is_local)
    return own


def with_driver(url: str, driver: str) -> str:
    """A Postgres URL with SQLAlchemy's ``driver`` (asyncpg, psycopg), whatever scheme it has."""
    for prefix in (
        "postgresql+asyncpg://",
        "postgresql+psycopg://",
        "postgresql://",
        "postgres://",
    ):
        if url.startswith(prefix):
            return f"postgresql+{driver}://" + url[len(prefix) :]
    return url
