"""A sampled listing through the stack: the first read (a miss) shows the catalog's request span
with ``ember.cache.outcome`` = miss and, under it, the build's queries and Redis calls; the
second (a hit) is the request's span alone, with ``ember.cache.outcome`` = hit: the Redis read
it was answered from is an attribute, not a span of its own (issue 13: a sampled cached answer
costs one span).

The stack exports real OTLP to the test's span store (ember_devkit.testing.traces).
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from ember_devkit.testing.stack import RunningStack
from ember_devkit.testing.tokens import TokenFactory
from ember_devkit.testing.traces import ReceivedSpan

pytestmark = pytest.mark.stack

SERVER = 2  # SPAN_KIND_SERVER in OTLP


def catalog_request(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
    found = [s for s in spans if s.service == "catalog" and s.kind == SERVER]
    return found[0] if len(found) == 1 else None


def test_a_sampled_listing_shows_its_build_once_and_then_one_span(
    stack: RunningStack, tokens: TokenFactory
) -> None:
    store = stack.traces
    token, _ = tokens.admin()
    admin = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        made = client.post(
            "/api/admin/categories", json={"name": f"Traced {uuid.uuid4().hex[:8]}"}, headers=admin
        )
        assert made.status_code == 201, made.text
        category = made.json()
        product = client.post(
            "/api/admin/products/",
            json={
                "name": f"Traced Coffee {uuid.uuid4().hex[:8]}",
                "price": 1200,
                "on_hand": 3,
                "currency": "USD",
                "category_id": category["id"],
            },
            headers=admin,
        )
        assert product.status_code == 201, product.text
        path = f"/api/products?category={category['slug']}"

        miss_parent, miss_trace = store.traceparent()
        first = client.get(path, headers={"traceparent": miss_parent})
        assert first.status_code == 200, first.text
        assert first.headers["x-cache"] == "miss"
        hit_parent, hit_trace = store.traceparent()
        second = client.get(path, headers={"traceparent": hit_parent})
        assert second.status_code == 200
        assert second.headers["x-cache"] == "hit"

    def built() -> list[ReceivedSpan] | None:
        spans = store.trace(miss_trace)
        server = catalog_request(spans)
        if server is None:
            return None
        under = [s for s in spans if s.parent_span_id == server.span_id]
        systems = {s.attributes.get("db.system") for s in under}
        # Each process exports in batches: wait until the build's spans are in.
        return spans if {"postgresql", "redis"} <= systems else None

    spans = store.wait_for(built, "the miss's request span with its queries and Redis calls")
    server = catalog_request(spans)
    assert server is not None
    assert server.attributes["ember.cache.outcome"] == "miss"

    answered = store.wait_for(
        lambda: catalog_request(store.trace(hit_trace)), "the hit's request span"
    )
    assert answered.attributes["ember.cache.outcome"] == "hit"
    assert answered.attributes["http.response.status_code"] == 200
    # Nothing else in the catalog: its cache read is no span of its own.
    assert [s.name for s in store.trace(hit_trace) if s.service == "catalog"] == [answered.name]
