"""``/api/auth/*``: sign up, sign in and out, refresh, who am I, password reset, JWKS."""

from __future__ import annotations

from typing import Any

from ember_shared.auth import Principal, current_principal, provide_principal, requires_signed_in
from ember_shared.cookies import SESSION_COOKIE
from ember_shared.problems import Problem, problem_response
from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
)
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.cookies import (
    check_session_csrf,
    cleared_cookies,
    requires_json,
    requires_json_or_csrf,
    signed_in_response,
    user_out,
)
from identity.accounts.repositories import UserRepository
from identity.accounts.schemas import (
    Accepted,
    Done,
    ForgotPasswordRequest,
    LoginRequest,
    MeOut,
    RegisterRequest,
    ResetPasswordRequest,
    SignedIn,
    VerifyEmailRequest,
)
from identity.accounts.services import AccountService
from identity.accounts.sessions import SessionRefused, Sessions
from identity.audit.services import Actions, record
from identity.context import Identity, RequestMeta

SIGN_UP_ANSWER = (
    "We have sent a link to that address. Open it to finish: it makes your account and signs "
    "you in. If the address already has an account, the email says so instead."
)
FORGOT_ANSWER = (
    "If an account exists for that address, we have sent it a link to choose a new password. "
    "The link works once, for 30 minutes."
)


async def provide_accounts(
    db_session: AsyncSession, identity: Identity, meta: RequestMeta
) -> AccountService:
    return AccountService(db_session, identity, meta)


