"""Rendering pages: the Jinja environment, the context every page gets, flashes, redirects.

Every page is rendered by :func:`render`, which adds what the layout needs (who is signed in,
the CSRF token for forms and htmx, a flash message) and hands the cookies the services set
during the request to the browser (see :func:`relay_cookies`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ember_shared.countries import country_name
from ember_shared.money import Money
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from litestar import MediaType, Request, Response
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.response import Redirect
from litestar.types import Message, Scope
from litestar.utils.scope.state import ScopeState

from storefront.api import GUEST, Api, Visitor

STATIC_DIR = Path(str(resources.files("storefront").joinpath("static")))
FLASH_COOKIE = "ember_flash"

#: Flash messages by code: a cookie names one of these, never carries text of its own.
FLASHES: dict[str, tuple[str, str]] = {
    "signed-in": ("success", "Welcome back. You are signed in."),
    "registered": ("success", "Your account is ready. Welcome to Ember."),
    "signed-out": ("info", "You are signed out. See you soon."),
    "password-reset": ("success", "Your password has been changed. Sign in with it."),
    "password-changed": ("success", "Your password has been changed."),
    "password-set": ("success", "Your password is set: sign in with it or with Google."),
    "profile-saved": ("success", "Your details are saved."),
    "address-saved": ("success", "The address is saved."),
    "address-deleted": ("info", "The address is deleted."),
    "added-to-cart": ("success", "Added to your cart."),
    "cart-updated": ("success", "Your cart is updated."),
    "cart-emptied": ("info", "Your cart is empty now."),
    "product-saved": ("success", "The product is saved."),
    "product-archived": ("info", "The product is archived: it is no longer listed or sold."),
    "product-restored": ("success", "The product is restored and listed again."),
    "image-added": ("success", "The image is added."),
    "image-removed": ("info", "The image is removed."),
    "stock-saved": ("success", "Stock is updated."),
    "order-shipped": ("success", "The order is marked shipped; the customer is emailed."),
    "order-updated": ("success", "The order is updated."),
    "refund-requested": (
        "success",
        "The refund is asked of Stripe: the order shows it once Stripe confirms.",
    ),
    "category-saved": ("success", "The category is saved."),
    "category-deleted": ("info", "The category is deleted."),
    "discount-code-saved": ("success", "The discount code is saved."),
    "discount-code-deactivated": (
        "info",
        "The discount code is deactivated: shoppers can no longer use it.",
    ),
    "shipping-rate-saved": ("success", "The shipping rate is saved."),
    "shipping-rate-deactivated": (
        "info",
        "The shipping rate is deactivated: checkout no longer offers it.",
    ),
    "customer-disabled": ("info", "The account is disabled: it is signed out everywhere."),
    "customer-enabled": ("success", "The account is enabled again."),
    "email-retried": ("success", "The email is queued to be sent again."),
    "signin-needed": ("info", "Sign in to continue."),
    "subscription-pausing": (
        "success",
        "Asked: your deliveries pause as soon as Stripe confirms (reload in a moment).",
    ),
    "subscription-skipping": (
        "success",
        "Asked: your next delivery is skipped as soon as Stripe confirms (reload in a moment).",
    ),
    "subscription-resuming": (
        "success",
        "Asked: your deliveries start again as soon as Stripe confirms (reload in a moment).",
    ),
    "subscription-changing": (
        "success",
        "Asked: your delivery changes as soon as Stripe confirms (reload in a moment).",
    ),
    "subscription-address-changed": (
        "success",
        "Your next deliveries go to the new address.",
    ),
    "subscription-cancelling": (
        "success",
        "Your subscription is cancelled from the end of the current period: "
        "nothing more is charged or sent after that.",
    ),
}

ORDER_STATUS_LABELS = {
    "pending_payment": "Awaiting payment",
    "payment_failed": "Payment failed",
    "cancelled": "Cancelled",
    "paid": "Paid",
    "fulfilled": "Being packed",
    "shipped": "Shipped",
    "delivered": "Delivered",
    "partially_refunded": "Partly refunded",
    "refunded": "Refunded",
}
AVAILABILITY_LABELS = {
    "in_stock": "In stock",
    "low_stock": "Only a few left",
    "sold_out": "Sold out",
}
ROASTS = ("light", "medium", "medium-dark", "dark")


def money(amount: int | None, currency: str | None = "USD") -> str:
    """Minor units as the shopper reads them: 1250, USD -> $12.50."""
    if amount is None:
        return "—"
    return Money(int(amount), (currency or "USD").upper()).display()


def parse_money(text: str) -> int | None:
    """A price typed by staff ("12.50", "$1,299") as minor units; None when it is not one."""
    cleaned = text.strip().replace(",", "").lstrip("$€£").strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0 or value != value.quantize(Decimal("0.01")):
        return None
    return int(value * 100)


def minor_to_text(amount: int | None) -> str:
    """Minor units as a form field shows them: 1250 -> 12.50."""
    if amount is None:
        return ""
    return f"{amount // 100}.{amount % 100:02d}"


def when(value: str | None, fmt: str = "%d %b %Y") -> str:
    if not value:
        return ""
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return parsed.strftime(fmt)


def status_label(status: str | None) -> str:
    return ORDER_STATUS_LABELS.get(status or "", (status or "").replace("_", " ").capitalize())


def availability_label(value: str | None) -> str:
    return AVAILABILITY_LABELS.get(value or "", "")


#: Widths the catalog makes of every uploaded picture (``catalog.media.images.VARIANT_WIDTHS``),
#: and the width the full picture is taken to have (uploads are scaled to at most this side).
IMAGE_WIDTHS = (320, 640, 960)
FULL_IMAGE_WIDTH = 2000
CLOUDINARY_UPLOAD = re.compile(r"^(https://res\.cloudinary\.com/[^/]+/image/upload/)(.+)$")


def srcset(url: str | None) -> str:
    """The ``srcset`` of a product picture: the sizes made at upload (on local disk, named
    ``-w<width>``; the gateway answers a size an older upload lacks with the full picture), or
    Cloudinary's own resizing. Empty for any other address."""
    if not url:
        return ""
    if url.startswith("/media/") and url.endswith(".webp"):
        stem = url.removesuffix(".webp")
        sizes = [f"{stem}-w{width}.webp {width}w" for width in IMAGE_WIDTHS]
        return ", ".join([*sizes, f"{url} {FULL_IMAGE_WIDTH}w"])
    if found := CLOUDINARY_UPLOAD.match(url):
        head, tail = found.groups()
        return ", ".join(
            f"{head}c_limit,w_{width},f_auto,q_auto/{tail} {width}w"
            for width in (*IMAGE_WIDTHS, FULL_IMAGE_WIDTH)
        )
    return ""


