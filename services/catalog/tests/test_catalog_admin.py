"""The admin API: products, categories, images, inventory; roles; audit; cache invalidation."""

from __future__ import annotations

import asyncio
import io
import uuid
from typing import Any

import httpx
from catalog.cache import CatalogCache
from catalog_testkit import Kit, assert_problem, unique
from ember_devkit.testing.tokens import TokenFactory
from ember_shared.settings import DatabaseSettings
from litestar import Litestar
from PIL import Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

Client = httpx.AsyncClient


async def _scalar(sql: str, **params: Any) -> Any:
    engine = create_async_engine(DatabaseSettings().async_url)
    try:
        async with engine.connect() as connection:
            return (await connection.execute(text(sql), params)).scalar()
    finally:
        await engine.dispose()


async def _rows(sql: str, **params: Any) -> list[Any]:
    engine = create_async_engine(DatabaseSettings().async_url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(text(sql), params)).mappings())
    finally:
        await engine.dispose()


def png(width: int = 64, height: int = 48, color: str = "sienna") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


# --- who may ----------------------------------------------------------------------------


async def test_admin_routes_need_the_admin_role(client: Client, tokens: TokenFactory) -> None:
    customer, _ = tokens.customer()
    for method, url in (
        ("GET", "/api/admin/products"),
        ("POST", "/api/admin/products"),
        ("GET", "/api/admin/categories"),
        ("GET", "/api/admin/inventory"),
        ("PUT", "/api/admin/inventory"),
        ("POST", "/api/admin/upload-image"),
    ):
        anonymous = await client.request(method, url, json={})
        assert_problem(anonymous, 401)
        forbidden = await client.request(method, url, json={}, headers=tokens.bearer(customer))
        assert_problem(forbidden, 403, "forbidden")
    expired = tokens.mint(roles=("admin",), expires_in=-60)
    assert_problem(
        await client.get("/api/admin/products", headers=tokens.bearer(expired)),
        401,
        "token-expired",
    )


# --- products ---------------------------------------------------------------------------


async def test_create_product_and_read_it_back(client: Client, kit: Kit) -> None:
    category = await kit.category()
    created = await kit.product(
        name="  Guatemala Antigua  ",
        price=1750,
        category_id=category["id"],
        roast="medium",
        tasting_notes=["Toffee"],
        on_hand=12,
    )
    assert created["name"] == "Guatemala Antigua"
    assert created["slug"].startswith("guatemala-antigua")
    assert created["currency"] == "USD"
    assert created["stock"] == {
        "on_hand": 12,
        "reserved": 0,
        "available": 12,
        "availability": "in_stock",
    }
    fetched = await client.get(f"/api/admin/products/{created['id']}", headers=kit.admin)
    assert fetched.json()["id"] == created["id"]
    again = await kit.product(name="Guatemala Antigua")
    assert again["slug"] != created["slug"]


async def test_slug_is_unique_case_insensitively_and_a_duplicate_changes_nothing(
    client: Client, kit: Kit
) -> None:
    slug = unique("kenya-nyeri")
    await kit.product(slug=slug)
    before = await _scalar("SELECT count(*) FROM catalog.products")
    audit_before = await _scalar("SELECT count(*) FROM catalog.audit_log")
    response = await client.post(
        "/api/admin/products",
        json={"name": "Kenya", "price": 100, "slug": slug.upper()},
        headers=kit.admin,
    )
    assert_problem(response, 409, "duplicate-slug")
    assert await _scalar("SELECT count(*) FROM catalog.products") == before
    assert await _scalar("SELECT count(*) FROM catalog.audit_log") == audit_before

    other = await kit.product()
    taken = await client.patch(
        f"/api/admin/products/{other['id']}", json={"slug": slug}, headers=kit.admin
    )
    assert_problem(taken, 409, "duplicate-slug")


