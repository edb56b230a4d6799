"""``make run``'s admin account: created from settings, repaired when run again, and printed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from ember_shared.settings import data_dir
from identity.seed import DEFAULT_ADMIN_EMAIL, PASSWORD_FILE, seed
from identity_helpers import Browser, new_email, strong_password
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def test_seed_creates_the_admin_from_settings(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    browsers: Callable[..., Browser],
    engine: AsyncEngine,
) -> None:
    email, password = new_email("admin"), strong_password()
    monkeypatch.setenv("ADMIN_EMAIL", email.upper())
    monkeypatch.setenv("ADMIN_PASSWORD", password)
    await seed()
    out = capsys.readouterr().out
    assert "admin account created" in out
    assert f"as {email} / {password}" in out  # local mode prints how to sign in
    browser = browsers()
    response = await browser.login(email, password)
    assert response.status_code == 200
    assert response.json()["user"]["roles"] == ["customer", "admin"]
    assert (await browser.get("/api/admin/users")).status_code == 200

    # Run again (every `make run`): nothing to do.
    await seed()
    assert "admin account kept" in capsys.readouterr().out

    # Demoted, disabled and with another password: the next run repairs all three.
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE identity.users SET role = 'customer', disabled_at = now() WHERE email = :e"
            ),
            {"e": email},
        )
    new_password = strong_password()
    monkeypatch.setenv("ADMIN_PASSWORD", new_password)
    await seed()
    assert "password reset" in capsys.readouterr().out
    assert (await browsers().login(email, password)).status_code == 401
    again = await browsers().login(email, new_password)
    assert again.status_code == 200
    assert "admin" in again.json()["user"]["roles"]


async def test_seed_in_local_mode_makes_and_keeps_a_password(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    browsers: Callable[..., Browser],
) -> None:
    monkeypatch.delenv("ADMIN_EMAIL", raising=False)
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    await seed()
    path: Path = data_dir() / PASSWORD_FILE
    password = path.read_text().strip()  # noqa: ASYNC240 - a test reading a tiny file
    assert len(password) >= 16
    assert path.stat().st_mode & 0o077 == 0  # noqa: ASYNC240 - owner-only file
    assert DEFAULT_ADMIN_EMAIL in capsys.readouterr().out
    await seed()
    assert path.read_text().strip() == password  # noqa: ASYNC240
    assert (await browsers().login(DEFAULT_ADMIN_EMAIL, password)).status_code == 200


async def test_seed_refuses_a_short_admin_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_EMAIL", new_email("admin"))
    monkeypatch.setenv("ADMIN_PASSWORD", "short")
    with pytest.raises(SystemExit, match="at least"):
        await seed()
