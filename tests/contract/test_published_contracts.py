"""The published contracts: the AsyncAPI document is what the code says, and no service drops,
renames or newly requires something that its published OpenAPI or AsyncAPI version offered.

Regenerate with ``make asyncapi`` (the served document) and ``make contract-baselines`` (accept
the current documents as published: for an addition, or after a new version).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest
from ember_devkit.testing.stack import RunningStack
from ember_shared.events.envelope import stream_for
from published_contracts import (
    ASYNCAPI_PATH,
    asyncapi_breaks,
    asyncapi_document,
    baseline_path,
    openapi_breaks,
    openapi_documents,
    render,
    services,
)

REGENERATE = "run `make asyncapi` and commit shared/src/ember_shared/events/asyncapi.json"


@pytest.fixture(scope="module")
def generated_asyncapi() -> dict[str, Any]:
    return asyncapi_document()


@pytest.fixture(scope="module")
def generated_openapi() -> dict[str, dict[str, Any]]:
    return openapi_documents()


def test_committed_asyncapi_is_what_the_code_generates(generated_asyncapi: dict[str, Any]) -> None:
    committed = ASYNCAPI_PATH.read_text(encoding="utf-8")
    assert committed == render(generated_asyncapi), REGENERATE


def test_asyncapi_names_streams_publishers_and_consumer_groups(
    generated_asyncapi: dict[str, Any],
) -> None:
    doc = generated_asyncapi
    assert doc["asyncapi"].startswith("3.")
    channel = doc["channels"]["payment.succeeded.v1"]
    assert channel["address"] == stream_for("payment.succeeded.v1")
    payload = doc["components"]["messages"]["payment.succeeded.v1"]["payload"]
    assert payload["properties"]["data"] == {"$ref": "#/components/schemas/PaymentSucceeded"}
    data = doc["components"]["schemas"]["PaymentSucceeded"]
    assert {"order_id", "lines", "total", "currency"} <= set(data["required"])
    assert "payment_intent_id" not in data["required"]
    receivers = {
        op["x-consumer-group"]
        for op in doc["operations"].values()
        if op["action"] == "receive" and op["channel"]["$ref"] == "#/channels/payment.succeeded.v1"
    }
    # The notifier mails the order (order.paid), never the payment: it reads no payment stream.
    assert receivers == {"orders", "catalog", "cart"}
    senders = [op for op in doc["operations"].values() if op["action"] == "send"]
    assert len(senders) == len(doc["channels"]), "every event has exactly one publisher"
    assert doc["operations"]["checkout.publish.payment.succeeded.v1"]["action"] == "send"
    # Every reference in the document points at something in it.
    text = json.dumps(doc)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        target: Any = doc
        for key in ref.removeprefix("#/").split("/"):
            assert key in target, f"dangling {ref}"
            target = target[key]


def test_no_published_openapi_contract_is_broken(
    generated_openapi: dict[str, dict[str, Any]],
) -> None:
    assert set(generated_openapi) == set(services())
    broken: dict[str, tuple[str, ...]] = {}
    for service, document in generated_openapi.items():
        path = baseline_path(f"{service}.openapi")
        assert path.exists(), f"no published baseline for {service}: make contract-baselines"
        breaks = openapi_breaks(json.loads(path.read_text(encoding="utf-8")), document)
        if breaks:
            broken[service] = breaks.items
    assert not broken, (
        "published routes changed incompatibly (add instead, or publish a new major version "
        f"and `make contract-baselines`): {json.dumps(broken, indent=1)}"
    )


def test_no_published_event_contract_is_broken(generated_asyncapi: dict[str, Any]) -> None:
    baseline = json.loads(baseline_path("events.asyncapi").read_text(encoding="utf-8"))
    breaks = asyncapi_breaks(baseline, generated_asyncapi)
    assert not breaks, (
        "published events changed incompatibly (publish a new .vN type instead): "
        f"{list(breaks.items)}"
    )


def test_openapi_rules_refuse_removals_renames_and_new_required_inputs(
    generated_openapi: dict[str, dict[str, Any]],
) -> None:
    old = generated_openapi["cart"]
    assert not openapi_breaks(old, copy.deepcopy(old))

    removed = copy.deepcopy(old)
    del removed["paths"]["/api/cart/items"]
    assert any("route removed" in b for b in openapi_breaks(old, removed).items)

    # The request body of adding an item: a new optional field is fine, a new required one not.
    body_ref = old["paths"]["/api/cart/items"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]["$ref"]
    name = body_ref.rsplit("/", 1)[1]
    added = copy.deepcopy(old)
    added["components"]["schemas"][name]["properties"]["gift_note"] = {"type": "string"}
    assert not openapi_breaks(old, added)
    required = copy.deepcopy(added)
    required["components"]["schemas"][name].setdefault("required", []).append("gift_note")
    assert [b for b in openapi_breaks(old, required).items if "'gift_note' newly required" in b]

    # A response property renamed is a removal for every client reading it.
    response = old["paths"]["/api/cart"]["get"]["responses"]["200"]["content"]["application/json"]
    cart_schema = response["schema"]["$ref"].rsplit("/", 1)[1]
    renamed = copy.deepcopy(old)
    props = renamed["components"]["schemas"][cart_schema]["properties"]
    props["line_list"] = props.pop("lines")
    assert [b for b in openapi_breaks(old, renamed).items if "'lines' removed" in b]
    # ... also deep inside: a field of each line.
    nested = copy.deepcopy(old)
    line_props = nested["components"]["schemas"]["CartLine"]["properties"]
    dropped = sorted(line_props)[0]
    del line_props[dropped]
    assert [b for b in openapi_breaks(old, nested).items if f"lines[]: property {dropped!r}" in b]

    # A new major version is a new published contract.
    bumped = copy.deepcopy(renamed)
    bumped["info"]["version"] = "2.0.0"
    assert not openapi_breaks(old, bumped)


def test_asyncapi_rules_refuse_removals_and_new_required_fields(
    generated_asyncapi: dict[str, Any],
) -> None:
    old = generated_asyncapi
    assert not asyncapi_breaks(old, copy.deepcopy(old))

    optional = copy.deepcopy(old)
    optional["components"]["schemas"]["OrderShipped"]["properties"]["eta"] = {"type": "string"}
    assert not asyncapi_breaks(old, optional)

    required = copy.deepcopy(optional)
    required["components"]["schemas"]["OrderShipped"]["required"].append("eta")
    assert [b for b in asyncapi_breaks(old, required).items if "'eta' newly required" in b]

    renamed = copy.deepcopy(old)
    props = renamed["components"]["schemas"]["OrderShipped"]["properties"]
    props["carrier_name"] = props.pop("carrier")
    assert [b for b in asyncapi_breaks(old, renamed).items if "'carrier' removed" in b]

    gone = copy.deepcopy(old)
    del gone["components"]["messages"]["order.shipped.v1"]
    assert "order.shipped.v1: event type removed" in asyncapi_breaks(old, gone).items


@pytest.mark.stack
def test_asyncapi_is_served_through_the_gateway(stack: RunningStack) -> None:
    response = httpx.get(f"{stack.url}/api/docs/events", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == json.loads(ASYNCAPI_PATH.read_text(encoding="utf-8"))
