"""Browsing pages as a search engine and a phone see them: descriptions, canonical addresses,
the sitemap, robots.txt and a coffee's Product/Offer structured data."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import httpx
import pytest
from browser_testkit import Person
from playwright.async_api import expect
from storefront_testkit import DEMO_SLUGS, Shop

pytestmark = [pytest.mark.stack, pytest.mark.browser]


async def test_pages_tell_search_engines_what_they_are(
    person: Person, browser_shop: Shop, screenshots: Path
) -> None:
    page = person.page
    browser_shop.product(DEMO_SLUGS[0])
    coffee = browser_shop.http.get(f"/api/products/{DEMO_SLUGS[0]}").json()
    category = coffee["category"]
    base = browser_shop.stack.url

    await person.open(f"/coffee/{coffee['slug']}?utm_source=mail")
    await expect(page.locator("link[rel=canonical]")).to_have_attribute(
        "href", f"{base}/coffee/{coffee['slug']}"
    )
    description = await page.locator("meta[name=description]").get_attribute("content")
    assert description == coffee["summary"]
    (ld,) = [
        json.loads(text)
        for text in await page.locator("script[type='application/ld+json']").all_text_contents()
    ]
    assert ld["@type"] == "Product"
    assert ld["name"] == coffee["name"]
    assert ld["url"] == f"{base}/coffee/{coffee['slug']}"
    assert ld["offers"]["@type"] == "Offer"
    assert ld["offers"]["price"] == f"{coffee['price'] // 100}.{coffee['price'] % 100:02d}"
    assert ld["offers"]["priceCurrency"] == "USD"
    assert ld["offers"]["availability"] == "https://schema.org/InStock"
    assert all(url.startswith(("http://", "https://")) for url in ld["image"])

    # A category is a page of its own; a sort of it is not.
    await person.open(f"/shop?category={category['slug']}&sort=price")
    await expect(page.locator("link[rel=canonical]")).to_have_attribute(
        "href", f"{base}/shop?category={category['slug']}"
    )
    shop_description = await page.locator("meta[name=description]").get_attribute("content")
    await person.open("/")
    home_description = await page.locator("meta[name=description]").get_attribute("content")
    assert shop_description
    assert home_description
    assert shop_description != home_description
    await expect(page.locator("link[rel=canonical]")).to_have_attribute("href", f"{base}/")
    assert person.csp_violations() == []

    async with httpx.AsyncClient(base_url=base, timeout=20) as crawler:
        robots = await crawler.get("/robots.txt")
        sitemap = await crawler.get("/sitemap.xml")
    assert robots.status_code == 200
    assert f"Sitemap: {base}/sitemap.xml" in robots.text
    assert re.search(r"^Disallow: /checkout$", robots.text, re.M)
    assert re.search(r"^Disallow: /account$", robots.text, re.M)
    assert sitemap.status_code == 200
    assert sitemap.headers["content-type"].startswith("application/xml")
    locations = re.findall(r"<loc>([^<]+)</loc>", sitemap.text)
    assert f"{base}/coffee/{coffee['slug']}" in locations
    assert f"{base}/shop?category={category['slug']}" in locations
    assert f"{base}/" in locations


async def test_pictures_come_in_the_size_the_page_shows_them(
    person: Person, browser_shop: Shop
) -> None:
    """A card in the grid loads the 320-px copy made at upload, and shows the coffee's second
    picture while the pointer rests on it; the gallery asks for a size this (600-px) picture
    never had and gets the full picture instead of a broken image."""
    page = person.page
    coffee = browser_shop.product(DEMO_SLUGS[1])
    if len(coffee["images"]) < 2:
        second = resources.files("catalog.demo").joinpath("images", "beans-dark.webp")
        browser_shop.add_image(coffee["id"], second.read_bytes(), "The beans")
    await person.open(f"/search?q={coffee['name']}")
    link = page.locator(f"a[href='/coffee/{coffee['slug']}']").first
    card = link.locator("img.product-card__image").first
    await expect(card).to_have_attribute("srcset", re.compile(r"-w320\.webp 320w"))
    await expect(card).to_have_js_property("complete", True)
    assert (await card.evaluate("img => img.currentSrc")).endswith("-w320.webp")
    assert await card.evaluate("img => img.naturalWidth") == 320
    hover = link.get_by_test_id("hover-image")
    await expect(hover).to_have_css("opacity", "0")
    await link.hover()
    await expect(hover).to_have_css("opacity", "1")
    await expect(hover).to_have_js_property("complete", True)
    assert await hover.evaluate("img => img.naturalWidth") == 320

    await person.open(f"/coffee/{coffee['slug']}")
    main = page.get_by_test_id("gallery-main")
    await expect(main).to_have_js_property("complete", True)
    current = await main.evaluate("img => img.currentSrc")
    assert re.search(r"-w(640|960)\.webp$", current), current
    assert await main.evaluate("img => img.naturalWidth") == 600
    assert person.csp_violations() == []
