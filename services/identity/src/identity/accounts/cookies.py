"""The three cookies a sign-in sets, and the guards for routes used before one exists.

- ``ember_session``: the refresh token. httpOnly, SameSite=Lax, Secure outside local mode.
- ``ember_access``: the short-lived access token, httpOnly, read by every service.
- ``ember_csrf``: the session's CSRF token (:mod:`ember_shared.csrf`, bound to the session),
  readable by the page, echoed in ``X-CSRF-Token``.

Routes that act before anyone is signed in (register, sign-in, password reset) cannot use the
double-submit check, so they accept only ``application/json`` bodies: a cross-site form cannot
send that content type without a CORS preflight, which we never grant; SameSite=Lax keeps the
session cookie off cross-site POSTs as well.
"""

from __future__ import annotations

from typing import Any

from ember_shared.cookies import ACCESS_COOKIE, CSRF_COOKIE, SESSION_COOKIE
from ember_shared.csrf import CSRF_HEADER, csrf_matches, is_json
from ember_shared.problems import Problem
from litestar import Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.handlers.base import BaseRouteHandler

from identity.accounts.schemas import SignedIn, UserOut
from identity.accounts.sessions import Issued
from identity.context import Identity
from identity.models import User


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        phone=user.phone,
        roles=user.roles,
        email_verified=user.email_verified,
        has_password=user.password_hash is not None,
        created_at=user.created_at,
    )


def signed_in_body(issued: Issued) -> SignedIn:
    return SignedIn(
        user=user_out(issued.user),
        access_token=issued.access.token,
        token_type="Bearer",  # noqa: S106 - the OAuth token type, not a secret
        expires_in=issued.access.expires_in,
        expires_at=issued.access.expires_at,
        csrf_token=issued.csrf_token,
        session_id=issued.session.id,
    )


def sign_in_cookies(issued: Issued, identity: Identity) -> list[Cookie]:
    secure = not identity.is_local
    session_age = identity.settings.session_ttl_seconds
    cookies = [
        Cookie(
            key=ACCESS_COOKIE,
            value=issued.access.token,
            max_age=issued.access.expires_in,
            httponly=True,
            secure=secure,
            samesite="lax",
            path="/",
        ),
        Cookie(
            key=CSRF_COOKIE,
            value=issued.csrf_token,
            max_age=session_age,
            httponly=False,
            secure=secure,
            samesite="lax",
            path="/",
        ),
    ]
    if issued.refresh_token is not None:
        cookies.append(
            Cookie(
                key=SESSION_COOKIE,
                value=issued.refresh_token,
                max_age=session_age,
                httponly=True,
                secure=secure,
                samesite="lax",
                path="/",
            )
        )
    return cookies


def cleared_cookies(identity: Identity) -> list[Cookie]:
    secure = not identity.is_local
    return [
        Cookie(
            key=name,
            value="",
            max_age=0,
            expires=0,
            httponly=name != CSRF_COOKIE,
            secure=secure,
            samesite="lax",
            path="/",
        )
        for name in (SESSION_COOKIE, ACCESS_COOKIE, CSRF_COOKIE)
    ]


def signed_in_response(issued: Issued, identity: Identity, status: int = 200) -> Response[SignedIn]:
    return Response(
        signed_in_body(issued),
        status_code=status,
        cookies=sign_in_cookies(issued, identity),
        headers={"Cache-Control": "no-store"},
    )


def _is_json(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    return is_json(connection.headers.get("content-type", ""))


async def requires_json(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    if not _is_json(connection):
        raise Problem(
            415,
            "unsupported-media-type",
            "Send this request as application/json.",
            title="Unsupported media type",
        )


def _csrf_refused() -> Problem:
    return Problem(
        403,
        "csrf",
        "Send this request as application/json or with this session's X-CSRF-Token header.",
        title="Cross-site request refused",
    )


def needs_csrf_echo(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """A body-less session route sent neither as JSON nor with a bearer token: only the
    session's own CSRF token in the header shows it came from the shop's pages."""
    return not _is_json(connection) and not connection.headers.get(
        "authorization", ""
    ).lower().startswith("bearer ")


async def requires_json_or_csrf(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """For body-less session routes (refresh, sign out): JSON, a bearer token, or the CSRF echo
    (whose session the handler checks with :func:`check_session_csrf` once it knows it)."""
    if needs_csrf_echo(connection) and not connection.headers.get(CSRF_HEADER, ""):
        raise _csrf_refused()


def check_session_csrf(
    connection: ASGIConnection[Any, Any, Any, Any], identity: Identity, session_id: str
) -> None:
    """The echoed token must be this session's: an equal cookie and header of someone else's
    making are refused."""
    if needs_csrf_echo(connection) and not csrf_matches(
        identity.service.auth.csrf_key, session_id, connection.headers.get(CSRF_HEADER, "")
    ):
        raise _csrf_refused()
