"""Operators see the shop run: after a guest's purchase through Caddy, every service's own
``/metrics`` (never reachable through the gateway) shows its requests, outbox, consumer groups,
dead letters and the service's own figures (webhooks, reservations, mail)."""

from __future__ import annotations

import httpx
import pytest
from ember_devkit.testing.stack import RunningStack
from ember_devkit.testing.tokens import TokenFactory
from prometheus_client.parser import text_string_to_metric_families
from test_checkout_flow import CARD_OK, Shop, add_to_cart, eventually, start_checkout

pytestmark = pytest.mark.stack

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape_one(url: str) -> Series:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def scrape(stack: RunningStack, service: str) -> Series:
    """The first process of ``service``; for what only the process that served a request
    counts (with replicas, each has its own), :func:`requests_served`."""
    return scrape_one(stack.service_url(service))


def requests_served(stack: RunningStack, service: str, name: str, **labels: str) -> list[float]:
    """``name``'s values with ``labels`` summed over every replica of ``service``, as a
    Prometheus that scrapes each instance sums them (Caddy sends a request to either one)."""
    found: dict[frozenset[tuple[str, str]], float] = {}
    for url in stack.replica_urls(service):
        for (n, seen), value in scrape_one(url).items():
            if n == name and set(labels.items()) <= seen:
                found[seen] = found.get(seen, 0.0) + value
    return list(found.values())


def values(series: Series, name: str, **labels: str) -> list[float]:
    wanted = set(labels.items())
    return [v for (n, found), v in series.items() if n == name and wanted <= found]


def one(series: Series, name: str, **labels: str) -> float:
    found = values(series, name, **labels)
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


@pytest.fixture(scope="module")
def purchase(stack: RunningStack, tokens: TokenFactory) -> str:
    """A guest buys one coffee and pays on the hosted page; yields the order id once paid."""
    shop = Shop(stack, tokens)
    product_id, _ = shop.product(price=1200, on_hand=5)
    with shop.browser() as browser:
        add_to_cart(browser, product_id, 1)
        started = start_checkout(browser)
        assert started.status_code == 201, started.text
        order_id = started.json()["order_id"]
        assert shop.pay(started.json()["checkout_url"], CARD_OK).status_code == 303
        shop.wait_status(browser, order_id, "paid")
    shop.close()
    return str(order_id)


def test_every_service_exposes_metrics_on_its_own_port_only(
    stack: RunningStack, purchase: str
) -> None:
    for service in stack.services:
        series = scrape(stack, service)
        assert values(series, "ember_outbox_backlog", service=service) or service in {
            "cart",
            "storefront",
        }, f"{service}: no outbox series"
    # Through the public site /metrics is nobody's page.
    public = httpx.get(f"{stack.url}/metrics", timeout=10)
    assert public.status_code == 404
    assert public.headers["content-type"].startswith("application/problem+json")
    assert "ember_requests_total" not in public.text


def test_metrics_after_a_purchase(stack: RunningStack, purchase: str) -> None:
    checkout = scrape(stack, "checkout")
    started = requests_served(
        stack,
        "checkout",
        "ember_requests_total",
        app_name="checkout",
        method="POST",
        path="/api/checkout/session",
        status_code="201",
    )
    assert started, "no request series for POST /api/checkout/session"
    assert started[0] >= 1
    assert requests_served(
        stack,
        "checkout",
        "ember_request_duration_seconds_count",
        path="/api/checkout/session",
        status_code="201",
    )
    assert sum(requests_served(stack, "checkout", "ember_webhooks_total", provider="stripe")) >= 1
    assert one(checkout, "ember_outbox_backlog", service="checkout") >= 0
    # The relay publishes within moments: nothing waits for minutes.
    assert 0 <= one(checkout, "ember_outbox_oldest_unpublished_seconds", service="checkout") < 120

    orders = scrape(stack, "orders")
    stream = "ember.events.payment.succeeded.v1"
    assert one(orders, "ember_consumer_lag", group="orders", stream=stream) >= 0
    assert one(orders, "ember_consumer_pending", group="orders", stream=stream) >= 0
    assert one(orders, "ember_dead_letters", service="orders") >= 0

    catalog = scrape(stack, "catalog")
    assert one(catalog, "ember_reservations_held", service="catalog") >= 0
    assert one(catalog, "ember_units_reserved", service="catalog") >= 0

    # The confirmation mail is sent by the notifier's worker a moment after the payment.
    sent = eventually(
        lambda: n if (n := one(scrape(stack, "notifier"), "ember_mails", status="sent")) else None,
        "the notifier to count a sent mail",
    )
    assert sent >= 1
    notifier = scrape(stack, "notifier")
    for status in ("failed", "dead", "suppressed"):
        assert one(notifier, "ember_mails", status=status) >= 0
    assert one(notifier, "ember_mail_suppressions", service="notifier") >= 0
