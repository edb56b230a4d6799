"""Staff pages (admin role only): the dashboard, products and their images, stock, orders and
shipping, and the notifier's outbox. Every change goes through the owning service's admin API
with the staff member's own token, so the services' guards and audit logs apply as for any call.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any, Literal

from litestar import Request, Response, get, post
from litestar.params import Parameter

from storefront.api import Api, ApiProblem, Visitor
from storefront.errors import error_response
from storefront.forms import Form
from storefront.messages import friendly
from storefront.web import is_htmx, minor_to_text, parse_money, redirect, render

Page = Annotated[int, Parameter(ge=1, le=10_000)]
Search = Annotated[str, Parameter(max_length=100)]
ProductStatus = Literal["all", "active", "archived"]
ORDER_STATUSES = (
    "pending_payment",
    "paid",
    "fulfilled",
    "shipped",
    "delivered",
    "payment_failed",
    "cancelled",
    "partially_refunded",
    "refunded",
)
EMAIL_STATUSES = ("queued", "sending", "sent", "failed", "dead", "suppressed")
CARRIERS = ("UPS", "FedEx", "USPS", "DHL", "Royal Mail", "Canada Post", "Australia Post")
MAX_IMAGE_BYTES = 10 * 1024 * 1024
PAGE_SIZE = 25


def staff_only(request: Request[Any, Any, Any], visitor: Visitor) -> Response[Any] | None:
    if not visitor.signed_in:
        return redirect(request, f"/signin?next={request.url.path}", flash="signin-needed")
    if not visitor.is_admin:
        return error_response(request, 403, "Staff only", "This part of the shop is for staff.")
    return None


def _pages(total: int, page_size: int) -> int:
    return max(1, -(-int(total) // page_size))


async def _optional(call: Any) -> Any:
    try:
        return await call
    except ApiProblem:
        return None


# --- dashboard ------------------------------------------------------------------------------


@get("/admin", name="admin", include_in_schema=False, cache=False)
async def dashboard(request: Request[Any, Any, Any], api: Api, visitor: Visitor) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    stats, low, recent, dead, flagged = await asyncio.gather(
        _optional(api.get("orders", "/api/admin/stats", params={"top": 5})),
        _optional(
            api.get("catalog", "/api/admin/inventory", params={"low": "true", "page_size": 6})
        ),
        _optional(api.get("orders", "/api/admin/orders", params={"page_size": 6})),
        _optional(
            api.get("notifier", "/api/admin/emails", params={"status": "dead", "page_size": 1})
        ),
        _optional(
            api.get("orders", "/api/admin/orders", params={"attention": "true", "page_size": 1})
        ),
    )
    daily = (stats or {}).get("daily", [])
    peak = max((int(day.get("orders", 0)) for day in daily), default=0)
    return render(
        request,
        "admin/dashboard.html",
        {
            "stats": stats,
            "low": (low or {}).get("items", []),
            "recent": (recent or {}).get("items", []),
            "dead_emails": (dead or {}).get("total", 0),
            "flagged_orders": (flagged or {}).get("total", 0),
            "daily": daily,
            "peak": peak,
            "title": "Dashboard",
            "section": "dashboard",
        },
    )


# --- products -------------------------------------------------------------------------------


@get("/admin/products", name="admin-products", include_in_schema=False, cache=False)
async def products(
    request: Request[Any, Any, Any],
    api: Api,
    visitor: Visitor,
    *,
    q: Search = "",
    status: ProductStatus = "all",
    page: Page = 1,
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    listing = await api.get(
        "catalog",
        "/api/admin/products",
        params={"q": q.strip() or None, "status": status, "page": page, "page_size": PAGE_SIZE},
    )
    return render(
        request,
        "admin/products.html",
        {
            "listing": listing,
            "q": q,
            "status": status,
            "params": {"q": q or None, "status": status if status != "all" else None},
            "title": "Products",
            "section": "products",
        },
    )


async def _categories(api: Api) -> list[dict[str, Any]]:
    body = await _optional(api.get("catalog", "/api/admin/categories"))
    return list((body or {}).get("items", []))


def _product_form(form: Form, creating: bool) -> tuple[dict[str, Any], dict[str, str]]:
    errors: dict[str, str] = {}
    name = form.text("name", 160)
    if not name:
        errors["name"] = "Give the product a name."
    price = parse_money(form.text("price", 20))
    if price is None:
        errors["price"] = "Give a price like 18.50."
    body: dict[str, Any] = {
        "name": name,
        "price": price,
        "summary": form.text("summary", 300),
        "description": form.text("description", 20_000),
        "origin": form.text("origin", 80),
        "roast": form.text("roast", 20),
        "process": form.text("process", 60),
        "tasting_notes": [
            n.strip()[:40] for n in form.text("tasting_notes", 400).split(",") if n.strip()
        ][:10],
        "active": form.flag("active"),
        "category_id": str(form.uuid("category_id")) if form.uuid("category_id") else None,
        "currency": (form.text("currency", 3) or "USD").upper(),
    }
    slug = form.text("slug", 120)
    if slug:
        body["slug"] = slug
    weight = form.text("weight_grams", 8)
    if weight:
        grams = form.integer("weight_grams", None, 1, 100_000)
        if grams is None:
            errors["weight_grams"] = "Give a weight in grams, or leave it empty."
        body["weight_grams"] = grams
    else:
        body["weight_grams"] = None
    if body["roast"] not in ("", "light", "medium", "medium-dark", "dark"):
        errors["roast"] = "Choose a roast."
    if creating:
        on_hand = form.integer("on_hand", None, 0, 1_000_000)
        if on_hand is None:
            errors["on_hand"] = "Give the stock on hand (0 or more)."
        body["on_hand"] = on_hand
    return body, errors


def _form_values(product: dict[str, Any]) -> dict[str, Any]:
    return {
        **product,
        "price_text": minor_to_text(product.get("price")),
        "notes_text": ", ".join(product.get("tasting_notes") or []),
    }


@get("/admin/products/new", name="admin-product-new", include_in_schema=False, cache=False)
async def product_new(request: Request[Any, Any, Any], api: Api, visitor: Visitor) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    return render(
        request,
        "admin/product_form.html",
        {
            "product": {
                "active": True,
                "currency": "USD",
                "on_hand": 0,
                "price_text": "",
                "notes_text": "",
            },
            "categories": await _categories(api),
            "errors": {},
            "error": "",
            "creating": True,
            "title": "New product",
            "section": "products",
        },
    )


@post("/admin/products", name="admin-product-create", include_in_schema=False)
async def product_create(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    form = await Form.of(request)
    body, errors = _product_form(form, creating=True)
    error = ""
    if not errors:
        try:
            created = await api.post("catalog", "/api/admin/products", json=body)
        except ApiProblem as problem:
            error = friendly(problem, "that product")
            errors = problem.field_errors()
        else:
            return redirect(request, f"/admin/products/{created['id']}", flash="product-saved")
    shown = {
        **body,
        "price_text": form.text("price", 20),
        "notes_text": form.text("tasting_notes", 400),
    }
    return render(
        request,
        "admin/product_form.html",
        {
            "product": shown,
            "categories": await _categories(api),
            "errors": errors,
            "error": error or "Some fields need another look.",
            "creating": True,
            "title": "New product",
            "section": "products",
        },
        status=400,
    )


@get(
    "/admin/products/{product_id:uuid}", name="admin-product", include_in_schema=False, cache=False
)
async def product_edit(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, product_id: uuid.UUID
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    product, cats, variants = await asyncio.gather(
        api.get("catalog", f"/api/admin/products/{product_id}"),
        _categories(api),
        _variants_of(api, product_id),
    )
    return render(
        request,
        "admin/product_form.html",
        {
            "product": _form_values(product),
            "categories": cats,
            "errors": {},
            "error": "",
            "variants": variants,
            "creating": False,
            "title": product.get("name", "Product"),
            "section": "products",
        },
    )


@post("/admin/products/{product_id:uuid}", name="admin-product-update", include_in_schema=False)
async def product_update(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, product_id: uuid.UUID
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    form = await Form.of(request)
    body, errors = _product_form(form, creating=False)
    error = ""
    if not errors:
        try:
            await api.patch("catalog", f"/api/admin/products/{product_id}", json=body)
        except ApiProblem as problem:
            error = friendly(problem, "that product")
            errors = problem.field_errors()
        else:
            return redirect(request, f"/admin/products/{product_id}", flash="product-saved")
    product = await api.get("catalog", f"/api/admin/products/{product_id}")
    shown = {
        **product,
        **body,
        "price_text": form.text("price", 20),
        "notes_text": form.text("tasting_notes", 400),
    }
    return render(
        request,
        "admin/product_form.html",
        {
            "product": shown,
            "categories": await _categories(api),
            "errors": errors,
            "error": error or "Some fields need another look.",
            "variants": await _variants_of(api, product_id),
            "creating": False,
            "title": product.get("name", "Product"),
            "section": "products",
        },
        status=400,
    )


@post(
    "/admin/products/{product_id:uuid}/{action:str}",
    name="admin-product-action",
    include_in_schema=False,
)
async def product_action(
    request: Request[Any, Any, Any],
    api: Api,
    visitor: Visitor,
    product_id: uuid.UUID,
    action: str,
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    if action not in ("archive", "restore"):
        return error_response(request, 404)
    await api.post("catalog", f"/api/admin/products/{product_id}/{action}", json={})
    flash = "product-archived" if action == "archive" else "product-restored"
    return redirect(request, f"/admin/products/{product_id}", flash=flash)


@post(
    "/admin/products/{product_id:uuid}/images",
    name="admin-product-image",
    include_in_schema=False,
    request_max_body_size=MAX_IMAGE_BYTES + 256 * 1024,
)
async def product_image(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, product_id: uuid.UUID
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    form = await Form.of(request)
    upload = form.file("file")
    alt = form.text("alt", 200)
    data: bytes = b""
    if upload is not None and hasattr(upload, "read"):
        data = await upload.read()
    error = ""
    if not data:
        error = "Choose an image file (JPEG, PNG or WebP)."
    elif len(data) > MAX_IMAGE_BYTES:
        error = "That image is larger than 10 MB."
    else:
        try:
            uploaded = await api.post(
                "catalog",
                "/api/admin/upload-image",
                files={
                    "file": (
                        getattr(upload, "filename", "") or "image",
                        data,
                        getattr(upload, "content_type", "") or "application/octet-stream",
                    )
                },
            )
            await api.post(
                "catalog",
                f"/api/admin/products/{product_id}/images",
                json={"url": uploaded["url"], "key": uploaded.get("key", ""), "alt": alt},
            )
        except ApiProblem as problem:
            error = friendly(problem, "that image")
    if error:
        product = await api.get("catalog", f"/api/admin/products/{product_id}")
        return render(
            request,
            "admin/product_form.html",
            {
                "product": _form_values(product),
                "categories": await _categories(api),
                "errors": {},
                "error": "",
                "image_error": error,
                "variants": await _variants_of(api, product_id),
                "creating": False,
                "title": product.get("name", "Product"),
                "section": "products",
            },
            status=400,
        )
    return redirect(request, f"/admin/products/{product_id}#images", flash="image-added")


@post(
    "/admin/products/{product_id:uuid}/images/{image_id:uuid}/delete",
    name="admin-product-image-delete",
    include_in_schema=False,
)
async def product_image_delete(
    request: Request[Any, Any, Any],
    api: Api,
    visitor: Visitor,
    product_id: uuid.UUID,
    image_id: uuid.UUID,
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    await api.delete("catalog", f"/api/admin/products/{product_id}/images/{image_id}")
    return redirect(request, f"/admin/products/{product_id}#images", flash="image-removed")


# --- options and variants -------------------------------------------------------------------

#: As many as catalog takes (``catalog.variants.schemas``: 3 options, 100 variants).
MAX_OPTIONS = 3
MAX_VARIANT_ROWS = 100
#: Empty rows offered under a product's variants, for new ones.
NEW_VARIANT_ROWS = 2


def _signed_money(text: str) -> int | None:
    """A typed price as minor units, a negative one included: catalog, not this page, says
    what a price may be (its problem is what staff see)."""
    negative = text.startswith("-")
    amount = parse_money(text[1:] if negative else text)
    if amount is None:
        return None
    return -amount if negative else amount


def _whole(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _variant_rows(admin_view: dict[str, Any]) -> list[dict[str, Any]]:
    """Catalog's variants as the form shows them: those on sale, then those no longer sold."""
    rows = []
    for variant in admin_view.get("variants", []):
        rows.append(
            {
                "id": variant["id"],
                "sku": variant["sku"],
                "values": " / ".join(variant.get("option_values") or []),
                "price": minor_to_text(variant["price"]),
                "weight": "" if variant.get("weight_grams") is None else variant["weight_grams"],
                "on_hand": variant["on_hand"],
                "reserved": variant["reserved"],
                "available": variant["available"],
                "active": variant["active"],
            }
        )
    return rows


