"""Staff find orders, read them whole, and move them through fulfilment, never backwards."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from orders_testkit import Checkout, problem


@pytest.fixture
def admin(tokens) -> dict[str, str]:
    token, _ = tokens.admin()
    return tokens.bearer(token)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/admin/orders"),
        ("GET", f"/api/admin/orders/{uuid.uuid4()}"),
        ("PUT", f"/api/admin/orders/{uuid.uuid4()}"),
        ("POST", f"/api/admin/orders/{uuid.uuid4()}/ship"),
        ("POST", f"/api/admin/orders/{uuid.uuid4()}/tracking/sync"),
        ("GET", "/api/admin/stats"),
    ],
)
async def test_admin_routes_need_the_admin_role(client, tokens, method, path) -> None:
    body = {"status": "fulfilled"} if method == "PUT" else None
    if path.endswith("/ship"):
        body = {"carrier": "UPS", "tracking_number": "1Z999AA10123456784"}
    problem(await client.request(method, path, json=body), 401)
    customer, _ = tokens.customer()
    problem(
        await client.request(method, path, json=body, headers=tokens.bearer(customer)),
        403,
        "forbidden",
    )


async def test_list_filters_by_status_and_searches(client, admin, place, deliver) -> None:
    marker = uuid.uuid4().hex[:10]
    paid = await place(Checkout(email=f"paid-{marker}@example.com"))
    pending = await place(Checkout(email=f"pending-{marker}@Example.com"), paid=False)
    failed = await place(Checkout(email=f"failed-{marker}@example.com"), paid=False)
    await deliver(failed.failed())

    found = (await client.get(f"/api/admin/orders?q={marker}", headers=admin)).json()
    assert found["total"] == 3
    assert [o["id"] for o in found["items"]] == [
        str(failed.order_id),
        str(pending.order_id),
        str(paid.order_id),
    ]

    only_paid = (
        await client.get(f"/api/admin/orders?q={marker}&status=paid", headers=admin)
    ).json()
    assert [o["id"] for o in only_paid["items"]] == [str(paid.order_id)]
    assert only_paid["items"][0]["email"] == f"paid-{marker}@example.com"
    assert only_paid["items"][0]["total"] == paid.total

    by_case = (
        await client.get(f"/api/admin/orders?q=PENDING-{marker}@EXAMPLE", headers=admin)
    ).json()
    assert [o["id"] for o in by_case["items"]] == [str(pending.order_id)]

    by_id = (await client.get(f"/api/admin/orders?q={failed.order_id}", headers=admin)).json()
    assert [o["id"] for o in by_id["items"]] == [str(failed.order_id)]
    prefix = failed.order_id.hex[:12]
    by_prefix = (await client.get(f"/api/admin/orders?q={prefix}", headers=admin)).json()
    assert str(failed.order_id) in [o["id"] for o in by_prefix["items"]]

    # A search full of LIKE wildcards matches them literally, not everything.
    wild = (await client.get("/api/admin/orders?q=%25%25_", headers=admin)).json()
    assert wild["total"] == 0

    paged = (
        await client.get(f"/api/admin/orders?q={marker}&page=2&page_size=2", headers=admin)
    ).json()
    assert [o["id"] for o in paged["items"]] == [str(paid.order_id)]


@pytest.mark.parametrize(
    "query",
    ["status=teleported", "page_size=101", "page=0", "q=" + "x" * 201, "attention=maybe"],
)
async def test_list_refuses_bad_filters(client, admin, query) -> None:
    problem(await client.get(f"/api/admin/orders?{query}", headers=admin), 400)


async def test_a_flagged_payment_marks_the_order_and_staff_list_only_those(
    client, admin, place, deliver
) -> None:
    marker = uuid.uuid4().hex[:10]
    ordinary = await place(Checkout(email=f"ok-{marker}@example.com"))
    flagged = Checkout(email=f"odd-{marker}@example.com")
    await deliver(flagged.started())
    note = "Stripe charged 1 USD; the checkout expected 2400 USD."
    await deliver(msgspec.structs.replace(flagged.succeeded(), attention=note))

    everything = (await client.get(f"/api/admin/orders?q={marker}", headers=admin)).json()
    by_id = {o["id"]: o for o in everything["items"]}
    assert by_id[str(flagged.order_id)]["attention"] == note
    assert by_id[str(ordinary.order_id)]["attention"] is None
    assert by_id[str(flagged.order_id)]["status"] == "paid"

    only = await client.get(
        "/api/admin/orders", params={"q": marker, "attention": "true"}, headers=admin
    )
    assert only.status_code == 200, only.text
    assert [o["id"] for o in only.json()["items"]] == [str(flagged.order_id)]
    assert only.json()["total"] == 1
    others = (
        await client.get(
            "/api/admin/orders", params={"q": marker, "attention": "false"}, headers=admin
        )
    ).json()
    assert [o["id"] for o in others["items"]] == [str(ordinary.order_id)]

    detail = (await client.get(f"/api/admin/orders/{flagged.order_id}", headers=admin)).json()
    assert detail["attention"] == note
    plain = (await client.get(f"/api/admin/orders/{ordinary.order_id}", headers=admin)).json()
    assert plain["attention"] is None


async def test_detail_has_payment_references_and_history(client, admin, place) -> None:
    checkout = await place()
    response = await client.get(f"/api/admin/orders/{checkout.order_id}", headers=admin)
    assert response.status_code == 200, response.text
    order = response.json()
    assert order["stripe_session_id"] == checkout.stripe_session_id
    assert order["checkout_session_id"] == str(checkout.checkout_session_id)
    assert order["reservation_id"] == str(checkout.reservation_id)
    assert order["payment_intent_id"].startswith("pi_")
    assert [(h["from_status"], h["to_status"]) for h in order["history"]] == [
        (None, "pending_payment"),
        ("pending_payment", "paid"),
    ]
    assert order["history"][1]["actor"] == "event:payment.succeeded.v1"
    assert sorted(order["allowed_statuses"]) == ["fulfilled"]
    problem(await client.get(f"/api/admin/orders/{uuid.uuid4()}", headers=admin), 404)


async def test_staff_move_an_order_forward_only(client, admin, tokens, place, db) -> None:
    checkout = await place()
    path = f"/api/admin/orders/{checkout.order_id}"

    body = problem(
        await client.put(path, json={"status": "delivered"}, headers=admin),
        409,
        "invalid-transition",
    )
    assert body["current"] == "paid"
    assert body["requested"] == "delivered"
    problem(await client.put(path, json={"status": "cancelled"}, headers=admin), 409)

    response = await client.put(
        path,
        json={"status": "fulfilled", "notes": "Packed by Sam", "reason": "packed"},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    order = response.json()
    assert order["status"] == "fulfilled"
    assert order["notes"] == "Packed by Sam"
    assert order["fulfilled_at"] is not None
    assert order["history"][-1]["reason"] == "packed"
    admin_id = uuid.UUID(order["history"][-1]["actor"].removeprefix("admin:"))
    who = await client.put(
        path,
        json={"notes": "checked"},
        headers=tokens.bearer(tokens.mint(admin_id, roles=("admin",))),
    )
    assert who.status_code == 200

    # Setting the status it already has is not an error and records nothing.
    again = (await client.put(path, json={"status": "fulfilled"}, headers=admin)).json()
    assert len(again["history"]) == len(order["history"])

    # Back to paid is not a choice staff have; nor is any payment state.
    for status in ("paid", "refunded", "pending_payment", "shipped"):
        problem(await client.put(path, json={"status": status}, headers=admin), 400)
    assert (await db.order(checkout.order_id)).status == "fulfilled"


async def test_staff_cancel_an_unpaid_order(client, admin, place) -> None:
    checkout = await place(paid=False)
    response = await client.put(
        f"/api/admin/orders/{checkout.order_id}", json={"status": "cancelled"}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancelled_at"] is not None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"status": None, "notes": None},
        {"status": "fulfilled", "extra": 1},
        {"notes": "x" * 4001},
        {"status": 7},
        [],
    ],
)
async def test_update_refuses_bad_bodies(client, admin, place, body) -> None:
    checkout = await place()
    problem(
        await client.put(f"/api/admin/orders/{checkout.order_id}", json=body, headers=admin), 400
    )


async def test_update_of_a_missing_order(client, admin) -> None:
    problem(
        await client.put(f"/api/admin/orders/{uuid.uuid4()}", json={"notes": "x"}, headers=admin),
        404,
    )


async def test_update_with_a_broken_json_body(client, admin, place) -> None:
    checkout = await place()
    response = await client.put(
        f"/api/admin/orders/{checkout.order_id}",
        content=b"{not json",
        headers={**admin, "content-type": "application/json"},
    )
    problem(response, 400)


async def test_staff_list_one_customers_orders_with_their_guest_orders(
    client, admin, place
) -> None:
    user_id = uuid.uuid4()
    email = f"member-{uuid.uuid4().hex[:8]}@example.com"
    signed_in = await place(Checkout(user_id=user_id, email=email))
    as_guest = await place(Checkout(email=email.upper()))
    someone_else = await place(Checkout(user_id=uuid.uuid4(), email=email))

    found = (
        await client.get(
            "/api/admin/orders",
            params={"user_id": str(user_id), "verified_email": email},
            headers=admin,
        )
    ).json()
    assert {o["id"] for o in found["items"]} == {str(signed_in.order_id), str(as_guest.order_id)}
    only_account = (
        await client.get("/api/admin/orders", params={"user_id": str(user_id)}, headers=admin)
    ).json()
    assert [o["id"] for o in only_account["items"]] == [str(signed_in.order_id)]
    assert str(someone_else.order_id) not in str(found)
    problem(
        await client.get("/api/admin/orders", params={"verified_email": email}, headers=admin),
        400,
    )
    problem(await client.get("/api/admin/orders", params={"user_id": "nope"}, headers=admin), 400)
