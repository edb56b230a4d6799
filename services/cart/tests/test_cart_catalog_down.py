"""When catalog cannot answer: reading a cart degrades, writes that need stock are refused."""

from __future__ import annotations

import socket
import time

import pytest
from cart.catalog import CatalogClient
from cart_testkit import line_of, problem


@pytest.fixture
def unreachable_catalog(cart_app):
    """Point the cart at a port where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    original = cart_app.state.catalog
    cart_app.state.catalog = CatalogClient(f"http://127.0.0.1:{port}", 300)
    yield
    cart_app.state.catalog = original


@pytest.mark.parametrize("mode", ["error", "slow", "unreachable"])
async def test_cart_reads_degrade_and_writes_needing_stock_answer_503(
    mode, browsers, catalog, cart_app, request
):
    a, b = catalog.add(price=1000), catalog.add(price=2000)
    guest = browsers()
    await guest.add(a, 2)
    await guest.add(b, 1)
    if mode == "unreachable":
        request.getfixturevalue("unreachable_catalog")
    else:
        catalog.mode = mode
    catalog.calls.clear()

    started = time.monotonic()
    response = await guest.get()
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    cart = response.json()
    assert cart["pricing_unavailable"] is True
    assert cart["subtotal"] is None
    assert cart["checkout_ready"] is False
    assert cart["item_count"] == 3
    line = line_of(cart, a)
    assert line["quantity"] == 2
    assert line["price"] is None
    assert line["unit_price"] is None
    assert line["line_total"] is None
    assert line["availability"] is None
    assert line["purchasable"] is False
    assert line["unavailable"] is False  # unknown, not known to be unavailable
    # A short timeout and a single retry: the shopper is not kept waiting.
    assert elapsed < 2.5
    if mode != "unreachable":
        assert len(catalog.calls) == 2  # one try, one retry
    items = (await guest.get("/api/cart/items")).json()
    assert items["pricing_unavailable"] is True

    body = problem(await guest.add(a, 1), 503, "catalog-unavailable")
    assert "Traceback" not in str(body)
    problem(await guest.patch(f"/api/cart/items/{a}", {"quantity": 3}), 503, "catalog-unavailable")
    # Less, removal and emptying need no catalog.
    lowered = await guest.patch(f"/api/cart/items/{a}", {"quantity": 1})
    assert lowered.status_code == 200
    assert lowered.json()["pricing_unavailable"] is True
    assert (await guest.delete(f"/api/cart/items/{b}")).status_code == 200

    catalog.mode = "ok"
    if mode == "unreachable":
        return
    cart = (await guest.get()).json()
    assert cart["pricing_unavailable"] is False
    assert cart["subtotal"] == 1000


async def test_503_carries_retry_after(browsers, catalog):
    catalog.mode = "error"
    response = await browsers().add(catalog.add(), 1)
    problem(response, 503, "catalog-unavailable")
    assert response.headers["retry-after"] == "5"


async def test_catalog_refusing_our_credential_is_an_outage_not_a_500(browsers, catalog, cart_app):
    original = cart_app.state.catalog
    client = CatalogClient(catalog.url, 300)
    client._client.headers["X-Service-Token"] = "wrong"
    cart_app.state.catalog = client
    try:
        problem(await browsers().add(catalog.add(), 1), 503, "catalog-unavailable")
        assert len(catalog.calls) == 1  # a 4xx is not retried
    finally:
        cart_app.state.catalog = original
        await client.aclose()
