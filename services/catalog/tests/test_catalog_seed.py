"""The demo catalog `make run` loads: believable, complete, shipped images, loaded only once."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from catalog import seed as seed_module
from catalog.inventory.repositories import Stock
from catalog.media.store import LocalDiskStore
from catalog.models import Category, Inventory, Product, ProductImage, Variant
from catalog.products.repositories import ProductReads, SearchPlan
from catalog_testkit import Kit
from litestar import Litestar
from sqlalchemy import func, select, text

DEMO_IMAGES = Path(seed_module.__file__).parent / "demo" / "images"


def test_the_demo_assets_are_small_and_complete() -> None:
    data = seed_module.demo_data()
    files = {p.name for p in DEMO_IMAGES.glob("*.webp")}
    assert len(data["categories"]) >= 4
    assert len(data["products"]) >= 14
    for product in data["products"]:
        assert f"{product['slug']}.webp" in files
        assert product["description"]
        assert isinstance(product["price"], int)
        assert product["price"] > 0
        if product["roast"]:
            assert f"beans-{product['roast']}.webp" in files
    assert sum(p.stat().st_size for p in DEMO_IMAGES.glob("*")) < 1_500_000


async def test_the_demo_catalog_loads_into_an_empty_catalog(
    catalog_app: Litestar, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    store = LocalDiskStore(tmp_path / "media")
    settings = catalog_app.state.catalog_settings
    async with catalog_app.state.catalog_sessions() as session, session.begin():
        # An empty catalog for the length of this transaction only (rolled back below).
        await session.execute(text("TRUNCATE catalog.products, catalog.categories CASCADE"))
        assert await seed_module.load_demo(session, store, settings)
        products = (await session.scalars(select(Product))).all()
        assert len(products) == 20
        assert {p.currency for p in products} == {"USD"}
        categories = (
            await session.scalars(select(Category).order_by(Category.display_order))
        ).all()
        assert [c.slug for c in categories] == [
            "single-origin",
            "blends",
            "espresso",
            "decaf",
            "brewing-gear",
        ]
        stock = {
            row.variant_id: Stock(row.on_hand, row.reserved, row.product_id)
            for row in (
                await session.execute(
                    select(
                        Inventory.variant_id,
                        Inventory.product_id,
                        Inventory.on_hand,
                        Inventory.reserved,
                    )
                )
            )
        }
        # Every product has its default variant (its own id); coffees are sold ground or
        # whole, by the bag or the kilo (the rare lot by the bag only); gear as one item.
        assert {p.id for p in products} <= set(stock)
        variants = (await session.scalars(select(Variant).order_by(Variant.position))).all()
        by_product: dict[uuid.UUID, list[Variant]] = {}
        for variant in variants:
            by_product.setdefault(variant.product_id, []).append(variant)
        for product in products:
            mine = by_product[product.id]
            assert mine[0].id == product.id
            assert mine[0].price == product.price
            assert product.price == min(v.price for v in mine)
            if product.roast:
                assert [o["name"] for o in product.options] == ["Grind", "Size"]
                assert len(mine) in (3, 6)
                assert len({tuple(v.option_values) for v in mine}) == len(mine)
            else:
                assert product.options == []
                assert [v.option_values for v in mine] == [[]]
        ethiopia = next(p for p in products if p.slug == "ethiopia-yirgacheffe")
        kilo = next(v for v in by_product[ethiopia.id] if v.option_values == ["Espresso", "1 kg"])
        assert (kilo.sku, kilo.weight_grams) == ("ethiopia-yirgacheffe-es-1kg", 1000)
        assert kilo.price > ethiopia.price
        assert len(stock) == len(variants)
        assert any(s.available == 0 for s in stock.values())
        assert any(0 < s.available <= settings.low_stock for s in stock.values())
        primaries = await session.scalar(
            select(func.count()).select_from(ProductImage).where(ProductImage.is_primary)
        )
        assert primaries == 20
        for image in (await session.scalars(select(ProductImage))).all():
            assert image.url.startswith("/media/products/")
            assert store.path_of(image.storage_key).exists()
        reads = ProductReads(session)
        words = ["yirg"]
        rows, _ = await reads.search(
            SearchPlan(words, await reads.fuzzy_words(words)), limit=5, offset=0
        )
        assert [r.slug for r in rows] == ["ethiopia-yirgacheffe"]
        words = ["etiopia"]
        rows, _ = await reads.search(
            SearchPlan(words, await reads.fuzzy_words(words)), limit=5, offset=0
        )
        assert rows[0].slug == "ethiopia-yirgacheffe"
        # Loading again finds products and does nothing.
        assert not await seed_module.load_demo(session, store, settings)
        await session.rollback()


async def test_seed_leaves_a_catalog_with_products_alone(kit: Kit, catalog_app: Litestar) -> None:
    await kit.product()
    async with catalog_app.state.catalog_sessions() as session:
        before = await session.scalar(select(func.count()).select_from(Product))
    await seed_module.seed()
    async with catalog_app.state.catalog_sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Product)) == before
