"""The admin account ``make run`` starts with: ``python -m identity.seed``.

Reads ``ADMIN_EMAIL`` and ``ADMIN_PASSWORD``. In local mode they default to
``admin@ember.local`` and a password generated once and kept in the data folder
(``identity-admin-password``). The account is created, or made admin and enabled again; a
configured password replaces the stored hash when it no longer matches. Prints how to sign in.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from pathlib import Path

from ember_shared.db import make_engine
from ember_shared.settings import data_dir, service_settings
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from identity.accounts.schemas import EMAIL_PATTERN, normalize_email
from identity.models import ROLE_ADMIN, User
from identity.security.passwords import Passwords
from identity.settings import IdentitySettings

DEFAULT_ADMIN_EMAIL = "admin@ember.local"
PASSWORD_FILE = "identity-admin-password"  # noqa: S105 - a file name


def _local_password(folder: Path) -> str:
    path = folder / PASSWORD_FILE
    if path.exists():
        return path.read_text().strip()
    folder.mkdir(parents=True, exist_ok=True)
    password = "ember-" + secrets.token_urlsafe(12)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


def admin_credentials(settings: IdentitySettings, *, local: bool) -> tuple[str, str] | None:
    email = normalize_email(settings.admin_email or (DEFAULT_ADMIN_EMAIL if local else ""))
    password = settings.admin_password or (_local_password(data_dir()) if local else "")
    if not email or not password:
        return None
    if not re.match(EMAIL_PATTERN, email):
        raise SystemExit(f"ADMIN_EMAIL {email!r} is not an email address")
    if len(password) < settings.password_min_length:
        raise SystemExit(
            f"ADMIN_PASSWORD must have at least {settings.password_min_length} characters"
        )
    return email, password


async def ensure_admin(email: str, password: str, settings: IdentitySettings) -> str:
    """Create or repair the admin account; returns what was done."""
    service = service_settings("identity")
    engine = make_engine(service)
    passwords = Passwords(settings)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
            user = await session.scalar(select(User).where(User.email == email).with_for_update())
            if user is None:
                session.add(
                    User(
                        email=email,
                        name="Ember admin",
                        password_hash=await passwords.hash(password),
                        role=ROLE_ADMIN,
                        email_verified=True,
                    )
                )
                return "created"
            done = "kept"
            if user.role != ROLE_ADMIN or user.disabled_at is not None:
                user.role = ROLE_ADMIN
                user.disabled_at = None
                done = "restored"
            if user.password_hash is None or not await passwords.verify(
                user.password_hash, password
            ):
                user.password_hash = await passwords.hash(password)
                done = "password reset"
            return done
    finally:
        await engine.dispose()


async def seed() -> None:
    settings = IdentitySettings()
    service = service_settings("identity")
    credentials = admin_credentials(settings, local=service.app.is_local)
    if credentials is None:
        print("identity: no admin account (set ADMIN_EMAIL and ADMIN_PASSWORD to create one)")
        return
    email, password = credentials
    done = await ensure_admin(email, password, settings)
    public_url = service.app.public_url.rstrip("/")
    shown = password if service.app.is_local else "(ADMIN_PASSWORD)"
    print(f"identity: admin account {done}. Sign in at {public_url}/sign-in as {email} / {shown}")
    print(
        f"identity: or by API: curl -X POST {public_url}/api/auth/login "
        f'-H \'Content-Type: application/json\' -d \'{{"email": "{email}", "password": "..."}}\''
    )


if __name__ == "__main__":
    asyncio.run(seed())