@cache
def static_version(name: str) -> str:
    """A short hash of a static file, so its URL changes whenever it does (it is cached long)."""
    path = STATIC_DIR / name
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    except OSError:
        return "0"


def static_url(name: str) -> str:
    return f"/static/{name}?v={static_version(name)}"


def query(base: str, params: Mapping[str, Any], **changes: Any) -> str:
    """A URL of ``base`` with ``params`` changed by ``changes`` (empty values left out)."""
    merged = {**params, **changes}
    clean = {
        k: v
        for k, v in merged.items()
        if v not in (None, "") and not (k == "page" and str(v) == "1")
    }
    return f"{base}?{urlencode(clean)}" if clean else base


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("storefront", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        enable_async=False,
    )
    env.filters.update(
        money=money,
        when=when,
        status_label=status_label,
        availability=availability_label,
        minor_to_text=minor_to_text,
        country=country_name,
        srcset=srcset,
    )
    env.globals.update(static=static_url, query=query, roasts=ROASTS)
    return env


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request", "") == "true"


def csrf_token(request: Request[Any, Any, Any]) -> str:
    token = ScopeState.from_scope(request.scope).csrf_token
    return token if isinstance(token, str) else ""


def request_api(request: Request[Any, Any, Any]) -> Api | None:
    api = request.state.get("api")
    return api if isinstance(api, Api) else None


def render_html(
    request: Request[Any, Any, Any], template: str, context: Mapping[str, Any] | None = None
) -> str:
    api = request_api(request)
    visitor: Visitor = (api._visitor if api else None) or GUEST
    flash_code = request.cookies.get(FLASH_COOKIE, "")
    flash = FLASHES.get(flash_code)
    settings = request.app.state.storefront_settings
    base: dict[str, Any] = {
        "request": request,
        "path": request.url.path,
        "visitor": visitor,
        "csrf_token": csrf_token(request),
        "shop_name": settings.shop_name,
        "flash": flash,
        "is_htmx": is_htmx(request),
        "has_cart": bool(api and api.has_cart),
        "title": "",
        # Search engines: one address per page (PUBLIC_URL's, without the query: pages whose
        # query names another page, such as a category, say so themselves) and a description.
        "canonical": f"{getattr(request.app.state, 'public_url', '')}{request.url.path}",
        "description": "",
        "structured_data": None,
    }
    if flash_code:
        request.state.clear_flash = True
    base.update(context or {})
    return environment().get_template(template).render(base)


def render(
    request: Request[Any, Any, Any],
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response[str]:
    html = render_html(request, template, context)
    return Response(
        html,
        status_code=status,
        media_type=MediaType.HTML,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def redirect(
    request: Request[Any, Any, Any], url: str, *, flash: str | None = None
) -> Response[Any]:
    """A 303 to ``url`` (an htmx request is told to navigate there itself)."""
    response: Response[Any]
    if is_htmx(request):
        response = Response(None, status_code=204, headers={"HX-Redirect": url})
    else:
        response = Redirect(url, status_code=303)
    if flash:
        response.set_cookie(
            Cookie(
                key=FLASH_COOKIE,
                value=flash,
                max_age=60,
                path="/",
                httponly=True,
                samesite="lax",
                # Plain http only on a developer's machine; unset means a deployed shop.
                secure=bool(request.app.state.get("cookie_secure", True)),
            )
        )
    return response


async def relay_cookies(message: Message, scope: Scope) -> None:
    """Hand the browser every cookie the services set while this page was made (``before_send``,
    so error pages relay them too), and clear a flash the page has shown."""
    if message["type"] != "http.response.start":
        return
    state = scope.get("state", {})
    api = state.get("api")
    headers = MutableScopeHeaders.from_message(message)
    if isinstance(api, Api):
        for cookie in api.outgoing.values():
            headers.add("set-cookie", cookie.to_header(header=""))
    if state.get("clear_flash"):
        sets_flash = any(
            value.startswith(f"{FLASH_COOKIE}=") for value in headers.getall("set-cookie", [])
        )
        if not sets_flash:
            gone = Cookie(key=FLASH_COOKIE, value="", max_age=0, expires=0, path="/", httponly=True)
            headers.add("set-cookie", gone.to_header(header=""))


def safe_next(target: str | None, default: str = "/account") -> str:
    """Only a path on this site may follow sign-in (never another host: no open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if any(ch in target for ch in "\r\n\t"):
        return default
    return target[:500]
