"""What search engines read: ``robots.txt``, ``sitemap.xml`` (every listed coffee and category),
and the canonical address and description each page carries (see :func:`storefront.web.render`).

Canonical and sitemap addresses are always PUBLIC_URL's, whichever host the page was asked on.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from litestar import MediaType, Request, Response, get

from storefront.api import Api, ApiProblem, ApiUnavailable
from storefront.web import minor_to_text

#: A sitemap lists at most this many coffees (100 a page): a bound on the work of one request.
SITEMAP_PAGES = 50
#: Pages a search engine has no business with: private, per shopper, or a step of a purchase.
PRIVATE_PATHS = (
    "/account",
    "/admin",
    "/cart",
    "/checkout",
    "/order/",
    "/subscriptions",
    "/signin",
    "/register",
    "/search",
    "/api/",
)
CACHE = {"Cache-Control": "public, max-age=3600"}


def public_url(request: Request[Any, Any, Any]) -> str:
    return str(request.app.state.public_url)


@get("/robots.txt", name="robots", include_in_schema=False, cache=False)
async def robots(request: Request[Any, Any, Any]) -> Response[str]:
    lines = ["User-agent: *", "Allow: /", *(f"Disallow: {path}" for path in PRIVATE_PATHS)]
    lines.append(f"Sitemap: {public_url(request)}/sitemap.xml")
    return Response("\n".join(lines) + "\n", media_type=MediaType.TEXT, headers=CACHE)


async def _all_products(api: Api) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in range(1, SITEMAP_PAGES + 1):
        listing = await api.get(
            "catalog",
            "/api/products",
            params={"page": page, "page_size": 100, "sort": "name"},
            bearer=False,
            cookies=(),
        )
        found.extend(listing.get("items", []))
        if page >= int(listing.get("pages") or 1):
            break
    return found


@get("/sitemap.xml", name="sitemap", include_in_schema=False, cache=False)
async def sitemap(request: Request[Any, Any, Any], api: Api) -> Response[str]:
    base = public_url(request)
    try:
        products = await _all_products(api)
        listed = await api.get("catalog", "/api/categories", bearer=False, cookies=())
    except (ApiProblem, ApiUnavailable):
        # A sitemap missing its coffees would tell crawlers they are gone: say "try later".
        return Response(
            "The sitemap is not available just now.\n",
            status_code=503,
            media_type=MediaType.TEXT,
            headers={"Retry-After": "300"},
        )
    paths = ["/", "/shop"]
    paths += [f"/shop?category={c['slug']}" for c in listed.get("items", []) if c.get("slug")]
    paths += [f"/coffee/{p['slug']}" for p in products if p.get("slug")]
    entries = "".join(f"<url><loc>{escape(base + path)}</loc></url>\n" for path in paths)
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        f"{entries}</urlset>\n"
    )
    return Response(body, media_type="application/xml", headers=CACHE)


def product_structured_data(
    request: Request[Any, Any, Any], item: dict[str, Any]
) -> dict[str, Any]:
    """schema.org Product with its Offer, for search results (price from minor units, no float)."""
    base = public_url(request)
    price = int(item.get("price") or 0)
    images = [
        image["url"] if image["url"].startswith(("http://", "https://")) else base + image["url"]
        for image in item.get("images", [])
        if image.get("url")
    ]
    availability = {
        "in_stock": "https://schema.org/InStock",
        "low_stock": "https://schema.org/LimitedAvailability",
        "sold_out": "https://schema.org/OutOfStock",
    }.get(str(item.get("availability")), "https://schema.org/InStock")
    data: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "Product",
        "name": item.get("name", ""),
        "description": item.get("summary") or item.get("description") or "",
        "sku": str(item.get("id", "")),
        "url": f"{base}/coffee/{item.get('slug', '')}",
        "brand": {"@type": "Brand", "name": request.app.state.storefront_settings.shop_name},
        "offers": {
            "@type": "Offer",
            "url": f"{base}/coffee/{item.get('slug', '')}",
            "price": minor_to_text(price),
            "priceCurrency": str(item.get("currency") or "USD").upper(),
            "availability": availability,
            "itemCondition": "https://schema.org/NewCondition",
        },
    }
    if images:
        data["image"] = images
    return data


ROUTES = [robots, sitemap]
