"""The public shopper API: listings, product pages, categories, search, and bad input."""

from __future__ import annotations

import uuid

import httpx
import pytest
from catalog.products import repositories
from catalog_testkit import Kit, assert_problem, unique

Client = httpx.AsyncClient


async def test_listing_pages_filters_and_shows_only_active_products(
    client: Client, kit: Kit
) -> None:
    category = await kit.category()
    made = [await kit.product(category_id=category["id"], price=1000 + i * 100) for i in range(5)]
    archived = await kit.product(category_id=category["id"])
    assert (
        await client.post(f"/api/admin/products/{archived['id']}/archive", headers=kit.admin)
    ).status_code == 200

    first = await client.get("/api/products", params={"category": category["slug"], "page_size": 2})
    assert first.status_code == 200
    body = first.json()
    assert body["total"] == 5
    assert body["pages"] == 3
    assert body["page"] == 1
    assert len(body["items"]) == 2
    # newest first by default
    assert [i["id"] for i in body["items"]] == [made[4]["id"], made[3]["id"]]

    last = (
        await client.get(
            "/api/products", params={"category": category["slug"], "page_size": 2, "page": 3}
        )
    ).json()
    assert [i["id"] for i in last["items"]] == [made[0]["id"]]
    beyond = (
        await client.get("/api/products", params={"category": category["slug"], "page": 9})
    ).json()
    assert beyond["items"] == []
    assert beyond["total"] == 5

    listed = {
        i["id"]
        for i in (await client.get("/api/products", params={"category": category["slug"]})).json()[
            "items"
        ]
    }
    assert archived["id"] not in listed
    assert listed == {p["id"] for p in made}


async def test_listing_totals_follow_archive_restore_and_category_moves(
    client: Client, kit: Kit
) -> None:
    """Totals come from counts kept by triggers, not from counting rows: every way a product
    starts or stops being listed (create, archive, restore, a move between categories) keeps
    each listing's total equal to what it lists."""
    first, second = await kit.category(), await kit.category()

    async def totals() -> tuple[int, int, int]:
        found = []
        for slug in (first["slug"], second["slug"], None):
            params = {"page_size": 100, **({"category": slug} if slug else {})}
            body = (await client.get("/api/products", params=params)).json()
            found.append(body["total"])
        return found[0], found[1], found[2]

    everything = (await totals())[2]
    made = [await kit.product(category_id=first["id"]) for _ in range(3)]
    assert await totals() == (3, 0, everything + 3)

    archived = await client.post(f"/api/admin/products/{made[0]['id']}/archive", headers=kit.admin)
    assert archived.status_code == 200, archived.text
    moved = await client.patch(
        f"/api/admin/products/{made[1]['id']}",
        json={"category_id": second["id"], "name": unique("Moved")},
        headers=kit.admin,
    )
    assert moved.status_code == 200, moved.text
    assert await totals() == (1, 1, everything + 2)

    restored = await client.post(f"/api/admin/products/{made[0]['id']}/restore", headers=kit.admin)
    assert restored.status_code == 200, restored.text
    assert await totals() == (2, 1, everything + 3)
    listed = (
        await client.get("/api/products", params={"category": first["slug"], "page_size": 100})
    ).json()
    assert {i["id"] for i in listed["items"]} == {made[0]["id"], made[2]["id"]}
    past_the_end = (
        await client.get("/api/products", params={"category": first["slug"], "page": 2})
    ).json()
    assert (past_the_end["items"], past_the_end["total"]) == ([], 2)


async def test_listing_sorts_by_price_and_name(client: Client, kit: Kit) -> None:
    category = await kit.category()
    await kit.product(category_id=category["id"], name=unique("Bravo"), price=2000)
    await kit.product(category_id=category["id"], name=unique("alpha"), price=3000)
    await kit.product(category_id=category["id"], name=unique("Charlie"), price=1000)

    def names(response_json: dict[str, object]) -> list[str]:
        return [str(i["name"]).split("-")[0] for i in response_json["items"]]  # type: ignore[attr-defined]

    by_price = (
        await client.get("/api/products", params={"category": category["slug"], "sort": "price"})
    ).json()
    assert [i["price"] for i in by_price["items"]] == [1000, 2000, 3000]
    by_price_desc = (
        await client.get(
            "/api/products", params={"category": category["slug"], "sort": "price_desc"}
        )
    ).json()
    assert [i["price"] for i in by_price_desc["items"]] == [3000, 2000, 1000]
    by_name = (
        await client.get("/api/products", params={"category": category["slug"], "sort": "name"})
    ).json()
    assert names(by_name) == ["alpha", "Bravo", "Charlie"]
    assert by_name["sort"] == "name"


