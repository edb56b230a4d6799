"""Which origin a shopper returns to from a provider's page: the configured one they used, never
one a request merely names."""

from __future__ import annotations

from ember_shared.settings import AppSettings


def test_a_configured_host_is_returned_to_and_any_other_gets_public_url() -> None:
    local = AppSettings(
        name="checkout",
        mode="local",
        public_url="http://localhost:8080",
        public_url_aliases="http://192.168.1.20:8080, https://shop.lan/",
    )
    assert local.origin_for("localhost:8080") == "http://localhost:8080"
    # PUBLIC_URL's loopback twin, and the listed LAN addresses (scheme from the setting).
    assert local.origin_for("127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert local.origin_for("192.168.1.20:8080") == "http://192.168.1.20:8080"
    assert local.origin_for("SHOP.LAN") == "https://shop.lan"
    # A forged or unlisted Host never becomes a redirect target.
    for host in ("evil.example", "127.0.0.1:9999", "localhost:8080@evil.example", "", None):
        assert local.origin_for(host) == "http://localhost:8080"


def test_production_has_no_loopback_twin() -> None:
    production = AppSettings(
        name="checkout", mode="production", public_url="https://shop.example.com"
    )
    assert production.origin_for("shop.example.com") == "https://shop.example.com"
    assert production.origin_for("127.0.0.1") == "https://shop.example.com"
    shop = AppSettings(name="checkout", mode="production", public_url="http://localhost:8080")
    assert shop.origin_for("127.0.0.1:8080") == "http://localhost:8080"
