"""Browsing: the home page, the shop listing, a coffee's page and search.

Every read here hits catalog's Redis-cached public endpoints; nothing waits on the cart (the
header's cart count loads by itself, see :mod:`storefront.pages.cart`).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal
from urllib.parse import quote

from litestar import Request, Response, get
from litestar.params import Parameter

from storefront.api import Api, ApiProblem, ApiUnavailable, Visitor
from storefront.pages.seo import product_structured_data
from storefront.pages.subscriptions import subscription_offer
from storefront.web import query, render

Sort = Literal["newest", "price", "price_desc", "name"]
SORTS: dict[str, str] = {
    "newest": "Newest",
    "price": "Price: low to high",
    "price_desc": "Price: high to low",
    "name": "Name",
}
Page = Annotated[int, Parameter(ge=1, le=10_000)]
CategorySlug = Annotated[
    str | None, Parameter(max_length=80, pattern=r"^[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*$")
]
Slug = Annotated[str, Parameter(max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]


async def categories(api: Api) -> list[dict[str, Any]]:
    try:
        body = await api.get("catalog", "/api/categories", bearer=False, cookies=())
    except ApiUnavailable:
        return []
    return list(body.get("items", []))


@get("/", name="home", include_in_schema=False, cache=False)
async def home(request: Request[Any, Any, Any], api: Api, visitor: Visitor) -> Response[str]:
    settings = request.app.state.storefront_settings
    cats, page = await asyncio.gather(
        categories(api),
        api.get(
            "catalog",
            "/api/products",
            params={"page_size": 24, "sort": "newest"},
            bearer=False,
            cookies=(),
        ),
    )
    items = list(page.get("items", []))
    # A coffee shop features its coffee (a roast) ahead of mugs and kettles, in stock first.
    items.sort(key=lambda p: (not p.get("roast"), p.get("availability") == "sold_out"))
    return render(
        request,
        "home.html",
        {"categories": cats, "featured": items[: settings.featured_count], "title": ""},
    )


@get("/shop", name="shop", include_in_schema=False, cache=False)
async def shop(
    request: Request[Any, Any, Any],
    api: Api,
    visitor: Visitor,
    *,
    category: CategorySlug = None,
    sort: Sort = "newest",
    page: Page = 1,
) -> Response[str]:
    settings = request.app.state.storefront_settings
    cats, listing = await asyncio.gather(
        categories(api),
        api.get(
            "catalog",
            "/api/products",
            params={
                "category": category,
                "sort": sort,
                "page": page,
                "page_size": settings.page_size,
            },
            bearer=False,
            cookies=(),
        ),
    )
    current = next((c for c in cats if c.get("slug") == category), None)
    return render(
        request,
        "shop.html",
        {
            "categories": cats,
            "category": current,
            "category_slug": category or "",
            "sort": sort,
            "sorts": SORTS,
            "listing": listing,
            "params": {"category": category, "sort": sort if sort != "newest" else None},
            "title": current["name"] if current else "Shop all coffee",
            # A sort is the same page in another order; a category and a page number are not.
            "canonical": query(
                f"{request.app.state.public_url}/shop",
                {"category": current["slug"] if current else None, "page": page},
            ),
            "description": _describe(
                (current or {}).get("description")
                or "Every coffee we roast, with brewing gear: single origins, blends and decaf, "
                "roasted to order and sent to your door."
            ),
        },
    )


def chosen_variant(item: dict[str, Any], wanted: str | None) -> dict[str, Any] | None:
    """The variant a product page shows: the one ``?variant=`` names (its SKU or id), else the
    first in stock, else the first; none for a catalog that answers no variants."""
    variants: list[dict[str, Any]] = item.get("variants") or []
    if wanted:
        key = wanted.strip().lower()[:120]
        for variant in variants:
            if key in (str(variant.get("sku", "")).lower(), str(variant.get("id", "")).lower()):
                return variant
    in_stock = [v for v in variants if v.get("availability") != "sold_out"]
    choices = in_stock or variants
    return choices[0] if choices else None


def variant_picker(item: dict[str, Any], chosen: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per option, its values as links to the variant that changes only that value (or, when
    that combination is not sold, the first variant with the value): a picker that works
    without script, each choice a deep link ``/coffee/<slug>?variant=<sku>``."""
    options: list[dict[str, Any]] = item.get("options") or []
    variants: list[dict[str, Any]] = item.get("variants") or []
    if not options or chosen is None:
        return []
    current = list(chosen.get("option_values") or [])
    base = f"/coffee/{quote(str(item.get('slug', '')), safe='')}"
    picker = []
    for index, option in enumerate(options):
        choices = []
        for value in option.get("values", []):
            wanted = [*current[:index], value, *current[index + 1 :]]
            target = next((v for v in variants if v.get("option_values") == wanted), None)
            target = target or next(
                (
                    v
                    for v in variants
                    if (v.get("option_values") or [None] * len(options))[index] == value
                ),
                None,
            )
            choices.append(
                {
                    "value": value,
                    "selected": index < len(current) and current[index] == value,
                    "href": f"{base}?variant={quote(str(target['sku']), safe='')}"
                    if target
                    else None,
                    "sold_out": target is None or target.get("availability") == "sold_out",
                }
            )
        picker.append({"name": option.get("name", ""), "choices": choices})
    return picker