async def test_invalid_product_input_is_refused_and_changes_nothing(
    client: Client, kit: Kit
) -> None:
    before = await _scalar("SELECT count(*) FROM catalog.products")
    for payload in (
        {"name": "Negative", "price": -1},
        {"name": "Float", "price": 12.5},
        {"name": "", "price": 100},
        {"name": "   ", "price": 100},
        {"name": "Huge", "price": 100_000_001},
        {"name": "Cur", "price": 100, "currency": "usd"},
        {"name": "Slug", "price": 100, "slug": "bad slug!"},
        {"name": "Nul\x00", "price": 100},
        {"name": "Extra", "price": 100, "colour": "red"},
        {"name": "Roast", "price": 100, "roast": "burnt"},
        {"name": "Stock", "price": 100, "on_hand": -5},
    ):
        body = assert_problem(
            await client.post("/api/admin/products", json=payload, headers=kit.admin), 400
        )
        assert body["type"].endswith("/validation"), (payload, body)
    unknown_category = await client.post(
        "/api/admin/products",
        json={"name": "X", "price": 1, "category_id": str(uuid.uuid4())},
        headers=kit.admin,
    )
    assert_problem(unknown_category, 400, "unknown-category")
    uuid_slug = await client.post(
        "/api/admin/products",
        json={"name": "X", "price": 1, "slug": str(uuid.uuid4())},
        headers=kit.admin,
    )
    assert_problem(uuid_slug, 400, "invalid-slug")
    not_json = await client.post(
        "/api/admin/products",
        content=b"{not json",
        headers={**kit.admin, "Content-Type": "application/json"},
    )
    assert_problem(not_json, 400)
    assert await _scalar("SELECT count(*) FROM catalog.products") == before
    product = await kit.product(price=900)
    negative = await client.patch(
        f"/api/admin/products/{product['id']}", json={"price": -10}, headers=kit.admin
    )
    assert_problem(negative, 400, "validation")
    assert (await client.get(f"/api/products/{product['slug']}")).json()["price"] == 900
    assert_problem(
        await client.patch(
            f"/api/admin/products/{uuid.uuid4()}", json={"price": 1}, headers=kit.admin
        ),
        404,
    )


def _price_in(items: list[dict[str, Any]], product_id: str) -> int:
    """The price search shows for one product (other tests' products may rank beside it)."""
    return int(next(item for item in items if item["id"] == product_id)["price"])


async def test_a_price_change_is_seen_by_shoppers_at_once(
    client: Client, kit: Kit, cache: CatalogCache
) -> None:
    category = await kit.category()
    product = await kit.product(price=1200, category_id=category["id"])
    # Warm every cached answer that shows the price.
    page = await client.get(f"/api/products/{product['slug']}")
    by_id = await client.get(f"/api/products/{product['id']}")
    listing = await client.get("/api/products", params={"category": category["slug"]})
    search = await client.get("/api/products/search", params={"q": product["name"]})
    assert (await client.get(f"/api/products/{product['slug']}")).headers["x-cache"] == "hit"
    assert [r.json().get("price") for r in (page, by_id)] == [1200, 1200]
    assert listing.json()["items"][0]["price"] == 1200
    assert _price_in(search.json()["items"], product["id"]) == 1200

    updated = await client.patch(
        f"/api/admin/products/{product['id']}", json={"price": 1350}, headers=kit.admin
    )
    assert updated.status_code == 200
    assert updated.json()["price"] == 1350
    assert (await client.get(f"/api/products/{product['slug']}")).json()["price"] == 1350
    assert (await client.get(f"/api/products/{product['id']}")).json()["price"] == 1350
    assert (await client.get("/api/products", params={"category": category["slug"]})).json()[
        "items"
    ][0]["price"] == 1350
    searched = await client.get("/api/products/search", params={"q": product["name"]})
    assert _price_in(searched.json()["items"], product["id"]) == 1350


async def test_a_slug_change_retires_the_old_address(client: Client, kit: Kit) -> None:
    product = await kit.product()
    assert (await client.get(f"/api/products/{product['slug']}")).status_code == 200
    new_slug = unique("renamed")
    response = await client.patch(
        f"/api/admin/products/{product['id']}", json={"slug": new_slug}, headers=kit.admin
    )
    assert response.json()["slug"] == new_slug
    assert_problem(await client.get(f"/api/products/{product['slug']}"), 404)
    assert (await client.get(f"/api/products/{new_slug}")).status_code == 200


