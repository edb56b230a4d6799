"""Product rules: what shoppers read (built as JSON bytes for the cache) and admin changes."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from ember_shared.auth import Principal
from ember_shared.pagination import pages_for, window
from ember_shared.problems import Problem, not_found
from msgspec import UNSET
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.audit.recorder import AuditedAdmin, snapshot
from catalog.cache import CatalogCache
from catalog.categories.repositories import CategoryRepository
from catalog.fields import availability_of, slugify
from catalog.inventory.repositories import Stock
from catalog.models import Product, ProductImage
from catalog.products.repositories import (
    ImageRepository,
    ProductReads,
    ProductRepository,
    SearchPlan,
)
from catalog.products.schemas import (
    AdminProduct,
    CategoryRef,
    ImageCreate,
    ImageRef,
    ImageUpdate,
    ProductCreate,
    ProductDetail,
    ProductImageOut,
    ProductPage,
    ProductSummary,
    ProductUpdate,
    SearchResult,
    StockOut,
)
from catalog.settings import CatalogSettings
from catalog.variants.repositories import VariantRepository
from catalog.variants.services import add_default_variant, admin_variants, options_of, variants_out

_encode = msgspec.json.Encoder().encode

#: Product columns an audit record keeps.
AUDITED_FIELDS = (
    "id",
    "slug",
    "name",
    "summary",
    "description",
    "price",
    "currency",
    "category_id",
    "active",
    "archived_at",
    "origin",
    "roast",
    "process",
    "tasting_notes",
    "weight_grams",
)
IMAGE_FIELDS = ("id", "product_id", "url", "storage_key", "alt", "position", "is_primary")

_WORD = re.compile(r"[^\W_]+")
#: As ``catalog.variants.schemas.Sku`` admits them.
_SKU = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,119}")
MAX_QUERY_WORDS = 8
MAX_WORD_LENGTH = 40


def _category(row: Row[Any]) -> CategoryRef | None:
    if row.category_id is None:
        return None
    return CategoryRef(id=row.category_id, slug=row.category_slug, name=row.category_name)


def summary_from(row: Row[Any], low_stock: int) -> ProductSummary:
    return ProductSummary(
        id=row.id,
        slug=row.slug,
        name=row.name,
        summary=row.summary,
        price=row.price,
        currency=row.currency,
        availability=availability_of(row.available, low_stock),
        category=_category(row),
        image=ImageRef(url=row.image_url, alt=row.image_alt) if row.image_url else None,
        origin=row.origin,
        roast=row.roast,
        tasting_notes=list(row.tasting_notes or []),
        hover_image=ImageRef(url=row.hover_url, alt=row.hover_alt) if row.hover_url else None,
    )


def query_sku(q: str) -> str:
    """The query as a variant's SKU (lowercased: SKUs are unique case-insensitively), when it
    can be one; else empty."""
    candidate = q.strip()
    return candidate.lower() if _SKU.fullmatch(candidate) else ""


def query_words(q: str) -> list[str]:
    """The words of a search, lowercased, deduplicated, bounded."""
    words = [w[:MAX_WORD_LENGTH] for w in _WORD.findall(q.lower())]
    return list(dict.fromkeys(words))[:MAX_QUERY_WORDS]


class ProductCatalog:
    """The shopper read path: each method answers the JSON body to cache and send."""

    def __init__(self, session: AsyncSession, settings: CatalogSettings) -> None:
        self.reads = ProductReads(session)
        self.variants = VariantRepository(session)
        self.low_stock = settings.low_stock

    async def listing(
        self, *, page: int, page_size: int, category: str | None, sort: str
    ) -> tuple[bytes, bool]:
        """The page's body, and whether it is worth caching (pages past the last are not: they
        are cheap to answer and there are arbitrarily many of them)."""
        category_id = None
        if category is not None:
            category_id = await self.reads.category_id_by_slug(category)
            if category_id is None:
                raise not_found("category", f"There is no category {category!r}.")
        rows, total = await self.reads.listing(
            category_id=category_id, sort=sort, **window(page, page_size)
        )
        pages = pages_for(total, page_size)
        body = _encode(
            ProductPage(
                items=[summary_from(row, self.low_stock) for row in rows],
                page=page,
                page_size=page_size,
                total=total,
                pages=pages,
                sort=sort,  # type: ignore[arg-type]
                category=category.lower() if category else None,
            )
        )
        return body, page <= pages

    async def detail(
        self, *, slug: str | None = None, product_id: uuid.UUID | None = None
    ) -> tuple[bytes, uuid.UUID]:
        """The product page's body, and the product's id (its cache entries are filed by it)."""
        row, images = await self.reads.detail(slug=slug, product_id=product_id)
        if row is None:
            raise not_found("product", "There is no such product, or it is no longer sold.")
        variants = await self.variants.on_sale(row.id)
        body = _encode(
            ProductDetail(
                id=row.id,
                slug=row.slug,
                name=row.name,
                summary=row.summary,
                description=row.description,
                price=row.price,
                currency=row.currency,
                availability=availability_of(row.available, self.low_stock),
                category=_category(row),
                images=[
                    ProductImageOut(
                        id=image.id,
                        url=image.url,
                        alt=image.alt,
                        position=image.position,
                        primary=image.is_primary,
                    )
                    for image in images
                ],
                origin=row.origin,
                roast=row.roast,
                process=row.process,
                tasting_notes=list(row.tasting_notes or []),
                weight_grams=row.weight_grams,
                updated_at=row.updated_at,
                options=options_of(row),
                variants=variants_out(variants, self.low_stock),
            )
        )
        return body, row.id

    async def search(
        self, *, words: list[str], page: int, page_size: int, sku: str = ""
    ) -> tuple[bytes, bool]:
        """The result's body, and whether it is worth caching: only results with products
        (queries are unbounded; junk ones should not fill Redis). ``sku``: the query as a
        variant's SKU (``query_sku``); the product selling that variant comes first, naming it."""
        rows: Sequence[Row[Any]] = []
        total = 0
        matched: list[str] = []
        if words:
            async with self.reads.generic_plans():
                typos = await self.reads.typo_words(words)
                plan = SearchPlan(words, typos.found, sku, typos.widen, typos.frequency)
                rows, total = await self.reads.search(plan, **window(page, page_size))
            matched = plan.matched_words
        items = []
        for row in rows:
            item = summary_from(row, self.low_stock)
            if row.sku_match:
                item.variant_sku = sku
            items.append(item)
        body = _encode(
            SearchResult(
                query=" ".join(words),
                items=items,
                page=page,
                page_size=page_size,
                total=total,
                pages=pages_for(total, page_size),
                matched_words=matched,
            )
        )
        return body, bool(rows)