@get("/coffee/{slug:str}", name="product", include_in_schema=False, cache=False)
async def product(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, slug: str
) -> Response[str]:
    if len(slug) > 200:
        return await _not_found(request)
    try:
        # Encoded whole: a slug holding "?", "/", "#" or a NUL must not reshape the catalog URL.
        path = f"/api/products/{quote(slug, safe='')}"
        item = await api.get("catalog", path, bearer=False, cookies=())
    except ApiProblem as problem:
        if problem.status in (400, 404):
            return await _not_found(request)
        raise
    related: list[dict[str, Any]] = []
    category = item.get("category") or {}
    if category.get("slug"):
        try:
            page = await api.get(
                "catalog",
                "/api/products",
                params={"category": category["slug"], "page_size": 5},
                bearer=False,
                cookies=(),
            )
            related = [p for p in page.get("items", []) if p.get("slug") != item.get("slug")][:4]
        except ApiProblem:
            related = []
    images = sorted(
        item.get("images", []), key=lambda i: (not i.get("primary"), i.get("position", 0))
    )
    variant = chosen_variant(item, request.query_params.get("variant"))
    return render(
        request,
        "product.html",
        {
            "product": item,
            "variant": variant,
            "picker": variant_picker(item, variant),
            "images": images,
            "related": related,
            "quantities": range(1, 11),
            "offer": subscription_offer(item),
            "title": item.get("name", ""),
            "canonical": f"{request.app.state.public_url}/coffee/{item.get('slug', slug)}",
            "description": _describe(item.get("summary") or item.get("description") or ""),
            "structured_data": product_structured_data(request, item),
        },
    )


@get("/search", name="search", include_in_schema=False, cache=False)
async def search(
    request: Request[Any, Any, Any],
    api: Api,
    visitor: Visitor,
    q: Annotated[str, Parameter(max_length=200)] = "",
    page: Page = 1,
) -> Response[str]:
    settings = request.app.state.storefront_settings
    query = q.strip()
    results: dict[str, Any] | None = None
    if query:
        results = await api.get(
            "catalog",
            "/api/products/search",
            params={"q": query, "page": page, "page_size": settings.page_size},
            bearer=False,
            cookies=(),
        )
    return render(
        request,
        "search.html",
        {
            "q": query,
            "results": results,
            "params": {"q": query},
            "title": f"Search: {query}" if query else "Search",
        },
    )


def _describe(text: str, limit: int = 160) -> str:
    """A meta description: one line, cut at a word near what search results show."""
    flat = " ".join(str(text).split())
    if len(flat) <= limit:
        return flat
    return flat[: limit - 1].rsplit(" ", 1)[0] + "…"


async def _not_found(request: Request[Any, Any, Any]) -> Response[str]:
    from storefront.errors import error_response

    response: Response[str] = error_response(
        request,
        404,
        "We could not find that coffee",
        "It may be sold out for the season or renamed. Have a look at what we roast now.",
    )
    return response


ROUTES = [home, shop, product, search]