async def test_archive_and_restore(client: Client, kit: Kit) -> None:
    category = await kit.category()
    product = await kit.product(category_id=category["id"])
    assert (await client.get("/api/products", params={"category": category["slug"]})).json()[
        "total"
    ] == 1
    archived = await client.post(f"/api/admin/products/{product['id']}/archive", headers=kit.admin)
    assert archived.json()["active"] is False
    assert archived.json()["archived_at"]
    assert (await client.get("/api/products", params={"category": category["slug"]})).json()[
        "total"
    ] == 0
    assert_problem(await client.get(f"/api/products/{product['slug']}"), 404)
    listed = await client.get(
        "/api/admin/products",
        params={"status": "archived", "q": product["slug"]},
        headers=kit.admin,
    )
    assert [p["id"] for p in listed.json()["items"]] == [product["id"]]
    restored = await client.post(f"/api/admin/products/{product['id']}/restore", headers=kit.admin)
    assert restored.json()["active"] is True
    assert (await client.get(f"/api/products/{product['slug']}")).status_code == 200


async def test_every_admin_write_is_audited_with_before_and_after(
    client: Client, kit: Kit, tokens: TokenFactory
) -> None:
    token, admin_id = tokens.admin(email="roaster@ember.test")
    headers = tokens.bearer(token)
    created = await client.post(
        "/api/admin/products", json={"name": unique("Audit"), "price": 1000}, headers=headers
    )
    product_id = created.json()["id"]
    await client.patch(f"/api/admin/products/{product_id}", json={"price": 1100}, headers=headers)
    await client.put(f"/api/admin/inventory/{product_id}", json={"on_hand": 7}, headers=headers)
    await client.post(f"/api/admin/products/{product_id}/archive", headers=headers)
    rows = await _rows(
        "SELECT actor_id, actor_email, action, entity, before, after FROM catalog.audit_log "
        "WHERE entity_id = :id ORDER BY at, id",
        id=product_id,
    )
    assert [r["action"] for r in rows] == [
        "product.created",
        "product.updated",
        "inventory.set",
        "product.archived",
    ]
    assert {r["actor_id"] for r in rows} == {admin_id}
    assert {r["actor_email"] for r in rows} == {"roaster@ember.test"}
    assert rows[0]["before"] is None
    assert rows[0]["after"]["price"] == 1000
    assert (rows[1]["before"]["price"], rows[1]["after"]["price"]) == (1000, 1100)
    assert rows[2]["before"] == {"on_hand": 0, "reserved": 0}
    assert rows[2]["after"] == {"on_hand": 7, "reserved": 0}
    assert (rows[3]["before"]["active"], rows[3]["after"]["active"]) == (True, False)


# --- categories -------------------------------------------------------------------------


async def test_category_crud_and_display_order(client: Client, kit: Kit) -> None:
    first = await kit.category(name=unique("Decaf"))
    second = await kit.category(name=unique("Blends"))
    assert second["display_order"] > first["display_order"]
    duplicate = await client.post(
        "/api/admin/categories", json={"name": first["name"].upper()}, headers=kit.admin
    )
    assert_problem(duplicate, 409, "duplicate-name")
    same_slug = await client.post(
        "/api/admin/categories",
        json={"name": unique("Other"), "slug": first["slug"]},
        headers=kit.admin,
    )
    assert_problem(same_slug, 409, "duplicate-slug")

    renamed = await client.patch(
        f"/api/admin/categories/{first['id']}",
        json={"name": first["name"] + " Roasts"},
        headers=kit.admin,
    )
    assert renamed.status_code == 200
    assert renamed.json()["name"].endswith(" Roasts")

    everything = (await client.get("/api/admin/categories", headers=kit.admin)).json()["items"]
    order = [c["id"] for c in everything]
    order.remove(second["id"])
    order.insert(0, second["id"])
    reordered = await client.put(
        "/api/admin/categories/order", json={"category_ids": order}, headers=kit.admin
    )
    assert reordered.status_code == 200, reordered.text
    public = [c["id"] for c in (await client.get("/api/categories")).json()["items"]]
    assert public == order
    partial = await client.put(
        "/api/admin/categories/order", json={"category_ids": order[:1]}, headers=kit.admin
    )
    assert_problem(partial, 400, "category-order")

    in_use = await kit.category()
    await kit.product(category_id=in_use["id"])
    assert_problem(
        await client.delete(f"/api/admin/categories/{in_use['id']}", headers=kit.admin),
        409,
        "category-in-use",
    )
    gone = await client.delete(f"/api/admin/categories/{first['id']}", headers=kit.admin)
    assert gone.status_code == 204
    assert first["id"] not in [
        c["id"] for c in (await client.get("/api/categories")).json()["items"]
    ]
    assert_problem(
        await client.delete(f"/api/admin/categories/{first['id']}", headers=kit.admin), 404
    )