def image_out(image: ProductImage) -> ProductImageOut:
    return ProductImageOut(
        id=image.id, url=image.url, alt=image.alt, position=image.position, primary=image.is_primary
    )


def admin_product(
    product: Product, images: Sequence[ProductImage], variants: Sequence[Any], low_stock: int
) -> AdminProduct:
    on_sale = [v for v in variants if v.active]
    stock = Stock(sum(v.on_hand for v in on_sale), sum(v.reserved for v in on_sale), product.id)
    return AdminProduct(
        id=product.id,
        slug=product.slug,
        name=product.name,
        summary=product.summary,
        description=product.description,
        price=product.price,
        currency=product.currency,
        category_id=product.category_id,
        active=product.active,
        archived_at=product.archived_at,
        origin=product.origin,
        roast=product.roast,
        process=product.process,
        tasting_notes=list(product.tasting_notes or []),
        weight_grams=product.weight_grams,
        images=[image_out(i) for i in images],
        stock=StockOut(
            on_hand=stock.on_hand,
            reserved=stock.reserved,
            available=stock.available,
            availability=availability_of(stock.available, low_stock),
        ),
        created_at=product.created_at,
        updated_at=product.updated_at,
        options=options_of(product),
        variants=admin_variants(variants, low_stock),
    )


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


