"""One guest purchase, traced through the stack: the checkout's trace shows the session request,
catalog's reservation and the call to Stripe; the payment's webhook starts a trace linked to it
that shows the relay, every consuming service's handler and the mail being sent.

The stack exports real OTLP to the test's in-memory span store (ember_devkit.testing.traces).
"""

from __future__ import annotations

import pytest
from ember_devkit.testing.stack import RunningStack
from ember_devkit.testing.tokens import TokenFactory
from ember_devkit.testing.traces import ReceivedSpan
from opentelemetry.trace import SpanKind
from test_checkout_flow import CARD_OK, Shop, add_to_cart, start_checkout

pytestmark = pytest.mark.stack


def names(spans: list[ReceivedSpan], service: str) -> set[str]:
    return {s.name for s in spans if s.service == service}


def test_a_guest_purchase_is_one_trace_from_checkout_to_the_mail(
    stack: RunningStack, tokens: TokenFactory
) -> None:
    store = stack.traces
    traceparent, checkout_trace = store.traceparent()
    shop = Shop(stack, tokens)
    try:
        product_id, _ = shop.product(price=1300, on_hand=4)
        with shop.browser() as browser:
            browser.headers["traceparent"] = traceparent
            add_to_cart(browser, product_id, 1)
            started = start_checkout(browser, email="traced@example.com")
            assert started.status_code == 201, started.text
            order_id = started.json()["order_id"]
            assert shop.pay(started.json()["checkout_url"], CARD_OK).status_code == 303
            del browser.headers["traceparent"]
            shop.wait_status(browser, order_id, "paid")
    finally:
        shop.close()

    # The checkout: the request, its calls to catalog and cart (their server spans in the same
    # trace) and to Stripe.
    def orphans(spans: list[ReceivedSpan]) -> list[str]:
        ids = {s.span_id for s in spans} | {traceparent.split("-")[2]}
        return [s.name for s in spans if s.parent_span_id not in ids]

    def checkout_spans() -> list[ReceivedSpan] | None:
        # Each process exports in batches: a child (a query) can arrive a batch before its parent.
        spans = store.trace(checkout_trace)
        whole = "POST /api/checkout/session" in names(spans, "checkout") and not orphans(spans)
        return spans if whole else None

    spans = store.wait_for(checkout_spans, "the checkout's spans")
    services = {s.service for s in spans}
    assert {"cart", "checkout", "catalog"} <= services, services
    server = [s for s in spans if s.kind == SpanKind.SERVER.value + 1 and s.service == "catalog"]
    assert server, "catalog's reservation is not in the checkout's trace"
    assert any(
        s.service == "checkout"
        and s.kind == SpanKind.CLIENT.value + 1
        and str(s.attributes.get("url.full", s.attributes.get("http.url", ""))).startswith(
            stack.service_url("stripe-standin")
        )
        for s in spans
    ), "no call to Stripe in the checkout's trace"
    assert any(
        s.service == "checkout" and s.attributes.get("db.system") == "postgresql" for s in spans
    ), "no database span in the checkout's trace"
    # One tree: every span's parent is in the trace, or is the test's own (unexported) span.
    assert not orphans(spans), orphans(spans)

    # The payment: a trace linked to the checkout's, from the webhook to the mail.
    groups = ("orders", "catalog", "cart", "notifier")

    def payment_trace() -> list[ReceivedSpan] | None:
        # The handlers of the four groups run side by side, each process exporting in its own
        # batches: wait for all of them, not only for the mail.
        for trace_id in store.linked_to(checkout_trace):
            found = store.trace(trace_id)
            handled = all(
                any(n.startswith(f"{group} handle ") for n in names(found, group))
                for group in groups
            )
            if handled and any(s.name == "send mail" for s in found):
                return found
        return None

    paid = store.wait_for(
        payment_trace, "the payment's trace to reach every handler and the mail", 60
    )
    by_service = {s.service for s in paid}
    assert "stripe checkout.session.completed" in names(paid, "checkout")
    assert "publish payment.succeeded.v1" in names(paid, "checkout")
    for group in groups:
        handled = {n for n in names(paid, group) if n.startswith(f"{group} handle ")}
        assert handled, f"{group} handled nothing in the payment's trace ({by_service})"
    mail = next(s for s in paid if s.name == "send mail")
    assert mail.service == "notifier-worker"
    assert mail.attributes.get("ember.mail.template")
