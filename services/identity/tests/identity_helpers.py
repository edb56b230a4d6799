"""Helpers of identity's tests: browsers with their own cookie jars, real HTTP servers, settings,
and readers of the outbox and the audit log."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import replace
from typing import Any, Literal

import httpx
import msgspec
from ember_devkit.testing.apps import (
    running,  # noqa: F401 - the suite imports it from here
    serve,
)
from ember_shared.sealing import private_key, unseal
from identity.settings import IdentitySettings
from litestar import Litestar
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

BASE_URL = "http://shop.test"
STANDIN_CLIENT_ID = "ember-local"
STANDIN_CLIENT_SECRET = "ember-local-secret"


def strong_password() -> str:
    return f"Roast-{uuid.uuid4().hex[:12]}!"


def new_email(prefix: str = "shopper") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


class ServedApp:
    """An ASGI app served over real HTTP (:func:`ember_devkit.testing.apps.serve`: a free
    loopback port, a thread of its own) until :meth:`stop`."""

    def __init__(self, app: Any, *, lifespan: Literal["auto", "on", "off"] = "on") -> None:
        self._serving = contextlib.ExitStack()
        self.url = self._serving.enter_context(serve(app, lifespan=lifespan))

    def stop(self) -> None:
        self._serving.close()


def settings_for(standin_url: str, **overrides: Any) -> IdentitySettings:
    base = IdentitySettings()
    values: dict[str, Any] = {
        # Cheaper Argon2 keeps the suite fast; the cost still dominates a sign-in's timing.
        "argon2_time_cost": 2,
        "argon2_memory_cost": 19_456,
        "argon2_parallelism": 1,
        "hibp_api_url": "offline",
        "google_issuer": standin_url,
        "google_client_id": STANDIN_CLIENT_ID,
        "google_client_secret": STANDIN_CLIENT_SECRET,
        "google_redirect_uri": f"{BASE_URL}/api/auth/google/callback",
    }
    values.update(overrides)
    return replace(base, **values)


class Browser:
    """One browser: its own cookie jar and client address. Unsafe requests echo the CSRF
    cookie in ``X-CSRF-Token`` as the storefront's script does, unless ``csrf=False``."""

    def __init__(self, app: Litestar, ip: str = "127.0.0.1") -> None:
        self.app = app
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(ip, 40000)), base_url=BASE_URL
        )

    def cookie(self, name: str) -> str | None:
        return self.client.cookies.get(name)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        csrf: bool = True,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> httpx.Response:
        sent = dict(headers or {})
        token = self.cookie("ember_csrf")
        if csrf and token and method.upper() in {"POST", "PUT", "PATCH", "DELETE"}:
            sent.setdefault("X-CSRF-Token", token)
        return await self.client.request(method, path, json=json, headers=sent, **kw)

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return await self.request("POST", path, json=json, **kw)

    async def put(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return await self.request("PUT", path, json=json, **kw)

    async def delete(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kw)

    async def sign_up(
        self, email: str | None = None, password: str | None = None, name: str = "Ada Roaster"
    ) -> httpx.Response:
        """Only the first step: ``POST /api/auth/register`` (202 whatever the address)."""
        return await self.post(
            "/api/auth/register",
            {
                "email": email or new_email(),
                "password": password or strong_password(),
                "name": name,
            },
        )

    async def register(
        self, email: str | None = None, password: str | None = None, name: str = "Ada Roaster"
    ) -> httpx.Response:
        """Signs up and opens the emailed link, as a newcomer does: the answer of the link
        (201 and signed in), or the sign-up's own answer when that was refused."""
        email = email or new_email()
        asked = await self.sign_up(email, password, name)
        if asked.status_code != 202:
            return asked
        return await self.verify(await sign_up_token(self.app.state.db_engine, email))

    async def verify(self, token: str) -> httpx.Response:
        return await self.post("/api/auth/verify-email", {"token": token})

    async def login(self, email: str, password: str) -> httpx.Response:
        return await self.post("/api/auth/login", {"email": email, "password": password})

    async def aclose(self) -> None:
        await self.client.aclose()


class Account(msgspec.Struct):
    email: str
    password: str
    user_id: uuid.UUID
    access_token: str


async def make_admin(engine: AsyncEngine, user_id: uuid.UUID) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE identity.users SET role = 'admin' WHERE id = :id"), {"id": user_id}
        )


async def outbox_events(engine: AsyncEngine, event_type: str) -> list[dict[str, Any]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT envelope FROM identity.outbox_events WHERE type = :t ORDER BY created_at"),
            {"t": event_type},
        )
        return [msgspec.json.decode(row.envelope) for row in rows]


def opened_link(sealed: str) -> str:
    """A mail link as the notifier opens it: it rests sealed with the notifier's key."""
    return unseal(sealed, private_key(local=True))


async def sign_up_token(engine: AsyncEngine, email: str) -> str:
    """The token of the newest sign-up link mailed to ``email`` (read from the event the
    notifier would turn into the mail)."""
    for event in reversed(await outbox_events(engine, "sign_up.requested.v1")):
        if event["data"]["email"] == email.strip().lower():
            url = opened_link(str(event["data"]["verify_url"]))
            return url.split("token=", 1)[1]
    raise AssertionError(f"no sign-up link was mailed to {email}")


async def audit_actions(engine: AsyncEngine, **where: Any) -> list[dict[str, Any]]:
    clauses = " AND ".join(f"{key} = :{key}" for key in where) or "TRUE"
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                f"SELECT action, user_id, actor_id, email, detail FROM identity.audit_log WHERE {clauses} ORDER BY created_at"
            ),
            where,
        )
        return [dict(row._mapping) for row in rows]