async def test_prices_are_integer_minor_units_with_currency(client: Client, kit: Kit) -> None:
    product = await kit.product(price=1995, currency="EUR")
    page = (await client.get(f"/api/products/{product['slug']}")).json()
    assert page["price"] == 1995
    assert isinstance(page["price"], int)
    assert page["currency"] == "EUR"
    listing = (
        await client.get("/api/products", params={"sort": "newest", "page_size": 100})
    ).json()
    item = next(i for i in listing["items"] if i["id"] == product["id"])
    assert (item["price"], item["currency"]) == (1995, "EUR")


async def test_availability_is_a_level_never_a_count(client: Client, kit: Kit) -> None:
    plenty = await kit.product(on_hand=50)
    few = await kit.product(on_hand=5)
    none = await kit.product(on_hand=0)
    levels = {}
    for product in (plenty, few, none):
        response = await client.get(f"/api/products/{product['slug']}")
        assert response.status_code == 200
        for word in ("on_hand", "reserved", '"available"'):
            assert word not in response.text
        levels[product["id"]] = response.json()["availability"]
    assert levels == {plenty["id"]: "in_stock", few["id"]: "low_stock", none["id"]: "sold_out"}
    listing = await client.get("/api/products", params={"page_size": 100})
    assert "on_hand" not in listing.text
    assert "reserved" not in listing.text


async def test_product_page_by_slug_any_case_and_by_id_with_images(
    client: Client, kit: Kit
) -> None:
    category = await kit.category()
    product = await kit.product(
        category_id=category["id"],
        summary="Stone fruit",
        description="A long story.\nTwo lines.",
        origin="Huila, Colombia",
        roast="medium",
        tasting_notes=["Peach", "Cocoa"],
        weight_grams=340,
    )
    for url in ("/media/products/a.webp", "/media/products/b.webp"):
        added = await client.post(
            f"/api/admin/products/{product['id']}/images",
            json={"url": url, "alt": "bag"},
            headers=kit.admin,
        )
        assert added.status_code == 201, added.text

    by_slug = await client.get(f"/api/products/{product['slug'].upper()}")
    assert by_slug.status_code == 200
    page = by_slug.json()
    assert page["id"] == product["id"]
    assert page["category"] == {
        "id": category["id"],
        "slug": category["slug"],
        "name": category["name"],
    }
    assert page["tasting_notes"] == ["Peach", "Cocoa"]
    assert page["description"] == "A long story.\nTwo lines."
    assert [(i["url"], i["position"], i["primary"]) for i in page["images"]] == [
        ("/media/products/a.webp", 0, True),
        ("/media/products/b.webp", 1, False),
    ]
    by_id = await client.get(f"/api/products/{product['id']}")
    assert by_id.status_code == 200
    assert by_id.json() == page


async def test_unknown_and_archived_products_are_404_problems(client: Client, kit: Kit) -> None:
    assert_problem(await client.get("/api/products/no-such-coffee"), 404, "not-found")
    assert_problem(await client.get(f"/api/products/{uuid.uuid4()}"), 404, "not-found")
    product = await kit.product()
    await client.post(f"/api/admin/products/{product['id']}/archive", headers=kit.admin)
    assert_problem(await client.get(f"/api/products/{product['slug']}"), 404, "not-found")


async def test_categories_are_listed_in_display_order(client: Client, kit: Kit) -> None:
    late = await kit.category(display_order=9000)
    early = await kit.category(display_order=8999)
    items = (await client.get("/api/categories")).json()["items"]
    ids = [c["id"] for c in items]
    assert ids.index(early["id"]) < ids.index(late["id"])
    orders = [c["display_order"] for c in items]
    assert orders == sorted(orders)