async def test_renaming_a_category_updates_product_pages_and_search(
    client: Client, kit: Kit
) -> None:
    category = await kit.category(name=unique("Seasonal"))
    product = await kit.product(category_id=category["id"])
    assert (await client.get(f"/api/products/{product['slug']}")).json()["category"][
        "name"
    ] == category["name"]
    word = "Festive" + uuid.uuid4().hex[:6]
    await client.patch(
        f"/api/admin/categories/{category['id']}", json={"name": word}, headers=kit.admin
    )
    assert (await client.get(f"/api/products/{product['slug']}")).json()["category"]["name"] == word
    found = (await client.get("/api/products/search", params={"q": word})).json()["items"]
    assert [i["id"] for i in found] == [product["id"]]


# --- images -----------------------------------------------------------------------------


async def test_upload_an_image_and_attach_it(
    client: Client, kit: Kit, catalog_app: Litestar
) -> None:
    upload = await client.post(
        "/api/admin/upload-image",
        files={"file": ("bag.png", png(), "image/png")},
        headers=kit.admin,
    )
    assert upload.status_code == 201, upload.text
    stored = upload.json()
    assert stored["url"].startswith("/media/products/")
    assert stored["url"].endswith(".webp")
    assert (stored["width"], stored["height"], stored["content_type"]) == (64, 48, "image/webp")
    path = catalog_app.state.media_store.path_of(stored["key"])
    assert path.read_bytes()[:4] == b"RIFF"
    same = await client.post(
        "/api/admin/upload-image",
        files={"file": ("copy.png", png(), "image/png")},
        headers=kit.admin,
    )
    assert same.json()["key"] == stored["key"]

    product = await kit.product()
    first = await client.post(
        f"/api/admin/products/{product['id']}/images",
        json={"url": stored["url"], "key": stored["key"], "alt": "Front"},
        headers=kit.admin,
    )
    assert first.json()["primary"] is True
    second = await client.post(
        f"/api/admin/products/{product['id']}/images",
        json={"url": "/media/products/side.webp", "alt": "Side", "primary": True},
        headers=kit.admin,
    )
    assert second.json()["primary"] is True
    page = (await client.get(f"/api/products/{product['slug']}")).json()
    assert [(i["alt"], i["primary"]) for i in page["images"]] == [("Front", False), ("Side", True)]
    listing = (await client.get("/api/products/search", params={"q": product["name"]})).json()
    assert listing["items"][0]["image"] == {"url": "/media/products/side.webp", "alt": "Side"}