def _variants_view(admin_view: dict[str, Any]) -> dict[str, Any]:
    options = [
        {"name": o["name"], "values": ", ".join(o["values"])} for o in admin_view.get("options", [])
    ]
    return {"options": options, "rows": _variant_rows(admin_view)}


def _with_blanks(view: dict[str, Any]) -> dict[str, Any]:
    """The form's rows: what there is, then empty option and variant rows to add to."""
    options = list(view["options"])
    options += [{"name": "", "values": ""}] * (MAX_OPTIONS - len(options))
    blank = {"id": "", "sku": "", "values": "", "price": "", "weight": "", "on_hand": ""}
    rows = list(view["rows"])
    rows += [{**blank, "active": True}] * min(NEW_VARIANT_ROWS, MAX_VARIANT_ROWS - len(rows))
    return {"options": options, "rows": rows}


async def _variants_of(api: Api, product_id: uuid.UUID) -> dict[str, Any]:
    """The variants form as catalog has the product now (empty rows to add to)."""
    admin_view = await api.get("catalog", f"/api/admin/products/{product_id}/variants")
    return _with_blanks(_variants_view(admin_view))


def _variants_form(form: Form) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The posted options and variants: catalog's ``VariantsSet``, what was typed (shown again
    as typed when catalog refuses it), and what this page could not even read."""
    typed_options = [
        {"name": form.text(f"option-{i}-name", 40), "values": form.text(f"option-{i}-values", 1300)}
        for i in range(MAX_OPTIONS)
    ]
    options = [
        {"name": o["name"], "values": [v.strip() for v in o["values"].split(",") if v.strip()]}
        for o in typed_options
        if o["name"] or o["values"]
    ]
    count = form.integer("rows", 0, 0, MAX_VARIANT_ROWS) or 0
    typed_rows: list[dict[str, Any]] = []
    variants: list[dict[str, Any]] = []
    problems: list[str] = []
    for j in range(count):
        row: dict[str, Any] = {
            "id": str(form.uuid(f"v-{j}-id") or ""),
            "sku": form.text(f"v-{j}-sku", 120),
            "values": form.text(f"v-{j}-values", 200),
            "price": form.text(f"v-{j}-price", 20),
            "weight": form.text(f"v-{j}-weight", 8),
            "on_hand": form.text(f"v-{j}-on_hand", 8),
            "active": form.flag(f"v-{j}-active"),
        }
        typed_rows.append(row)
        if not row["id"] and not (row["sku"] or row["values"] or row["price"]):
            continue  # an empty row for a new variant, left empty
        if row["id"] and not row["active"]:
            # Not listed: catalog stops selling it and keeps it (orders name it), whatever
            # values it had under options since changed.
            continue
        label = row["sku"] or f"row {j + 1}"
        variant: dict[str, Any] = {
            "sku": row["sku"],
            "option_values": [v.strip() for v in row["values"].split("/") if v.strip()],
            "active": row["active"],
        }
        if row["id"]:
            variant["id"] = row["id"]
        price = _signed_money(row["price"])
        if price is None:
            problems.append(f"Variant {label}: give a price like 18.50.")
        variant["price"] = price
        for field, name in (("weight", "weight_grams"), ("on_hand", "on_hand")):
            if row[field]:
                number = _whole(row[field])
                if number is None:
                    problems.append(f"Variant {label}: give a whole number of {field}.")
                variant[name] = number
        variants.append(variant)
    typed = {"options": typed_options, "rows": typed_rows}
    return {"options": options, "variants": variants}, typed, problems


def _said(problem: ApiProblem) -> str:
    """Catalog's own words for a refused set of variants (a validation problem: each error)."""
    messages = [str(e.get("message", "")) for e in problem.errors if e.get("message")]
    if messages:
        return " ".join(messages)
    return friendly(problem, "those variants")