async def test_cached_answers_carry_an_etag_and_answer_304(client: Client, kit: Kit) -> None:
    product = await kit.product()
    first = await client.get(f"/api/products/{product['slug']}")
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "public, no-cache"
    again = await client.get(f"/api/products/{product['slug']}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.headers["x-cache"] == "hit"
    assert again.content == b""


async def test_bad_query_strings_are_problems(client: Client) -> None:
    for params in (
        {"page": "abc"},
        {"page": "0"},
        {"page": "99999999999999999999"},
        {"page_size": "101"},
        {"page_size": "-1"},
        {"sort": "cheapest"},
        {"category": "no spaces allowed"},
    ):
        body = assert_problem(await client.get("/api/products", params=params), 400, "validation")
        assert body["errors"], body
    assert_problem(
        await client.get("/api/products", params={"category": "no-such-category"}), 404, "not-found"
    )


async def test_search_tolerates_typos_and_partial_words(client: Client, kit: Kit) -> None:
    marker = uuid.uuid4().hex[:6]
    ethiopia = await kit.product(
        name=f"Ethiopia Yirgacheffe {marker}",
        origin="Gedeo Zone, Ethiopia",
        tasting_notes=["Jasmine", "Bergamot"],
        description="Floral washed coffee from smallholders.",
    )
    await kit.product(name=f"Colombia Huila {marker}", description="Caramel and red apple.")

    typo = await client.get("/api/products/search", params={"q": "etiopia"})
    assert typo.status_code == 200
    body = typo.json()
    assert ethiopia["id"] in [i["id"] for i in body["items"]]
    assert "ethiopia" in body["matched_words"]

    prefix = (await client.get("/api/products/search", params={"q": "yirg"})).json()
    assert ethiopia["id"] in [i["id"] for i in prefix["items"]]

    both = (await client.get("/api/products/search", params={"q": f"jasmin {marker}"})).json()
    assert [i["id"] for i in both["items"]] == [ethiopia["id"]]


async def test_search_ranks_name_matches_first(client: Client, kit: Kit) -> None:
    word = "zq" + uuid.uuid4().hex[:8]
    in_description = await kit.product(
        name=unique("Plain"), description=f"Tastes a little of {word}."
    )
    in_name = await kit.product(name=f"{word} Reserve")
    items = (await client.get("/api/products/search", params={"q": word})).json()["items"]
    assert [i["id"] for i in items] == [in_name["id"], in_description["id"]]


async def test_search_pools_are_the_same_first_matches_either_way(
    client: Client, kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each candidate pool is the first matches in the table's order, from the GIN index or,
    for a word most products have, from a probe of the table's first products (name matches
    tested on search_vector's weight A): both give the same pools and so the same answer.
    (Which description matches fill a pool is the table's physical order, which earlier tests'
    updates and deletes shuffle: the same for both routes, not the order of creation.)"""
    monkeypatch.setattr(repositories, "SEARCH_CANDIDATES", 2)
    word = "zq" + uuid.uuid4().hex[:8]
    in_text = [
        await kit.product(name=unique("Plain"), description=f"Notes of {word}.") for _ in range(3)
    ]
    in_name = [await kit.product(name=f"{word} Reserve {n}") for n in range(2)]
    answers = []
    # No probe at all, then a probe of the whole table that any word is common enough for.
    for probe_rows, probe_sample, page_size in ((0, 50, 20), (10**6, 0, 21)):
        # A page size of its own for each route: the second must not be the first's cached answer.
        monkeypatch.setattr(repositories, "PROBE_ROWS", probe_rows)
        monkeypatch.setattr(repositories, "PROBE_SAMPLE", probe_sample)
        repositories._search_statements.cache_clear()
        try:
            answers.append(
                (
                    await client.get(
                        "/api/products/search", params={"q": word, "page_size": page_size}
                    )
                ).json()
            )
        finally:
            repositories._search_statements.cache_clear()
    by_index, by_probe = answers
    ids = [item["id"] for item in by_index["items"]]
    assert ids == [item["id"] for item in by_probe["items"]]
    assert by_index["total"] == by_probe["total"] == len(ids)
    # The two name matches, ranked first, then what the description pool held of the rest.
    assert set(ids[:2]) == {p["id"] for p in in_name}
    assert len(ids) <= 4
    assert set(ids[2:]) <= {p["id"] for p in in_text}


async def test_search_input_is_bounded(client: Client) -> None:
    body = assert_problem(
        await client.get("/api/products/search", params={"q": "a" * 10_000}), 400, "validation"
    )
    assert any(e.get("key") == "q" for e in body["errors"])
    assert_problem(await client.get("/api/products/search", params={"q": "a" * 201}), 400)
    assert_problem(await client.get("/api/products/search"), 400)
    assert_problem(await client.get("/api/products/search", params={"q": ""}), 400)
    nothing = await client.get("/api/products/search", params={"q": "!!! ??? &&& |||"})
    assert nothing.status_code == 200
    assert nothing.json()["items"] == []
    operators = await client.get("/api/products/search", params={"q": "a:* & !b | (c"})
    assert operators.status_code == 200
