"""Product routes: the public shopper API (cached) and the admin API."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from ember_shared.auth import Principal, requires_admin
from ember_shared.problems import Problem, not_found
from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.datastructures import State, UploadFile
from litestar.di import Provide
from litestar.enums import RequestEncodingType
from litestar.handlers import HTTPRouteHandler
from litestar.params import Body, Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.cache import LISTS_SET, PAGES_SET, CatalogCache, product_set, value_key
from catalog.fields import DEFAULT_PAGE_SIZE, MAX_PAGE, MAX_PAGE_SIZE, SLUG_PATTERN
from catalog.http import cached_json, catalog_settings_of
from catalog.media.images import process_image, variant_key
from catalog.media.store import MediaStore
from catalog.products.schemas import (
    AdminProduct,
    AdminProductPage,
    ImageCreate,
    ImageOrder,
    ImageUpdate,
    ProductCreate,
    ProductDetail,
    ProductImageOut,
    ProductPage,
    ProductUpdate,
    SearchResult,
    SortOrder,
    UploadedImage,
)
from catalog.products.services import (
    ProductAdmin,
    ProductCatalog,
    image_out,
    query_sku,
    query_words,
)
from catalog.settings import CatalogSettings

PageParam = Annotated[int, Parameter(ge=1, le=MAX_PAGE, description="1-based page number.")]
PageSizeParam = Annotated[
    int, Parameter(ge=1, le=MAX_PAGE_SIZE, description="Items per page (at most 100).")
]
SEARCH_MAX_LENGTH = 200
_SLUG = re.compile(SLUG_PATTERN)


class ShopperProductController(Controller):
    """What any shopper may read: active products only, availability but never stock counts."""

    path = "/api/products"
    tags = ["products"]

    @get(
        "/",
        summary="List products",
        description="Active products, a page at a time, optionally in one category. Served from cache.",
        cache=False,
    )
    async def list_products(
        self,
        request: Request[Any, Any, State],
        page: PageParam = 1,
        page_size: PageSizeParam = DEFAULT_PAGE_SIZE,
        category: Annotated[
            str | None,
            Parameter(max_length=80, pattern=SLUG_PATTERN, description="A category slug."),
        ] = None,
        sort: Annotated[
            SortOrder, Parameter(description="newest, price (low first), price_desc or name.")
        ] = "newest",
    ) -> Response[ProductPage]:
        category_slug = category.lower() if category else None
        key = value_key("list", page, page_size, category_slug or "", sort)
        settings = catalog_settings_of(request)

        async def build(session: AsyncSession) -> tuple[bytes, Sequence[str]]:
            body, cacheable = await ProductCatalog(session, settings).listing(
                page=page, page_size=page_size, category=category_slug, sort=sort
            )
            return body, (LISTS_SET,) if cacheable else ()

        return await cached_json(request, key, build)

    @get(
        "/search",
        summary="Search products",
        description=(
            "Ranked full-text search over names, origins, tasting notes, descriptions and the "
            "options sold (grind, size). A variant's exact SKU finds its product first, naming "
            "it in `variant_sku`. "
            "Partial words match as prefixes and misspelt words match the catalog's closest words."
        ),
        cache=False,
    )
    async def search_products(
        self,
        request: Request[Any, Any, State],
        q: Annotated[
            str,
            Parameter(
                min_length=1,
                max_length=SEARCH_MAX_LENGTH,
                description="What to look for (at most 200 characters).",
            ),
        ],
        page: PageParam = 1,
        page_size: Annotated[
            int, Parameter(ge=1, le=50, description="Results per page (at most 50).")
        ] = 20,
    ) -> Response[SearchResult]:
        words = query_words(q)
        sku = query_sku(q)
        # "a-b" and "a b" are the same words, not the same SKU search.
        key = value_key("search", " ".join(words), page, page_size, *([sku] if sku else []))
        settings = catalog_settings_of(request)

        async def build(session: AsyncSession) -> tuple[bytes, Sequence[str]]:
            body, cacheable = await ProductCatalog(session, settings).search(
                words=words, page=page, page_size=page_size, sku=sku
            )
            return body, (LISTS_SET,) if cacheable else ()

        # On the search's own pool, whose connections carry its settings (catalog.app).
        return await cached_json(request, key, build, request.app.state.search_sessions)

    @get(
        "/{ref:str}",
        summary="Get one product",
        description="By slug (case-insensitive) or by id, with its images in display order and its availability.",
        cache=False,
    )
    async def get_product(
        self,
        request: Request[Any, Any, State],
        ref: Annotated[str, Parameter(description="The product's slug or id.", max_length=120)],
    ) -> Response[ProductDetail]:
        try:
            product_id: uuid.UUID | None = uuid.UUID(ref)
        except ValueError:
            product_id = None
            if not _SLUG.match(ref):
                # Not a slug any product could have: no need to ask the database.
                raise not_found(
                    "product", "There is no such product, or it is no longer sold."
                ) from None
        key = value_key("product", str(product_id) if product_id else ref.lower())
        settings = catalog_settings_of(request)

        async def build(session: AsyncSession) -> tuple[bytes, Sequence[str]]:
            catalog = ProductCatalog(session, settings)
            if product_id is not None:
                body, found_id = await catalog.detail(product_id=product_id)
            else:
                body, found_id = await catalog.detail(slug=ref)
            return body, (PAGES_SET, product_set(found_id))

        return await cached_json(request, key, build)


def _page(items: list[AdminProduct], page: int, page_size: int, total: int) -> AdminProductPage:
    return AdminProductPage.of(items, total=total, page=page, page_size=page_size)


def provide_product_admin(
    db_session: AsyncSession,
    cache: CatalogCache,
    catalog_settings: CatalogSettings,
    principal: Principal,
) -> ProductAdmin:
    return ProductAdmin(db_session, cache, catalog_settings, principal)


class AdminProductController(Controller):
    """Create, change and archive products and their images (admin role)."""

    path = "/api/admin/products"
    tags = ["admin: products"]
    guards = [requires_admin]
    security = [{"BearerToken": []}]

    dependencies = {"admin": Provide(provide_product_admin, sync_to_thread=False)}

    @get("/", summary="List products (any status)")
    async def list_products(
        self,
        admin: ProductAdmin,
        *,
        page: PageParam = 1,
        page_size: PageSizeParam = DEFAULT_PAGE_SIZE,
        category_id: uuid.UUID | None = None,
        status: Literal["all", "active", "archived"] = "all",
        q: Annotated[str | None, Parameter(max_length=100, pattern=r"^[^\x00]*$")] = None,
    ) -> AdminProductPage:
        items, total = await admin.page(
            page=page, page_size=page_size, category_id=category_id, status=status, q=q
        )
        return _page(items, page, page_size, total)

    @post("/", summary="Create a product", status_code=201)
    async def create_product(
        self,
        data: ProductCreate,
        admin: ProductAdmin,
    ) -> AdminProduct:
        product = await admin.create(data)
        return await admin.view(product)

    @get("/{product_id:uuid}", summary="Get a product (any status), with stock counts")
    async def get_product(
        self,
        product_id: uuid.UUID,
        admin: ProductAdmin,
    ) -> AdminProduct:
        return await admin.view(await admin.get(product_id))

    @patch("/{product_id:uuid}", summary="Change a product (only the members sent)")
    async def update_product(
        self,
        product_id: uuid.UUID,
        data: ProductUpdate,
        admin: ProductAdmin,
    ) -> AdminProduct:
        product = await admin.update(product_id, data)
        return await admin.view(product)

    @post(
        "/{product_id:uuid}/archive",
        summary="Archive a product (no longer listed or sold)",
        status_code=200,
    )
    async def archive_product(
        self,
        product_id: uuid.UUID,
        admin: ProductAdmin,
    ) -> AdminProduct:
        return await admin.view(await admin.set_active(product_id, active=False))

    @post("/{product_id:uuid}/restore", summary="Restore an archived product", status_code=200)
    async def restore_product(
        self,
        product_id: uuid.UUID,
        admin: ProductAdmin,
    ) -> AdminProduct:
        return await admin.view(await admin.set_active(product_id, active=True))

    @post(
        "/{product_id:uuid}/images",
        summary="Add an image (from upload-image) to a product",
        status_code=201,
    )
    async def add_image(
        self,
        product_id: uuid.UUID,
        data: ImageCreate,
        admin: ProductAdmin,
    ) -> ProductImageOut:
        return image_out(await admin.add_image(product_id, data))

    @patch(
        "/{product_id:uuid}/images/{image_id:uuid}",
        summary="Change an image's text, position or make it primary",
    )
    async def update_image(
        self,
        product_id: uuid.UUID,
        image_id: uuid.UUID,
        data: ImageUpdate,
        admin: ProductAdmin,
    ) -> ProductImageOut:
        return image_out(await admin.update_image(product_id, image_id, data))

    @delete(
        "/{product_id:uuid}/images/{image_id:uuid}",
        summary="Remove an image from a product",
        status_code=204,
    )
    async def delete_image(
        self,
        product_id: uuid.UUID,
        image_id: uuid.UUID,
        admin: ProductAdmin,
    ) -> None:
        await admin.delete_image(product_id, image_id)

    @put("/{product_id:uuid}/images/order", summary="Put a product's images in a new display order")
    async def reorder_images(
        self,
        product_id: uuid.UUID,
        data: ImageOrder,
        admin: ProductAdmin,
    ) -> list[ProductImageOut]:
        return [image_out(i) for i in await admin.reorder_images(product_id, data.image_ids)]


@dataclass
class ImageUpload:
    #: A JPEG, PNG or WebP image.
    file: UploadFile


def upload_image_handler(max_upload_bytes: int) -> HTTPRouteHandler:
    """The upload route, built with the configured size limit (multipart overhead allowed)."""

    @post(
        "/api/admin/upload-image",
        summary="Upload a product image",
        description=(
            "Multipart form with one `file` (JPEG, PNG or WebP, checked by content). The image is "
            "re-encoded as WebP without its metadata, stored under its content hash in the media "
            "store, and its URL answered; attach it to a product with POST .../images."
        ),
        tags=["admin: products"],
        guards=[requires_admin],
        security=[{"BearerToken": []}],
        status_code=201,
        request_max_body_size=max_upload_bytes + 64 * 1024,
    )
    async def upload_image(
        request: Request[Any, Any, State],
        data: Annotated[ImageUpload, Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> UploadedImage:
        settings = catalog_settings_of(request)
        upload = data.file
        if not isinstance(upload, UploadFile):
            raise Problem(400, "invalid-image", "Send the image as the multipart field `file`.")
        raw = await upload.read(settings.max_upload_bytes + 1)
        await upload.close()
        if len(raw) > settings.max_upload_bytes:
            raise Problem(
                413,
                "image-too-large",
                f"An image may be at most {settings.max_upload_bytes} bytes.",
                max_bytes=settings.max_upload_bytes,
            )
        image = await asyncio.to_thread(process_image, raw, max_side=settings.max_image_side)
        store: MediaStore = request.app.state.media_store
        stored = await store.put(image.key, image.data, image.content_type)
        if store.name == "local":
            # Cloudinary makes its sizes itself from the URL; on disk they are made here once.
            for width, smaller in image.variants:
                await store.put(variant_key(image.key, width), smaller, image.content_type)
        return UploadedImage(
            url=stored.url,
            key=stored.key,
            width=image.width,
            height=image.height,
            content_type=image.content_type,
            bytes=len(image.data),
        )

    return upload_image