async def test_image_order_primary_and_removal(client: Client, kit: Kit) -> None:
    product = await kit.product()
    ids = []
    for name in ("a", "b", "c"):
        response = await client.post(
            f"/api/admin/products/{product['id']}/images",
            json={"url": f"/media/{name}.webp", "alt": name},
            headers=kit.admin,
        )
        ids.append(response.json()["id"])
    reordered = await client.put(
        f"/api/admin/products/{product['id']}/images/order",
        json={"image_ids": [ids[2], ids[0], ids[1]]},
        headers=kit.admin,
    )
    assert [i["alt"] for i in reordered.json()] == ["c", "a", "b"]
    assert [
        i["alt"] for i in (await client.get(f"/api/products/{product['slug']}")).json()["images"]
    ] == ["c", "a", "b"]
    bad_order = await client.put(
        f"/api/admin/products/{product['id']}/images/order",
        json={"image_ids": [ids[0], ids[0], ids[1]]},
        headers=kit.admin,
    )
    assert_problem(bad_order, 400, "image-order")

    made_primary = await client.patch(
        f"/api/admin/products/{product['id']}/images/{ids[1]}",
        json={"primary": True, "alt": "b!"},
        headers=kit.admin,
    )
    assert made_primary.json()["primary"] is True
    page = (await client.get(f"/api/products/{product['slug']}")).json()
    assert [(i["alt"], i["primary"]) for i in page["images"]] == [
        ("c", False),
        ("a", False),
        ("b!", True),
    ]
    moved = await client.patch(
        f"/api/admin/products/{product['id']}/images/{ids[1]}",
        json={"position": 0},
        headers=kit.admin,
    )
    assert moved.json()["position"] == 0

    removed = await client.delete(
        f"/api/admin/products/{product['id']}/images/{ids[1]}", headers=kit.admin
    )
    assert removed.status_code == 204
    page = (await client.get(f"/api/products/{product['slug']}")).json()
    assert [(i["alt"], i["position"], i["primary"]) for i in page["images"]] == [
        ("c", 0, True),
        ("a", 1, False),
    ]
    assert_problem(
        await client.delete(
            f"/api/admin/products/{product['id']}/images/{ids[1]}", headers=kit.admin
        ),
        404,
    )


async def test_uploads_that_are_not_images_or_too_big_are_refused(
    client: Client, kit: Kit, catalog_app: Litestar
) -> None:
    limit = catalog_app.state.catalog_settings.max_upload_bytes
    root = catalog_app.state.media_store.root / "products"
    before = sorted(root.glob("*")) if root.exists() else []

    text_file = await client.post(
        "/api/admin/upload-image",
        files={"file": ("bag.png", b"hello, not an image", "image/png")},
        headers=kit.admin,
    )
    assert_problem(text_file, 415, "unsupported-image")
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, "GIF")
    assert_problem(
        await client.post(
            "/api/admin/upload-image",
            files={"file": ("a.gif", gif.getvalue(), "image/gif")},
            headers=kit.admin,
        ),
        415,
        "unsupported-image",
    )
    truncated = png(200, 200)[:-40]
    assert_problem(
        await client.post(
            "/api/admin/upload-image",
            files={"file": ("t.png", truncated, "image/png")},
            headers=kit.admin,
        ),
        400,
        "invalid-image",
    )
    assert_problem(
        await client.post(
            "/api/admin/upload-image",
            files={"file": ("e.png", b"", "image/png")},
            headers=kit.admin,
        ),
        400,
    )
    big = png(10, 10) + b"\0" * (limit + 10)
    too_big = await client.post(
        "/api/admin/upload-image", files={"file": ("big.png", big, "image/png")}, headers=kit.admin
    )
    assert too_big.status_code == 413
    assert too_big.headers["content-type"].startswith("application/problem+json")
    far_too_big = b"\0" * (limit * 2)
    assert (
        await client.post(
            "/api/admin/upload-image",
            files={"file": ("big.png", far_too_big, "image/png")},
            headers=kit.admin,
        )
    ).status_code == 413
    missing = await client.post(
        "/api/admin/upload-image", files={"other": ("x.png", png(), "image/png")}, headers=kit.admin
    )
    assert_problem(missing, 400)
    after = sorted(root.glob("*")) if root.exists() else []
    assert after == before


async def test_uploads_lose_their_metadata(client: Client, kit: Kit, catalog_app: Litestar) -> None:
    source = Image.new("RGB", (40, 30), "teal")
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x8825] = {2: (51.0, 30.0, 0.0)}  # GPS latitude
    exif[0x0112] = 6  # rotated: 90 degrees clockwise
    out = io.BytesIO()
    source.save(out, "JPEG", exif=exif)
    assert b"SecretCam" in out.getvalue()
    response = await client.post(
        "/api/admin/upload-image",
        files={"file": ("p.jpg", out.getvalue(), "image/jpeg")},
        headers=kit.admin,
    )
    assert response.status_code == 201, response.text
    stored = catalog_app.state.media_store.path_of(response.json()["key"]).read_bytes()
    assert b"SecretCam" not in stored
    with Image.open(io.BytesIO(stored)) as image:
        assert image.format == "WEBP"
        assert not image.getexif()
        assert image.size == (30, 40)  # the orientation was applied, then dropped


