"""Helpers of checkout's tests: in-loop uvicorn servers, shoppers with their own cookie jars,
and the :class:`World` (the real identity, catalog, cart and checkout apps and the Stripe
stand-in over real HTTP) with what tests read from each."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from checkout.models import CheckoutSession
from ember_devkit.testing.apps import serve_in_loop as serve  # noqa: F401 - the suite imports it from here
from ember_devkit.testing.plugin import TestEnv
from ember_devkit.testing.tokens import TokenFactory
from ember_devkit.testing.waiting import eventually_async as eventually
from ember_shared.sealing import private_key, unseal
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

WEBHOOK_SECRET = "whsec_checkout_tests_" + uuid.uuid4().hex
T = TypeVar("T")


ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 St James's Square",
    "city": "London",
    "postal_code": "SW1Y 4JH",
    "country": "GB",
}


@dataclass
class Shopper:
    """One browser: its own cookie jar, maybe a bearer token."""

    world: World
    http: httpx.AsyncClient
    token: str | None = None
    user_id: uuid.UUID | None = None

    async def add(self, product_id: uuid.UUID, quantity: int = 1) -> None:
        response = await self.http.post(
            f"{self.world.cart_url}/api/cart/items",
            json={"product_id": str(product_id), "quantity": quantity},
            headers=self._auth(),
        )
        assert response.status_code in (200, 201), response.text

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def checkout(self, **body: Any) -> httpx.Response:
        payload: dict[str, Any] = {"shipping_address": ADDRESS}
        if self.token is None:
            payload["email"] = "guest@example.com"
        payload.update(body)
        payload = {k: v for k, v in payload.items() if v is not None}
        return await self.http.post(
            f"{self.world.checkout_url}/api/checkout/session", json=payload, headers=self._auth()
        )

    async def status(self, order_id: str, **params: str) -> httpx.Response:
        return await self.http.get(
            f"{self.world.checkout_url}/api/checkout/session/{order_id}",
            params=params,
            headers=self._auth(),
        )

    async def quote(self) -> httpx.Response:
        return await self.http.get(
            f"{self.world.checkout_url}/api/checkout/quote", headers=self._auth()
        )


@dataclass
class World:
    env: TestEnv
    tokens: TokenFactory
    catalog_url: str
    cart_url: str
    checkout_url: str
    standin_url: str
    identity_url: str
    engine: AsyncEngine
    http: httpx.AsyncClient
    apps: dict[str, Any] = field(default_factory=dict)
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def _client(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(timeout=20.0)
        self.clients.append(client)
        return client

    # --- catalog ------------------------------------------------------------------------

    def admin_headers(self) -> dict[str, str]:
        token, _ = self.tokens.admin()
        return {"Authorization": f"Bearer {token}"}

    def service_headers(self) -> dict[str, str]:
        return {"X-Service-Token": self.env.service_token}

    async def product(
        self, *, price: int = 1800, on_hand: int = 20, name: str | None = None
    ) -> uuid.UUID:
        name = name or f"Test Coffee {uuid.uuid4().hex[:8]}"
        response = await self.http.post(
            f"{self.catalog_url}/api/admin/products/",
            json={"name": name, "price": price, "on_hand": on_hand, "currency": "USD"},
            headers=self.admin_headers(),
        )
        assert response.status_code == 201, response.text
        return uuid.UUID(response.json()["id"])

    async def set_price(self, product_id: uuid.UUID, price: int) -> None:
        response = await self.http.patch(
            f"{self.catalog_url}/api/admin/products/{product_id}",
            json={"price": price},
            headers=self.admin_headers(),
        )
        assert response.status_code == 200, response.text

    async def set_stock(self, product_id: uuid.UUID, on_hand: int) -> None:
        response = await self.http.put(
            f"{self.catalog_url}/api/admin/inventory/{product_id}",
            json={"on_hand": on_hand},
            headers=self.admin_headers(),
        )
        assert response.status_code == 200, response.text

    async def archive(self, product_id: uuid.UUID) -> None:
        response = await self.http.post(
            f"{self.catalog_url}/api/admin/products/{product_id}/archive",
            headers=self.admin_headers(),
        )
        assert response.status_code == 200, response.text

    async def stock(self, product_id: uuid.UUID) -> dict[str, Any]:
        response = await self.http.post(
            f"{self.catalog_url}/internal/catalog/products/lookup",
            json={"product_ids": [str(product_id)]},
            headers=self.service_headers(),
        )
        assert response.status_code == 200, response.text
        products = response.json()["products"]
        assert products, "product not found"
        return dict(products[0])

    async def reservation(self, order_id: str) -> dict[str, Any] | None:
        response = await self.http.get(
            f"{self.catalog_url}/internal/catalog/reservations/{order_id}",
            headers=self.service_headers(),
        )
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def reservation_status(self, order_id: str, wanted: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            found = await self.reservation(order_id)
            return found if found and found["status"] == wanted else None

        return await eventually(check, what=f"reservation {order_id} {wanted}")

    # --- shoppers -----------------------------------------------------------------------

    def guest(self) -> Shopper:
        return Shopper(self, self._client())

    def customer(self, email: str | None = None) -> Shopper:
        user_id = uuid.uuid4()
        token = self.tokens.mint(user_id, email=email or f"{user_id.hex[:8]}@example.com")
        return Shopper(self, self._client(), token=token, user_id=user_id)

    async def member(self) -> Shopper:
        """A shopper with a real identity account (signed up through the emailed link; a bearer
        token, no cookies)."""
        email = f"member-{uuid.uuid4().hex[:10]}@example.com"
        client = self._client()
        asked = await client.post(
            f"{self.identity_url}/api/auth/register",
            json={
                "email": email,
                "password": f"Roast-{uuid.uuid4().hex[:12]}!",
                "name": "Grace Hopper",
            },
        )
        assert asked.status_code == 202, asked.text
        response = await client.post(
            f"{self.identity_url}/api/auth/verify-email",
            json={"token": await self.sign_up_token(email)},
        )
        assert response.status_code == 201, response.text
        client.cookies.clear()
        body = response.json()
        return Shopper(
            self, client, token=body["access_token"], user_id=uuid.UUID(body["user"]["id"])
        )

    async def sign_up_token(self, email: str) -> str:
        """The token of the sign-up link identity asked the notifier to mail to ``email``."""
        async with self.engine.connect() as connection:
            url = await connection.scalar(
                text(
                    "SELECT convert_from(envelope, 'UTF8')::jsonb #>> '{data,verify_url}' FROM identity.outbox_events"
                    " WHERE type = 'sign_up.requested.v1'"
                    " AND convert_from(envelope, 'UTF8')::jsonb #>> '{data,email}' = :email"
                    " ORDER BY created_at DESC LIMIT 1"
                ),
                {"email": email},
            )
        assert url, f"no sign-up link for {email}"
        # The link rests sealed for the notifier: open it with the (local) notifier key.
        return unseal(str(url), private_key(local=True)).split("token=", 1)[1]

    async def basket(
        self, *, price: int = 1800, quantity: int = 1, on_hand: int = 20
    ) -> tuple[Shopper, uuid.UUID]:
        product_id = await self.product(price=price, on_hand=on_hand)
        shopper = self.guest()
        await shopper.add(product_id, quantity)
        return shopper, product_id

    # --- stripe stand-in ----------------------------------------------------------------

    async def control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.http.request(method, f"{self.standin_url}/_standin{path}", **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    async def stripe_session(self, stripe_session_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.control("GET", f"/sessions/{stripe_session_id}")
        return found

    async def hold(self, stripe_session_id: str, held: bool = True) -> None:
        await self.control("POST", f"/sessions/{stripe_session_id}/hold", json={"held": held})

    async def pay_page(self, checkout_url: str, card: str) -> httpx.Response:
        """What a browser does on the hosted page: post the card form."""
        return await self.http.post(
            checkout_url,
            data={"card_number": card, "exp": "12 / 34", "cvc": "123", "name": "Ada Lovelace"},
        )

    async def events(
        self, stripe_session_id: str, type_: str | None = None
    ) -> list[dict[str, Any]]:
        params = {"session_id": stripe_session_id}
        if type_:
            params["type"] = type_
        found: list[dict[str, Any]] = (await self.control("GET", "/events", params=params))["data"]
        return found

    async def deliver(self, event_ids: list[str], **options: Any) -> list[dict[str, Any]]:
        result = await self.control("POST", "/deliver", json={"event_ids": event_ids, **options})
        deliveries: list[dict[str, Any]] = result["deliveries"]
        return deliveries

    # --- checkout's own tables ----------------------------------------------------------

    async def row(self, order_id: str) -> dict[str, Any]:
        async with self.engine.connect() as connection:
            found = (
                (
                    await connection.execute(
                        text("SELECT * FROM checkout.checkout_sessions WHERE order_id = :o"),
                        {"o": order_id},
                    )
                )
                .mappings()
                .one()
            )
        return dict(found)

    async def outbox(self, order_id: str, type_: str | None = None) -> list[dict[str, Any]]:
        async with self.engine.connect() as connection:
            rows = (
                await connection.execute(
                    text("SELECT type, envelope FROM checkout.outbox_events ORDER BY created_at")
                )
            ).all()
        found = []
        for row in rows:
            envelope = json.loads(bytes(row.envelope))
            if envelope["data"].get("order_id") == order_id and (
                type_ is None or row.type == type_
            ):
                found.append(envelope)
        return found

    async def provider_events(self, event_id: str) -> list[dict[str, Any]]:
        async with self.engine.connect() as connection:
            rows = (
                (
                    await connection.execute(
                        text("SELECT * FROM checkout.provider_events WHERE event_id = :e"),
                        {"e": event_id},
                    )
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    async def checkout_status(self, order_id: str, wanted: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            found = await self.row(order_id)
            return found if found["status"] == wanted else None

        return await eventually(check, what=f"checkout {order_id} {wanted}")


@contextlib.contextmanager
def orm_handling_of_checkouts() -> Iterator[list[str]]:
    """What the ORM does with a ``CheckoutSession`` inside the block: each one it loads (a
    query of the entity) and each it flushes (a unit of work writing it), by order id."""
    seen: list[str] = []

    def loaded(target: CheckoutSession, _context: Any) -> None:
        seen.append(f"load {target.order_id}")

    def flushing(session: Session, _context: Any, _instances: Any) -> None:
        seen.extend(
            f"flush {row.order_id}"
            for row in (*session.new, *session.dirty)
            if isinstance(row, CheckoutSession)
        )

    event.listen(CheckoutSession, "load", loaded)
    event.listen(Session, "before_flush", flushing)
    try:
        yield seen
    finally:
        event.remove(CheckoutSession, "load", loaded)
        event.remove(Session, "before_flush", flushing)
