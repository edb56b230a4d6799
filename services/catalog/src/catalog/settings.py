"""The catalog's own settings, beside the shared service settings (documented in ``.env.example``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ember_shared.settings import (
    ServiceSettings,
    checked_settings,
    data_dir,
    env_int,
    env_str,
    refuse_to_start,
    service_settings,
)

CLOUDINARY_API = "https://api.cloudinary.com"
#: Where Cloudinary delivers an uploaded image from (``secure_url``).
CLOUDINARY_DELIVERY = "https://res.cloudinary.com"


def _media_root() -> Path:
    raw = env_str("MEDIA_ROOT")
    return Path(raw).resolve() if raw else data_dir() / "media"


@dataclass(frozen=True)
class CatalogSettings:
    #: Sellable units at or below which a product shows as "low stock".
    low_stock: int = field(default_factory=lambda: env_int("CATALOG_LOW_STOCK", 5))
    #: How long listings, product pages, categories and search answers stay in Redis.
    cache_ttl_seconds: int = field(
        default_factory=lambda: env_int("CATALOG_CACHE_TTL_SECONDS", 600)
    )
    #: How long one request may hold the rebuild lock of a cold key before others rebuild too.
    cache_lock_ms: int = field(default_factory=lambda: env_int("CATALOG_CACHE_LOCK_MS", 3000))
    #: How often each process checks its cache against Redis (replays invalidations an outage
    #: kept, notices a restarted Redis); a quarter of it while the cache is not trusted.
    cache_guard_interval_ms: int = field(
        default_factory=lambda: env_int("CATALOG_CACHE_GUARD_INTERVAL_MS", 1000)
    )
    #: Connections of the search's own pool, per process (kept, no overflow). They carry the
    #: search's settings (generic plans, table scans from the first page) from their start, so
    #: a search is two statements without a transaction around them; a pool of its own because
    #: those settings would change other statements' plans (a generic plan cannot use the
    #: reservations' partial index on ``status = 'active'``, nor see a LIMIT's value).
    #: As many as the service's pool by default: with fewer connections than concurrent
    #: searches, requests queue for one (8 for 16 at once measured slower than the old path).
    search_pool_size: int = field(
        default_factory=lambda: env_int(
            "CATALOG_SEARCH_POOL_SIZE", env_int("DATABASE_POOL_SIZE", 20)
        )
    )
    max_upload_bytes: int = field(
        default_factory=lambda: env_int("CATALOG_MAX_UPLOAD_BYTES", 5 * 1024 * 1024)
    )
    #: Largest width or height an uploaded image is stored at (bigger ones are scaled down).
    max_image_side: int = field(default_factory=lambda: env_int("CATALOG_MAX_IMAGE_SIDE", 2000))
    default_currency: str = field(default_factory=lambda: env_str("CATALOG_CURRENCY", "USD"))
    #: Bounds on the ``ttl_seconds`` checkout may ask for a reservation.
    reservation_min_ttl: int = field(
        default_factory=lambda: env_int("CATALOG_RESERVATION_MIN_TTL_SECONDS", 10)
    )
    reservation_max_ttl: int = field(
        default_factory=lambda: env_int("CATALOG_RESERVATION_MAX_TTL_SECONDS", 86_400)
    )
    #: How often the sweeper looks for reservations past their expiry.
    sweep_interval_seconds: float = field(
        default_factory=lambda: float(env_str("CATALOG_SWEEP_INTERVAL_SECONDS", "30"))
    )
    sweep_batch: int = field(default_factory=lambda: env_int("CATALOG_SWEEP_BATCH", 100))
    #: ``local`` (files under MEDIA_ROOT, served by Caddy at MEDIA_URL_PREFIX) or ``cloudinary``.
    media_store: str = field(default_factory=lambda: env_str("MEDIA_STORE", "local"))
    media_root: Path = field(default_factory=_media_root)
    media_url_prefix: str = field(default_factory=lambda: env_str("MEDIA_URL_PREFIX", "/media/"))
    #: ``cloudinary://<api_key>:<api_secret>@<cloud_name>``, as Cloudinary's console shows it.
    cloudinary_url: str = field(default_factory=lambda: env_str("CLOUDINARY_URL"))
    cloudinary_api_base: str = field(
        default_factory=lambda: env_str("CLOUDINARY_API_BASE", CLOUDINARY_API)
    )
    cloudinary_folder: str = field(default_factory=lambda: env_str("CLOUDINARY_FOLDER", "ember"))
    #: Where the gateway's Content-Security-Policy lets images come from besides the shop (the
    #: Caddyfile reads the same variable); the catalog only checks it in production.
    media_origin: str = field(default_factory=lambda: env_str("MEDIA_ORIGIN"))

    def validate(self, *, local: bool) -> None:
        if not local:
            refuse_to_start(self.production_problems())

    def production_problems(self) -> list[str]:
        """What a production catalog needs of its media settings and is missing."""
        if self.media_store == "local":
            return []
        if self.media_store != "cloudinary":
            return [f"MEDIA_STORE must be local or cloudinary (got {self.media_store!r})"]
        problems = []
        if not self.cloudinary_url.startswith("cloudinary://"):
            problems.append("CLOUDINARY_URL must be set (cloudinary://<key>:<secret>@<cloud>)")
        if self.cloudinary_api_base.rstrip("/") != CLOUDINARY_API:
            problems.append(f"CLOUDINARY_API_BASE must be {CLOUDINARY_API}, never a stand-in")
        # The pages' Content-Security-Policy (the Caddyfile's img-src) allows images from the
        # shop and MEDIA_ORIGIN only: without Cloudinary's delivery origin every image is blank.
        if CLOUDINARY_DELIVERY not in self.media_origin.split():
            problems.append(
                f"MEDIA_ORIGIN must include {CLOUDINARY_DELIVERY} when MEDIA_STORE=cloudinary "
                "(Caddy's Content-Security-Policy allows product images only from there)"
            )
        return problems


def load_settings(
    settings: CatalogSettings | None = None, service: ServiceSettings | None = None
) -> CatalogSettings:
    """The catalog's settings (``settings``, or read from the environment), refused if unsafe."""
    return checked_settings(settings or CatalogSettings(), service or service_settings("catalog"))
