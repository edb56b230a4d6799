"""The password policy: long enough, not too long, not known from breaches."""

from __future__ import annotations

from ember_shared.problems import Problem

from identity.context import Identity


def weak_password(reason: str, detail: str) -> Problem:
    return Problem(422, "weak-password", detail, title="Choose another password", reason=reason)


async def check_password(identity: Identity, password: str, *, email: str = "") -> None:
    settings = identity.settings
    if len(password) < settings.password_min_length:
        raise weak_password("too-short", f"Use at least {settings.password_min_length} characters.")
    if len(password) > settings.password_max_length:
        raise weak_password("too-long", f"Use at most {settings.password_max_length} characters.")
    if email and password.strip().lower() in {email, email.split("@", 1)[0]}:
        raise weak_password("like-email", "Do not use your email address as your password.")
    if await identity.breached.is_breached(password):
        raise weak_password(
            "breached",
            "This password appears in known data breaches or lists of common passwords. "
            "Choose another.",
        )