@post(
    "/admin/products/{product_id:uuid}/variants",
    name="admin-product-variants",
    include_in_schema=False,
)
async def product_variants(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, product_id: uuid.UUID
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    form = await Form.of(request)
    body, typed, problems = _variants_form(form)
    error = " ".join(problems)
    if not problems:
        try:
            await api.put("catalog", f"/api/admin/products/{product_id}/variants", json=body)
        except ApiProblem as problem:
            error = _said(problem)
        else:
            return redirect(
                request, f"/admin/products/{product_id}#variants", flash="product-saved"
            )
    product, cats, current = await asyncio.gather(
        api.get("catalog", f"/api/admin/products/{product_id}"),
        _categories(api),
        api.get("catalog", f"/api/admin/products/{product_id}/variants"),
    )
    # The stock columns are catalog's (read only here); every field typed stays as typed.
    stock = {row["id"]: row for row in _variant_rows(current)}
    for row in typed["rows"]:
        held = stock.get(row["id"], {})
        row["reserved"] = held.get("reserved", "")
        row["available"] = held.get("available", "")
    return render(
        request,
        "admin/product_form.html",
        {
            "product": _form_values(product),
            "categories": cats,
            "errors": {},
            "error": "",
            "variants": typed if typed["rows"] else _with_blanks(typed),
            "variants_error": error,
            "creating": False,
            "title": product.get("name", "Product"),
            "section": "products",
        },
        status=400,
    )


# --- inventory ------------------------------------------------------------------------------


@get("/admin/inventory", name="admin-inventory", include_in_schema=False, cache=False)
async def inventory(
    request: Request[Any, Any, Any],
    api: Api,
    visitor: Visitor,
    *,
    q: Search = "",
    low: bool = False,
    page: Page = 1,
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    listing = await api.get(
        "catalog",
        "/api/admin/inventory",
        params={
            "q": q.strip() or None,
            "low": "true" if low else None,
            "page": page,
            "page_size": PAGE_SIZE,
        },
    )
    return render(
        request,
        "admin/inventory.html",
        {
            "listing": listing,
            "q": q,
            "low": low,
            "params": {"q": q or None, "low": "true" if low else None},
            "title": "Inventory",
            "section": "inventory",
        },
    )


@post("/admin/inventory/{product_id:uuid}", name="admin-stock", include_in_schema=False)
async def stock_set(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, product_id: uuid.UUID
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    form = await Form.of(request)
    on_hand = form.integer("on_hand", None, 0, 1_000_000)
    error = ""
    row: dict[str, Any] | None = None
    if on_hand is None:
        error = "Give a whole number, 0 or more."
    else:
        try:
            # The row's id is a variant's (a product without options: its own, its default's).
            row = await api.put(
                "catalog",
                f"/api/admin/inventory/variants/{product_id}",
                json={"on_hand": on_hand},
            )
        except ApiProblem as problem:
            error = friendly(problem, "that product")
    if not is_htmx(request):
        if error:
            return error_response(request, 400, "Stock not changed", error)
        return redirect(request, "/admin/inventory", flash="stock-saved")
    if row is None:
        listing = await api.get("catalog", "/api/admin/inventory", params={"page_size": 100})
        row = next(
            (r for r in listing.get("items", []) if r.get("product_id") == str(product_id)), None
        )
        if row is None:
            return error_response(request, 404)
    return render(
        request,
        "admin/partials/stock_row.html",
        {"row": row, "row_error": error, "saved": not error},
    )


# --- orders ---------------------------------------------------------------------------------


@get("/admin/orders", name="admin-orders", include_in_schema=False, cache=False)
async def orders(
    request: Request[Any, Any, Any],
    api: Api,
    visitor: Visitor,
    *,
    status: Annotated[str, Parameter(max_length=30)] = "",
    q: Annotated[str, Parameter(max_length=200)] = "",
    attention: Annotated[bool, Parameter(description="Only orders that need a look.")] = False,
    page: Page = 1,
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    chosen = status if status in ORDER_STATUSES else ""
    listing = await api.get(
        "orders",
        "/api/admin/orders",
        params={
            "status": chosen or None,
            "q": q.strip() or None,
            "attention": "true" if attention else None,
            "page": page,
            "page_size": PAGE_SIZE,
        },
    )
    return render(
        request,
        "admin/orders.html",
        {
            "listing": listing,
            "status": chosen,
            "statuses": ORDER_STATUSES,
            "q": q,
            "attention": attention,
            "page": page,
            "pages": _pages(listing.get("total", 0), PAGE_SIZE),
            "params": {
                "status": chosen or None,
                "q": q or None,
                "attention": "true" if attention else None,
            },
            "title": "Orders",
            "section": "orders",
        },
    )


async def _order_page(
    request: Request[Any, Any, Any],
    api: Api,
    order_id: uuid.UUID,
    *,
    error: str = "",
    ship: dict[str, str] | None = None,
    refund: dict[str, str] | None = None,
    status: int = 200,
) -> Response[Any]:
    order, refunds = await asyncio.gather(
        api.get("orders", f"/api/admin/orders/{order_id}"),
        api.get("orders", f"/api/admin/orders/{order_id}/refunds"),
    )
    return render(
        request,
        "admin/order.html",
        {
            "order": order,
            "refunds": refunds.get("items", []),
            # A new key per page view: the form sent twice (a double click, a resend) asks
            # Stripe once; a fresh page asks anew.
            "refund_key": f"sf-{uuid.uuid4().hex}",
            "refund": refund or {},
            "carriers": CARRIERS,
            "ship": ship or {},
            "error": error,
            "title": f"Order {str(order_id)[-8:].upper()}",
            "section": "orders",
        },
        status=status,
    )


@get("/admin/orders/{order_id:uuid}", name="admin-order", include_in_schema=False, cache=False)
async def order_detail(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, order_id: uuid.UUID
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    return await _order_page(request, api, order_id)


@post("/admin/orders/{order_id:uuid}/ship", name="admin-order-ship", include_in_schema=False)
async def order_ship(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, order_id: uuid.UUID
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    form = await Form.of(request)
    ship = {
        "carrier": form.text("carrier", 40),
        "tracking_number": form.text("tracking_number", 40),
    }
    ship["tracking_number"] = ship["tracking_number"].replace(" ", "").upper()
    error = ""
    if len(ship["carrier"]) < 2:
        error = "Choose the carrier."
    elif len(ship["tracking_number"]) < 5 or not all(
        ch.isalnum() or ch == "-" for ch in ship["tracking_number"]
    ):
        error = "A tracking number has at least 5 letters, digits or dashes."
    else:
        try:
            await api.post("orders", f"/api/admin/orders/{order_id}/ship", json=ship)
        except ApiProblem as problem:
            error = friendly(problem, "that order")
    if error:
        return await _order_page(request, api, order_id, error=error, ship=ship, status=400)
    return redirect(request, f"/admin/orders/{order_id}", flash="order-shipped")


@post("/admin/orders/{order_id:uuid}/status", name="admin-order-status", include_in_schema=False)
async def order_update(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, order_id: uuid.UUID
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    form = await Form.of(request)
    body: dict[str, Any] = {}
    new_status = form.text("status", 20)
    if new_status:
        body["status"] = new_status
        body["reason"] = form.text("reason", 300)
    if "notes" in form.data:
        body["notes"] = form.text("notes", 4000)
    try:
        await api.put("orders", f"/api/admin/orders/{order_id}", json=body)
    except ApiProblem as problem:
        return await _order_page(
            request, api, order_id, error=friendly(problem, "that order"), status=400
        )
    return redirect(request, f"/admin/orders/{order_id}", flash="order-updated")


@post("/admin/orders/{order_id:uuid}/refund", name="admin-order-refund", include_in_schema=False)
async def order_refund(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, order_id: uuid.UUID
) -> Response[Any]:
    """Ask Stripe for a refund; the order changes when Stripe's webhook confirms it."""
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    form = await Form.of(request)
    typed = form.text("amount", 20)
    refund = {"amount": typed, "reason": form.text("reason", 300)}
    body: dict[str, Any] = {
        "idempotency_key": form.text("idempotency_key", 200),
        "restock": form.flag("restock"),
        "reason": refund["reason"],
    }
    error = ""
    if typed:
        amount = parse_money(typed)
        if amount is None or amount <= 0:
            error = "Give the amount to refund, like 12.50, or leave it empty to refund the rest."
        else:
            body["amount"] = amount
    if not error:
        try:
            await api.post("orders", f"/api/admin/orders/{order_id}/refunds", json=body)
        except ApiProblem as problem:
            error = friendly(problem, "that order")
    if error:
        return await _order_page(request, api, order_id, error=error, refund=refund, status=400)
    return redirect(request, f"/admin/orders/{order_id}", flash="refund-requested")


# --- categories -----------------------------------------------------------------------------


def _category_form(form: Form) -> tuple[dict[str, Any], str]:
    values: dict[str, Any] = {
        "name": form.text("name", 120),
        "slug": form.text("slug", 120).lower(),
        "description": form.text("description", 4000),
    }
    order = form.text("display_order", 6)
    error = ""
    if len(values["name"]) < 2:
        error = "Give the category a name."
    elif order:
        if not order.isdigit():
            error = "The position is a whole number."
        else:
            values["display_order"] = int(order)
    return values, error


@get("/admin/categories", name="admin-categories", include_in_schema=False, cache=False)
async def categories(
    request: Request[Any, Any, Any],
    api: Api,
    visitor: Visitor,
    q: Annotated[str, Parameter(max_length=120)] = "",
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    return await _categories_page(request, api, q=q)


async def _categories_page(
    request: Request[Any, Any, Any],
    api: Api,
    *,
    q: str = "",
    new: dict[str, Any] | None = None,
    error: str = "",
    status: int = 200,
) -> Response[Any]:
    listed = await _categories(api)
    needle = q.strip().lower()
    shown = [c for c in listed if not needle or needle in c["name"].lower() or needle in c["slug"]]
    return render(
        request,
        "admin/categories.html",
        {
            "categories": shown,
            "q": q,
            "new": new or {},
            "error": error,
            "title": "Categories",
            "section": "categories",
        },
        status=status,
    )


@post("/admin/categories", name="admin-category-create", include_in_schema=False)
async def category_create(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    values, error = _category_form(await Form.of(request))
    if not error:
        body = {k: v for k, v in values.items() if v not in ("", None)}
        try:
            await api.post("catalog", "/api/admin/categories", json=body)
        except ApiProblem as problem:
            error = friendly(problem, "that category")
    if error:
        return await _categories_page(request, api, new=values, error=error, status=400)
    return redirect(request, "/admin/categories", flash="category-saved")


@get(
    "/admin/categories/{category_id:uuid}",
    name="admin-category",
    include_in_schema=False,
    cache=False,
)
async def category_edit(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, category_id: uuid.UUID
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    category = await api.get("catalog", f"/api/admin/categories/{category_id}")
    return render(
        request,
        "admin/category.html",
        {"category": category, "error": "", "title": category["name"], "section": "categories"},
    )


@post(
    "/admin/categories/{category_id:uuid}",
    name="admin-category-update",
    include_in_schema=False,
)
async def category_update(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, category_id: uuid.UUID
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    form = await Form.of(request)
    if form.flag("delete"):
        try:
            await api.delete("catalog", f"/api/admin/categories/{category_id}")
        except ApiProblem as problem:
            category = await api.get("catalog", f"/api/admin/categories/{category_id}")
            return render(
                request,
                "admin/category.html",
                {
                    "category": category,
                    "error": friendly(problem, "that category"),
                    "title": category["name"],
                    "section": "categories",
                },
                status=409,
            )
        return redirect(request, "/admin/categories", flash="category-deleted")
    values, error = _category_form(form)
    if not error:
        body = {k: v for k, v in values.items() if k != "slug" or v}
        try:
            await api.patch("catalog", f"/api/admin/categories/{category_id}", json=body)
        except ApiProblem as problem:
            error = friendly(problem, "that category")
    if error:
        return render(
            request,
            "admin/category.html",
            {
                "category": {"id": str(category_id), **values},
                "error": error,
                "title": "Edit category",
                "section": "categories",
            },
            status=400,
        )
    return redirect(request, "/admin/categories", flash="category-saved")


# --- customers ------------------------------------------------------------------------------


@get("/admin/customers", name="admin-customers", include_in_schema=False, cache=False)
async def customers(
    request: Request[Any, Any, Any],
    api: Api,
    visitor: Visitor,
    *,
    q: Annotated[str, Parameter(max_length=200)] = "",
    page: Page = 1,
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    listing = await api.get(
        "identity",
        "/api/admin/users",
        params={"q": q.strip(), "page": page, "page_size": PAGE_SIZE},
    )
    return render(
        request,
        "admin/customers.html",
        {
            "listing": listing,
            "q": q,
            "page": page,
            "pages": _pages(listing.get("total", 0), PAGE_SIZE),
            "params": {"q": q or None},
            "title": "Customers",
            "section": "customers",
        },
    )


@get(
    "/admin/customers/{user_id:uuid}",
    name="admin-customer",
    include_in_schema=False,
    cache=False,
)
async def customer_detail(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, user_id: uuid.UUID
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    user = await api.get("identity", f"/api/admin/users/{user_id}")
    params: dict[str, Any] = {"user_id": str(user_id), "page_size": PAGE_SIZE}
    if user.get("email_verified"):
        # Guest orders of a proved address are the customer's too (as on their account page).
        params["verified_email"] = user["email"]
    orders, subscriptions = await asyncio.gather(
        api.get("orders", "/api/admin/orders", params=params),
        _optional(
            api.get(
                "checkout",
                "/api/admin/subscriptions",
                params={"user_id": str(user_id), "page_size": 50},
            )
        ),
    )
    return render(
        request,
        "admin/customer.html",
        {
            "customer": user,
            "orders": orders,
            "subscriptions": (subscriptions or {}).get("items", []),
            "title": user.get("name") or user["email"],
            "section": "customers",
        },
    )


@post(
    "/admin/customers/{user_id:uuid}/{action:str}",
    name="admin-customer-action",
    include_in_schema=False,
)
async def customer_action(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, user_id: uuid.UUID, action: str
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    if action not in {"disable", "enable"}:
        return error_response(request, 404, "Not found", "There is no such action.")
    try:
        await api.post("identity", f"/api/admin/users/{user_id}/{action}")
    except ApiProblem as problem:
        return error_response(request, 409, "Not changed", friendly(problem, "that account"))
    return redirect(request, f"/admin/customers/{user_id}", flash=f"customer-{action}d")


# --- emails ---------------------------------------------------------------------------------


@get("/admin/emails", name="admin-emails", include_in_schema=False, cache=False)
async def emails(
    request: Request[Any, Any, Any],
    api: Api,
    visitor: Visitor,
    *,
    status: Annotated[str, Parameter(max_length=20)] = "",
    to: Annotated[str, Parameter(max_length=320)] = "",
    page: Page = 1,
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    chosen = status if status in EMAIL_STATUSES else ""
    listing = await api.get(
        "notifier",
        "/api/admin/emails",
        params={
            "status": chosen or None,
            "to": to.strip() or None,
            "page": page,
            "page_size": PAGE_SIZE,
        },
    )
    return render(
        request,
        "admin/emails.html",
        {
            "listing": listing,
            "status": chosen,
            "statuses": EMAIL_STATUSES,
            "to": to,
            "page": page,
            "pages": _pages(listing.get("total", 0), PAGE_SIZE),
            "params": {"status": chosen or None, "to": to or None},
            "title": "Emails",
            "section": "emails",
        },
    )


@get("/admin/emails/{email_id:uuid}", name="admin-email", include_in_schema=False, cache=False)
async def email_detail(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, email_id: uuid.UUID
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    email = await api.get("notifier", f"/api/admin/emails/{email_id}")
    return render(
        request,
        "admin/email.html",
        {"email": email, "title": email.get("subject", "Email"), "section": "emails"},
    )


@post("/admin/emails/{email_id:uuid}/retry", name="admin-email-retry", include_in_schema=False)
async def email_retry(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, email_id: uuid.UUID
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    try:
        await api.post("notifier", f"/api/admin/emails/{email_id}/retry", json={})
    except ApiProblem as problem:
        return error_response(request, 409, "Not sent again", friendly(problem, "that email"))
    return redirect(request, f"/admin/emails/{email_id}", flash="email-retried")


ROUTES = [
    dashboard,
    products,
    product_new,
    product_create,
    product_edit,
    product_update,
    product_action,
    product_image,
    product_image_delete,
    product_variants,
    inventory,
    stock_set,
    orders,
    order_detail,
    order_ship,
    order_update,
    order_refund,
    categories,
    category_create,
    category_edit,
    category_update,
    customers,
    customer_detail,
    customer_action,
    emails,
    email_detail,
    email_retry,
]
