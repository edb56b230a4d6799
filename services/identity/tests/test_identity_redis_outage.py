"""Signing in while Redis (the rate-limit counters) is stopped: it still works, still limited."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ember_devkit.embedded import EmbeddedRedis
from identity.models import User
from identity_helpers import Browser, new_email, strong_password
from sqlalchemy.ext.asyncio import AsyncSession


async def test_sign_in_keeps_working_and_limited_while_redis_is_down(
    make_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persist=False)
    monkeypatch.setenv("REDIS_URL", server.start())
    try:
        async with make_app(login_max_per_account=4, login_max_per_ip=100) as app:
            browser = Browser(app, "198.51.100.7")
            try:
                email, password = new_email(), strong_password()
                async with AsyncSession(app.state.db_engine) as session:
                    password_hash = await app.state.identity.passwords.hash(password)
                    session.add(User(email=email, password_hash=password_hash, email_verified=True))
                    await session.commit()
                server.stop()

                signed_in = await browser.login(email, password)
                assert signed_in.status_code == 200, signed_in.text
                assert signed_in.json()["access_token"]
                # The per-account limit still holds, counted in this process meanwhile.
                statuses = [
                    (await browser.login(email, "not the password")).status_code for _ in range(5)
                ]
                assert statuses[:3] == [401, 401, 401]
                assert statuses[-1] == 429
            finally:
                await browser.aclose()
    finally:
        server.stop()
