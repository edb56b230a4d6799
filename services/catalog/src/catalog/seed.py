"""The demo catalog: a believable coffee shop, loaded by ``make run`` into an empty catalog.

Five categories, twenty coffees and brewing tools with descriptions, prices, stock (some low,
one sold out) and the images shipped in ``catalog/demo/images`` (copied into the media store).
Nothing happens when the catalog already has products, so it is safe to call on every start,
from any number of replicas at once (an advisory lock serialises them).

    uv run python -m catalog.seed
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from importlib import resources
from typing import Any

import structlog
from ember_shared.app import redis_client
from ember_shared.db import make_engine
from ember_shared.ids import new_id
from ember_shared.settings import service_settings
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from catalog.audit.recorder import AuditLog
from catalog.cache import CatalogCache
from catalog.inventory.repositories import InventoryRepository
from catalog.media.store import MediaStore, media_store
from catalog.models import Category, Product, ProductImage, Variant
from catalog.settings import CatalogSettings
from catalog.variants.services import add_default_variant

log = structlog.get_logger("catalog.seed")

DEMO_PACKAGE = "catalog.demo"


def demo_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        resources.files(DEMO_PACKAGE).joinpath("catalog.json").read_text()
    )
    return data


def demo_image(name: str) -> bytes:
    return resources.files(DEMO_PACKAGE).joinpath("images", name).read_bytes()


async def _store(store: MediaStore, name: str) -> tuple[str, str]:
    data = demo_image(name)
    key = f"products/{hashlib.sha256(data).hexdigest()[:32]}.webp"
    stored = await store.put(key, data, "image/webp")
    return stored.key, stored.url


async def load_demo(session: AsyncSession, store: MediaStore, settings: CatalogSettings) -> bool:
    """Insert the demo catalog in ``session``'s transaction; False if products already exist."""
    # Replicas starting together: one loads, the others then find products and skip.
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('catalog:seed'))"))
    if await session.scalar(select(func.count()).select_from(Product)):
        return False
    data = demo_data()
    categories: dict[str, Category] = {}
    for order, raw in enumerate(data["categories"]):
        category = Category(
            slug=raw["slug"], name=raw["name"], description=raw["description"], display_order=order
        )
        session.add(category)
        categories[raw["slug"]] = category
    await session.flush()
    for raw in data["products"]:
        product = Product(
            slug=raw["slug"],
            name=raw["name"],
            summary=raw["summary"],
            description=raw["description"],
            price=raw["price"],
            currency=settings.default_currency,
            category_id=categories[raw["category"]].id,
            origin=raw["origin"],
            roast=raw["roast"],
            process=raw["process"],
            tasting_notes=raw["tasting_notes"],
            weight_grams=raw["weight_grams"],
        )
        session.add(product)
        await session.flush()
        if raw["roast"]:
            await _coffee_variants(session, product, raw["on_hand"])
        else:
            await add_default_variant(session, product, raw["on_hand"])
        pictures = [(f"{raw['slug']}.webp", f"A bag of {raw['name']}")]
        if raw["roast"]:
            pictures[0] = (pictures[0][0], f"A bag of {raw['name']} coffee")
            pictures.append(
                (
                    f"beans-{raw['roast']}.webp",
                    f"{raw['roast'].replace('-', ' ').capitalize()} roast beans",
                )
            )
        else:
            pictures[0] = (pictures[0][0], raw["name"])
        for position, (name, alt) in enumerate(pictures):
            key, url = await _store(store, name)
            session.add(
                ProductImage(
                    product_id=product.id,
                    url=url,
                    storage_key=key,
                    alt=alt,
                    position=position,
                    is_primary=position == 0,
                )
            )
    await session.flush()
    await AuditLog(session).record(
        None,
        "catalog.seeded",
        "catalog",
        "demo",
        after={"categories": len(data["categories"]), "products": len(data["products"])},
    )
    return True


GRINDS = (("Whole bean", "wb"), ("Filter", "fi"), ("Espresso", "es"))
#: A kilo costs this share of four and a bit bags at the bag's price.
KILO_PRICE_SHARE = 0.85


def _round_price(minor: float) -> int:
    """To the next 50 minor units (prices end in .00 or .50)."""
    return int(-(-minor // 50) * 50)


async def _coffee_variants(session: AsyncSession, product: Product, on_hand: int) -> None:
    """A coffee sold as shops sell coffee: whole bean or ground for filter or espresso, in its
    bag or by the kilo. Whole bean in the bag is the default variant (the product's id, price
    and stock), so what the demo sold before variants is still sold the same."""
    bag = product.weight_grams or 340
    sizes = [(f"{bag} g", f"{bag}g", bag, product.price)]
    if product.price < 3000:  # the rare lots are sold by the bag only
        kilo = _round_price(product.price * 1000 / bag * KILO_PRICE_SHARE)
        sizes.append(("1 kg", "1kg", 1000, kilo))
    product.options = [
        {"name": "Grind", "values": [name for name, _ in GRINDS]},
        {"name": "Size", "values": [label for label, _, _, _ in sizes]},
    ]
    inventory = InventoryRepository(session)
    position = 0
    for grind, grind_code in GRINDS:
        for label, size_code, grams, price in sizes:
            default = position == 0
            variant = Variant(
                id=product.id if default else new_id(),
                product_id=product.id,
                sku=f"{product.slug}-{grind_code}-{size_code}",
                price=price,
                weight_grams=grams,
                active=True,
                position=position,
                option_values=[grind, label],
            )
            session.add(variant)
            await session.flush()
            stock = on_hand if default else on_hand // (2 if grams == bag else 4)
            await inventory.create(variant.id, product.id, stock)
            position += 1


async def seed() -> None:
    """Load the demo catalog unless the catalog already has products (``make run`` calls it)."""
    settings = service_settings("catalog")
    catalog = CatalogSettings()
    engine = make_engine(settings)
    redis = redis_client(settings)
    store = media_store(catalog)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
            loaded = await load_demo(session, store, catalog)
        if loaded:
            cache = CatalogCache(
                redis, ttl_seconds=catalog.cache_ttl_seconds, lock_ms=catalog.cache_lock_ms
            )
            await cache.invalidate_everything()
            log.info("demo_catalog_loaded", products=len(demo_data()["products"]))
        else:
            log.info("demo_catalog_skipped", reason="the catalog already has products")
    finally:
        await redis.aclose()
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(seed())
