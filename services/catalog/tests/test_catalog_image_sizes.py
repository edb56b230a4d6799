"""An uploaded picture is also kept in narrower sizes, for the pages' ``srcset``."""

from __future__ import annotations

import io

import httpx
from catalog.media.images import VARIANT_WIDTHS, process_image, variant_key
from catalog_testkit import Kit
from litestar import Litestar
from PIL import Image


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "sienna").save(out, "PNG")
    return out.getvalue()


def test_sizes_narrower_than_the_picture_are_made_and_none_wider() -> None:
    large = process_image(_png(1200, 900), max_side=2000)
    assert [width for width, _ in large.variants] == list(VARIANT_WIDTHS)
    for width, data in large.variants:
        with Image.open(io.BytesIO(data)) as made:
            assert made.format == "WEBP"
            assert made.size == (width, width * 900 // 1200)
    small = process_image(_png(500, 500), max_side=2000)
    assert [width for width, _ in small.variants] == [320]
    assert process_image(_png(300, 200), max_side=2000).variants == ()
    assert variant_key("products/abc.webp", 640) == "products/abc-w640.webp"


async def test_an_upload_stores_its_sizes_beside_it(
    client: httpx.AsyncClient, kit: Kit, catalog_app: Litestar
) -> None:
    upload = await client.post(
        "/api/admin/upload-image",
        files={"file": ("bag.png", _png(700, 700), "image/png")},
        headers=kit.admin,
    )
    assert upload.status_code == 201, upload.text
    key = upload.json()["key"]
    store = catalog_app.state.media_store
    with Image.open(store.path_of(variant_key(key, 320))) as w320:
        assert w320.size == (320, 320)
    with Image.open(store.path_of(variant_key(key, 640))) as w640:
        assert w640.size == (640, 640)
    assert not store.path_of(variant_key(key, 960)).exists()