class ProductAdmin(AuditedAdmin):
    """Admin changes to products and their images. Each is audited in the same transaction and
    invalidates, on commit, the cached answers it makes stale."""

    def __init__(
        self,
        session: AsyncSession,
        cache: CatalogCache,
        settings: CatalogSettings,
        actor: Principal | None,
    ) -> None:
        super().__init__(session, cache, settings, actor)
        self.products = ProductRepository(session=session, auto_expunge=False)
        self.images = ImageRepository(session=session)
        self.categories = CategoryRepository(session=session)
        self.variants = VariantRepository(session)

    # --- reading -------------------------------------------------------------------------

    async def get(self, product_id: uuid.UUID) -> Product:
        product = await self.products.get_one_or_none(id=product_id)
        if product is None:
            raise not_found("product")
        return product

    async def view(self, product: Product) -> AdminProduct:
        images = await self.images.of_product(product.id)
        variants = (await self.variants.with_stock([product.id]))[product.id]
        return admin_product(product, images, variants, self.settings.low_stock)

    async def page(
        self,
        *,
        page: int,
        page_size: int,
        category_id: uuid.UUID | None,
        status: str,
        q: str | None,
    ) -> tuple[list[AdminProduct], int]:
        products, total = await self.products.admin_page(
            **window(page, page_size),
            category_id=category_id,
            status=status,
            q=q,
        )
        ids = [p.id for p in products]
        images = await self.images.of_products(ids)
        variants = await self.variants.with_stock(ids)
        return (
            [
                admin_product(p, images[p.id], variants[p.id], self.settings.low_stock)
                for p in products
            ],
            total,
        )

    # --- products ------------------------------------------------------------------------

    async def _check_category(self, category_id: uuid.UUID | None) -> None:
        if (
            category_id is not None
            and await self.categories.get_one_or_none(id=category_id) is None
        ):
            raise Problem(400, "unknown-category", f"There is no category with id {category_id}.")

    async def _check_slug(self, slug: str, excluding: uuid.UUID | None = None) -> str:
        slug = slug.lower()
        if _is_uuid(slug):
            raise Problem(400, "invalid-slug", "A slug may not look like a product id.")
        if await self.products.slug_taken(slug, excluding=excluding):
            raise Problem(409, "duplicate-slug", f"Another product already uses the slug {slug!r}.")
        return slug

    async def _free_slug(self, name: str) -> str:
        base = slugify(name, 110) or "product"
        taken = await self.products.slugs_like(base)
        if base not in taken and not _is_uuid(base):
            return base
        n = 2
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    async def create(self, data: ProductCreate) -> Product:
        await self._check_category(data.category_id)
        slug = await self._check_slug(data.slug) if data.slug else await self._free_slug(data.name)
        product = Product(
            slug=slug,
            name=data.name.strip(),
            summary=data.summary.strip(),
            description=data.description.strip(),
            price=data.price,
            currency=data.currency or self.settings.default_currency,
            category_id=data.category_id,
            active=data.active,
            origin=data.origin.strip(),
            roast=data.roast,
            process=data.process.strip(),
            tasting_notes=[n.strip() for n in data.tasting_notes],
            weight_grams=data.weight_grams,
        )
        await self.products.add(product)
        await add_default_variant(self.session, product, data.on_hand)
        await self.session.refresh(product)
        await self.audit.record(
            self.actor,
            "product.created",
            "product",
            product.id,
            after={**snapshot(product, AUDITED_FIELDS), "on_hand": data.on_hand},
        )
        self.cache.invalidate_on_commit(self.session, product_ids=[product.id], lists=True)
        return product

    async def update(self, product_id: uuid.UUID, data: ProductUpdate) -> Product:
        product = await self.get(product_id)
        before = snapshot(product, AUDITED_FIELDS)
        changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not UNSET}
        if "slug" in changes:
            changes["slug"] = await self._check_slug(changes["slug"], excluding=product.id)
        if "category_id" in changes:
            await self._check_category(changes["category_id"])
        for text_field in ("name", "summary", "description", "origin", "process"):
            if text_field in changes:
                changes[text_field] = changes[text_field].strip()
        if "tasting_notes" in changes:
            changes["tasting_notes"] = [n.strip() for n in changes["tasting_notes"]]
        if not product.options:
            # Sold as one item: the product's price and weight are its default variant's.
            default = {k: changes[k] for k in ("price", "weight_grams") if k in changes}
            if default:
                await self.variants.sync_default(product.id, **default)
        elif "price" in changes and changes["price"] != product.price:
            raise Problem(
                409,
                "price-per-variant",
                "This product has variants: set their prices (its price is the lowest of theirs).",
            )
        if "active" in changes and changes["active"] != product.active:
            await self.products.set_active(product.id, active=changes.pop("active"))
            await self.session.refresh(product)
        for name, value in changes.items():
            setattr(product, name, value)
        await self.session.flush()
        await self.session.refresh(product)
        after = snapshot(product, AUDITED_FIELDS)
        if after != before:
            await self.audit.record(
                self.actor, "product.updated", "product", product.id, before=before, after=after
            )
            self.cache.invalidate_on_commit(self.session, product_ids=[product.id], lists=True)
        return product

    async def set_active(self, product_id: uuid.UUID, *, active: bool) -> Product:
        product = await self.get(product_id)
        if product.active == active:
            return product
        before = snapshot(product, AUDITED_FIELDS)
        await self.products.set_active(product.id, active=active)
        await self.session.refresh(product)
        await self.audit.record(
            self.actor,
            "product.restored" if active else "product.archived",
            "product",
            product.id,
            before=before,
            after=snapshot(product, AUDITED_FIELDS),
        )
        self.cache.invalidate_on_commit(self.session, product_ids=[product.id], lists=True)
        return product

    # --- images --------------------------------------------------------------------------

    async def _renumber(self, images: list[ProductImage]) -> None:
        for position, image in enumerate(images):
            image.position = position
        if images and not any(i.is_primary for i in images):
            images[0].is_primary = True
        await self.session.flush()

    async def _make_primary(self, product_id: uuid.UUID, image: ProductImage) -> None:
        await self.images.clear_primary(product_id)
        image.is_primary = True
        await self.session.flush()

    def _image_changed(self, product_id: uuid.UUID) -> None:
        # Listings show the primary image, so they are stale too.
        self.cache.invalidate_on_commit(self.session, product_ids=[product_id], lists=True)

    async def add_image(self, product_id: uuid.UUID, data: ImageCreate) -> ProductImage:
        await self.get(product_id)
        images = await self.images.of_product(product_id)
        if len(images) >= 50:
            raise Problem(409, "too-many-images", "A product may have at most 50 images.")
        image = ProductImage(
            product_id=product_id,
            url=data.url,
            storage_key=data.key,
            alt=data.alt.strip(),
            position=len(images),
            is_primary=False,
        )
        await self.images.add(image)
        position = len(images) if data.position is None else min(data.position, len(images))
        images.insert(position, image)
        await self._renumber(images)
        if data.primary and not image.is_primary:
            await self._make_primary(product_id, image)
        await self.audit.record(
            self.actor,
            "product_image.added",
            "product_image",
            image.id,
            after=snapshot(image, IMAGE_FIELDS),
        )
        self._image_changed(product_id)
        return image

    async def _image_of(
        self, product_id: uuid.UUID, image_id: uuid.UUID
    ) -> tuple[ProductImage, list[ProductImage]]:
        await self.get(product_id)
        images = await self.images.of_product(product_id)
        for image in images:
            if image.id == image_id:
                return image, images
        raise not_found("image", "This product has no such image.")

    async def update_image(
        self, product_id: uuid.UUID, image_id: uuid.UUID, data: ImageUpdate
    ) -> ProductImage:
        image, images = await self._image_of(product_id, image_id)
        before = snapshot(image, IMAGE_FIELDS)
        if data.alt is not UNSET:
            image.alt = data.alt.strip()
        if data.position is not UNSET:
            images.remove(image)
            images.insert(min(data.position, len(images)), image)
            await self._renumber(images)
        if data.primary is True and not image.is_primary:
            await self._make_primary(product_id, image)
        await self.session.flush()
        after = snapshot(image, IMAGE_FIELDS)
        if after != before:
            await self.audit.record(
                self.actor,
                "product_image.updated",
                "product_image",
                image.id,
                before=before,
                after=after,
            )
            self._image_changed(product_id)
        return image

    async def delete_image(self, product_id: uuid.UUID, image_id: uuid.UUID) -> None:
        image, images = await self._image_of(product_id, image_id)
        before = snapshot(image, IMAGE_FIELDS)
        images.remove(image)
        await self.images.delete(image.id)
        await self.session.flush()
        await self._renumber(images)
        await self.audit.record(
            self.actor, "product_image.removed", "product_image", image_id, before=before
        )
        self._image_changed(product_id)

    async def reorder_images(
        self, product_id: uuid.UUID, image_ids: list[uuid.UUID]
    ) -> list[ProductImage]:
        await self.get(product_id)
        images = await self.images.of_product(product_id)
        by_id = {i.id: i for i in images}
        if len(image_ids) != len(set(image_ids)) or set(image_ids) != set(by_id):
            raise Problem(
                400,
                "image-order",
                "Send every image id of this product exactly once, in the wanted order.",
            )
        before = [str(i.id) for i in images]
        ordered = [by_id[i] for i in image_ids]
        await self._renumber(ordered)
        if [str(i) for i in image_ids] != before:
            await self.audit.record(
                self.actor,
                "product_image.reordered",
                "product",
                product_id,
                before={"image_ids": before},
                after={"image_ids": [str(i) for i in image_ids]},
            )
            self._image_changed(product_id)
        return ordered