class AuthController(Controller):
    path = "/api/auth"
    tags = ["auth"]
    dependencies = {"accounts": Provide(provide_accounts)}

    @post(
        "/register",
        summary="Sign up: mail the address a link that makes the account",
        description=(
            "Email: validated, compared case-insensitively. Password: at least "
            "PASSWORD_MIN_LENGTH (10) and at most 128 characters, not found in breached-password "
            "lists (422 `weak-password`). Always answers 202 with the same body, whether or not "
            "the address already has an account, so the answer never tells. A new address gets "
            "`sign_up.requested.v1` (the notifier mails the link; opening it calls "
            "`POST /api/auth/verify-email`, which makes the account and signs in); an address "
            "with an account gets `sign_up.existing_account.v1` (a mail with links to sign in and "
            "to reset the password). Body must be application/json."
        ),
        status_code=HTTP_202_ACCEPTED,
        guards=[requires_json],
    )
    async def register(self, data: RegisterRequest, accounts: AccountService) -> Accepted:
        await accounts.register(data)
        return Accepted(status="accepted", detail=SIGN_UP_ANSWER)

    @post(
        "/verify-email",
        summary="Finish a sign-up with the emailed link: make the account and sign in",
        description=(
            "The token of the link a sign-up mailed. It works once, within SIGN_UP_TTL_HOURS "
            "(24). Makes the account (its address confirmed), emits `user.registered.v1` and sets "
            "the session cookies, like sign-in. 400 `invalid-sign-up-link` for an unknown, used "
            "or expired link; 409 `already-registered` when the address got its account another "
            "way meanwhile."
        ),
        status_code=HTTP_201_CREATED,
        guards=[requires_json],
    )
    async def verify_email(
        self, data: VerifyEmailRequest, accounts: AccountService, identity: Identity
    ) -> Response[SignedIn]:
        issued = await accounts.verify_email(data)
        return signed_in_response(issued, identity, HTTP_201_CREATED)

    @post(
        "/login",
        summary="Sign in with email and password",
        description=(
            "Rate limited per client address and per account before the password is checked "
            "(429 with Retry-After). A wrong password and an unknown email get the same 401."
        ),
        status_code=HTTP_200_OK,
        guards=[requires_json],
    )
    async def login(
        self, data: LoginRequest, accounts: AccountService, identity: Identity
    ) -> Response[SignedIn]:
        issued = await accounts.login(data)
        return signed_in_response(issued, identity)

    @post(
        "/refresh",
        summary="Exchange the session cookie for a new access token",
        description="Rotates the session (refresh) token. 401 when the session is over.",
        status_code=HTTP_200_OK,
        guards=[requires_json_or_csrf],
    )
    async def refresh(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        identity: Identity,
        meta: RequestMeta,
    ) -> Response[Any]:
        raw = request.cookies.get(SESSION_COOKIE, "")
        try:
            issued = await Sessions(db_session, identity).refresh(raw, meta=meta)
        except SessionRefused:
            # The request owns the transaction, and this error answer must still keep what
            # was decided: a session ended because its old refresh token was replayed.
            await db_session.commit()
            response = problem_response(
                request,
                401,
                "session-ended",
                "Your session has ended. Sign in again.",
                title="Signed out",
                headers={"WWW-Authenticate": "Bearer"},
            )
            for cookie in cleared_cookies(identity):
                response.set_cookie(cookie)
            return response
        # Refused here rolls the rotation back: the request's transaction commits only on 2xx.
        check_session_csrf(request, identity, str(issued.session.id))
        return signed_in_response(issued, identity)

    @post(
        "/logout",
        summary="Sign out: end this session",
        description=(
            "Ends the session named by the session cookie (or the bearer token) and clears the "
            "cookies. Signing out twice is harmless."
        ),
        status_code=HTTP_200_OK,
        guards=[requires_json_or_csrf],
    )
    async def logout(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        identity: Identity,
        meta: RequestMeta,
    ) -> Response[Done]:
        sessions = Sessions(db_session, identity)
        principal = current_principal(request)
        raw = request.cookies.get(SESSION_COOKIE, "")
        session = await sessions.find(raw) if raw and len(raw) <= 200 else None
        if session is not None:
            check_session_csrf(request, identity, str(session.id))
            await sessions.revoke([session], reason="sign-out")
            await record(
                db_session,
                Actions.SIGN_OUT,
                user_id=session.user_id,
                meta=meta,
                session_id=str(session.id),
            )
        if principal is not None and (session is None or str(session.id) != principal.session_id):
            await sessions.revoke_by_sid(principal.session_id, reason="sign-out")
            await record(
                db_session,
                Actions.SIGN_OUT,
                user_id=principal.user_id,
                meta=meta,
                session_id=principal.session_id,
            )
        return Response(
            Done(status="signed-out"),
            cookies=cleared_cookies(identity),
            headers={"Cache-Control": "no-store"},
        )

    @get(
        "/me",
        summary="Who is signed in",
        guards=[requires_signed_in],
        dependencies={"principal": Provide(provide_principal)},
        security=[{"BearerToken": []}],
        cache=False,
    )
    async def me(self, principal: Principal, db_session: AsyncSession) -> MeOut:
        user = await UserRepository(session=db_session).by_id(principal.user_id)
        if user is None or user.is_disabled:
            raise Problem(
                401,
                "unauthenticated",
                "Sign in to do this.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return MeOut(user=user_out(user), session_id=principal.session_id)

    @post(
        "/forgot-password",
        summary="Ask for a password-reset email",
        description=(
            "Always answers 202 with the same body, whether or not the address has an account. "
            "When it does, identity emits `password_reset.requested.v1` and the notifier mails "
            "the link; a new request replaces the previous link."
        ),
        status_code=HTTP_202_ACCEPTED,
        guards=[requires_json],
    )
    async def forgot_password(
        self, data: ForgotPasswordRequest, accounts: AccountService
    ) -> Accepted:
        await accounts.forgot_password(data)
        return Accepted(status="accepted", detail=FORGOT_ANSWER)

    @post(
        "/reset-password",
        summary="Choose a new password with the emailed token",
        description="The token works once, within 30 minutes. Every session of the account is ended.",
        status_code=HTTP_200_OK,
        guards=[requires_json],
    )
    async def reset_password(self, data: ResetPasswordRequest, accounts: AccountService) -> Done:
        await accounts.reset_password(data)
        return Done(
            status="password-reset", detail="Your password has been changed. Sign in with it."
        )

    @get("/jwks.json", summary="Public keys that verify access tokens (JWKS)", cache=False)
    async def jwks(self, identity: Identity) -> Response[dict[str, Any]]:
        return _jwks_response(identity)


@get(
    "/.well-known/jwks.json",
    summary="Public keys that verify access tokens (JWKS)",
    tags=["auth"],
    cache=False,
)
async def well_known_jwks(identity: Identity) -> Response[dict[str, Any]]:
    return _jwks_response(identity)


def _jwks_response(identity: Identity) -> Response[dict[str, Any]]:
    return Response(
        identity.signer.jwks(),
        headers={"Cache-Control": "public, max-age=300"},
        media_type="application/json",
    )