# --- inventory --------------------------------------------------------------------------


async def test_inventory_shows_counts_and_sets_on_hand(client: Client, kit: Kit) -> None:
    product = await kit.product(on_hand=10)
    assert (await client.get(f"/api/products/{product['slug']}")).json()[
        "availability"
    ] == "in_stock"
    listed = await client.get(
        "/api/admin/inventory", params={"q": product["slug"]}, headers=kit.admin
    )
    row = listed.json()["items"][0]
    assert (row["on_hand"], row["reserved"], row["available"]) == (10, 0, 10)

    low = await kit.set_stock(product["id"], 2)
    assert low.status_code == 200, low.text
    assert low.json()["availability"] == "low_stock"
    assert (await client.get(f"/api/products/{product['slug']}")).json()[
        "availability"
    ] == "low_stock"
    assert (await kit.set_stock(product["id"], 0)).json()["availability"] == "sold_out"
    assert (await client.get(f"/api/products/{product['slug']}")).json()[
        "availability"
    ] == "sold_out"
    only_low = await client.get(
        "/api/admin/inventory", params={"low": "true", "q": product["slug"]}, headers=kit.admin
    )
    assert [r["product_id"] for r in only_low.json()["items"]] == [product["id"]]

    assert_problem(await kit.set_stock(product["id"], -1), 400, "validation")
    assert_problem(await kit.set_stock(str(uuid.uuid4()), 5), 404)


async def test_bulk_inventory_is_all_or_nothing(client: Client, kit: Kit) -> None:
    a = await kit.product(on_hand=3)
    b = await kit.product(on_hand=4)
    ok = await client.put(
        "/api/admin/inventory",
        json={
            "items": [
                {"product_id": a["id"], "on_hand": 30},
                {"product_id": b["id"], "on_hand": 40},
            ]
        },
        headers=kit.admin,
    )
    assert ok.status_code == 200, ok.text
    assert {r["product_id"]: r["on_hand"] for r in ok.json()["items"]} == {a["id"]: 30, b["id"]: 40}
    failing = await client.put(
        "/api/admin/inventory",
        json={
            "items": [
                {"product_id": a["id"], "on_hand": 1},
                {"product_id": str(uuid.uuid4()), "on_hand": 1},
            ]
        },
        headers=kit.admin,
    )
    assert_problem(failing, 404)
    duplicate = await client.put(
        "/api/admin/inventory",
        json={
            "items": [{"product_id": a["id"], "on_hand": 1}, {"product_id": a["id"], "on_hand": 2}]
        },
        headers=kit.admin,
    )
    assert_problem(duplicate, 400, "duplicate-product")
    current = (await client.get(f"/api/admin/products/{a['id']}", headers=kit.admin)).json()[
        "stock"
    ]
    assert current["on_hand"] == 30


async def test_on_hand_cannot_go_below_what_checkouts_hold(
    client: Client, kit: Kit, service_headers: dict[str, str]
) -> None:
    product = await kit.product(on_hand=10)
    reserved = await client.post(
        "/internal/catalog/reservations",
        json={
            "order_id": str(uuid.uuid4()),
            "lines": [{"product_id": product["id"], "quantity": 6}],
            "ttl_seconds": 600,
        },
        headers=service_headers,
    )
    assert reserved.status_code == 201
    body = assert_problem(await kit.set_stock(product["id"], 5), 409, "stock-reserved")
    assert body["reserved"] == 6
    assert (await kit.set_stock(product["id"], 6)).json()["available"] == 0


async def test_concurrent_admin_writes_and_reads_never_leave_a_stale_price(
    client: Client, kit: Kit
) -> None:
    product = await kit.product(price=1000)
    url = f"/api/products/{product['slug']}"

    async def reader() -> None:
        for _ in range(20):
            await client.get(url)

    for price in (1100, 1200, 1300, 1400):
        readers = [asyncio.create_task(reader()) for _ in range(4)]
        response = await client.patch(
            f"/api/admin/products/{product['id']}", json={"price": price}, headers=kit.admin
        )
        assert response.status_code == 200
        assert (await client.get(url)).json()["price"] == price
        await asyncio.gather(*readers)
        assert (await client.get(url)).json()["price"] == price
