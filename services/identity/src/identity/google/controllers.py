"""``/api/auth/google/*``: the browser's round trip through Google (or the local stand-in)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from ember_shared.problems import problem_response
from litestar import Controller, MediaType, Request, Response, get
from litestar.datastructures import Cookie
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.cookies import sign_in_cookies
from identity.context import Identity, RequestMeta
from identity.google.client import OIDCError
from identity.google.services import STATE_COOKIE, STATE_TTL, GoogleSignIn, safe_next

CALLBACK_PATH = "/api/auth/google"
#: HTTP status of each refusal when the caller wants JSON (a browser is sent back to sign-in).
STATUS_OF = {"provider-unavailable": 503, "provider-mismatch": 503, "account-disabled": 403}


async def provide_google(
    db_session: AsyncSession, identity: Identity, meta: RequestMeta, request: Request[Any, Any, Any]
) -> GoogleSignIn:
    # A Host that is not one of the shop's addresses gets PUBLIC_URL: never a redirect target.
    origin = identity.service.app.origin_for(request.headers.get("host"))
    return GoogleSignIn(db_session, identity, request.app.state.oidc, meta, origin)


def _state_cookie(identity: Identity, value: str, max_age: int) -> Cookie:
    # Lax, not Strict: the provider sends the browser back with a top-level cross-site GET.
    return Cookie(
        key=STATE_COOKIE,
        value=value,
        max_age=max_age,
        path=CALLBACK_PATH,
        httponly=True,
        secure=not identity.is_local,
        samesite="lax",
    )


def _refusal(
    request: Request[Any, Any, Any],
    identity: Identity,
    exc: OIDCError,
    next_path: str | None = None,
) -> Response[Any]:
    """A browser goes back to the sign-in page with the reason and, when this sign-in's own
    ``next`` is known, that too (only ever a path on this site)."""
    cleared = _state_cookie(identity, "", 0)
    if "text/html" in request.headers.get("accept", ""):
        params = {"error": f"google-{exc.reason}"}
        if next_path:
            params["next"] = safe_next(next_path)
        return Redirect(f"/sign-in?{urlencode(params)}", status_code=303, cookies=[cleared])
    response = problem_response(
        request,
        STATUS_OF.get(exc.reason, 400),
        f"google-{exc.reason}",
        str(exc),
        title="Google sign-in failed",
        reason=exc.reason,
    )
    response.set_cookie(cleared)
    return response


class GoogleController(Controller):
    path = CALLBACK_PATH
    tags = ["auth"]
    dependencies = {"google": Provide(provide_google)}

    @get(
        "/login",
        summary="Start signing in with Google",
        description=(
            "Redirects (302) to the provider's authorization endpoint with state, nonce and a PKCE "
            "S256 challenge. `next` is the path on this site to land on afterwards (default /account)."
        ),
        status_code=302,
        # A redirect's (empty) body is text/plain; problems are problem+json.
        media_type=MediaType.TEXT,
        cache=False,
    )
    async def login(
        self,
        *,
        request: Request[Any, Any, Any],
        google: GoogleSignIn,
        identity: Identity,
        next_path: Annotated[str | None, Parameter(query="next", max_length=500)] = None,
        login_hint: Annotated[str | None, Parameter(max_length=254)] = None,
    ) -> Response[Any]:
        try:
            started = await google.start(next_path=next_path, login_hint=login_hint or "")
        except OIDCError as exc:
            return _refusal(request, identity, exc, next_path)
        return Redirect(
            started.authorization_url,
            status_code=302,
            cookies=[_state_cookie(identity, started.state, STATE_TTL)],
            headers={"Cache-Control": "no-store"},
        )

    @get(
        "/callback",
        summary="Where the provider sends the browser back",
        description=(
            "Checks the state against this browser's cookie and the stored sign-in, exchanges the "
            "code with the PKCE verifier, verifies the ID token (signature, issuer, audience, expiry, "
            "nonce) and requires a verified email. Then signs in (or creates) the account and "
            "redirects (303) to `next`. A refusal redirects a browser to /sign-in?error=google-..., "
            "and answers problem+json otherwise."
        ),
        status_code=303,
        media_type=MediaType.TEXT,
        cache=False,
    )
    async def callback(
        self,
        *,
        request: Request[Any, Any, Any],
        google: GoogleSignIn,
        identity: Identity,
        db_session: AsyncSession,
        code: Annotated[str | None, Parameter(max_length=2048)] = None,
        oauth_state: Annotated[str | None, Parameter(query="state", max_length=256)] = None,
        error: Annotated[str | None, Parameter(max_length=256)] = None,
    ) -> Response[Any]:
        if error or not code:
            await google.abandon(
                state=oauth_state or "", state_cookie=request.cookies.get(STATE_COOKIE, "")
            )
            refused = (
                OIDCError("cancelled", "Google sign-in was cancelled.")
                if error
                else OIDCError("bad-request", "The provider sent no authorization code.")
            )
            return _refusal(request, identity, refused, google.next_path)
        try:
            issued, next_path = await google.finish(
                code=code,
                state=oauth_state or "",
                state_cookie=request.cookies.get(STATE_COOKIE, ""),
            )
        except OIDCError as exc:
            return _refusal(request, identity, exc, google.next_path)
        # The request owns its transaction, and the shared autocommit only commits 2xx answers:
        # this one is a redirect, so it commits here.
        await db_session.commit()
        return Redirect(
            next_path,
            status_code=303,
            cookies=[*sign_in_cookies(issued, identity), _state_cookie(identity, "", 0)],
            headers={"Cache-Control": "no-store"},
        )
