"""Verifying who is calling, without asking identity on every request.

Identity signs short-lived access tokens (EdDSA) and publishes its public keys as JWKS. Every
service verifies them here, locally: the key set is fetched once and cached, refreshed when a
token names a key id it does not know. A token arrives as ``Authorization: Bearer`` or in the
``ember_access`` cookie; a state-changing request authenticated by cookie must also send the
session's CSRF token (the ``ember_csrf`` cookie) in the ``X-CSRF-Token`` header, or it is
refused. The token is bound to the session (:mod:`ember_shared.csrf`): an equal cookie and
header pair of someone else's making does not pass.

A request without a valid token is anonymous; guards decide who may pass. A revoked session
(sign out, password change, disabled account) is refused at once: identity lists its id in
Redis for as long as its access tokens could live.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import structlog
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ASGIApp, Receive, Scope, Send
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ember_shared.csrf import UNSAFE_METHODS, cross_site_refusal, csrf_matches
from ember_shared.jwks import JwksCache
from ember_shared.problems import Problem, answer_problem
from ember_shared.settings import AuthSettings

log = structlog.get_logger("ember.auth")

ALGORITHMS = ["EdDSA"]
SERVICE_TOKEN_HEADER = "x-service-token"  # noqa: S105 - a header name, not a secret
REVOKED_SESSION_KEY = "auth:revoked-session:{sid}"
#: Revocations remembered locally for while Redis is away: longer than any access token lives.
REVOKED_MEMORY_S = 3600.0
REVOKED_MEMORY_SIZE = 10_000
#: After Redis failed a revocation check, ask it again only after this long.
REVOCATION_RECHECK_S = 1.0


@dataclass(frozen=True)
class Principal:
    """The signed-in person a valid access token speaks for."""

    user_id: uuid.UUID
    email: str
    roles: frozenset[str]
    session_id: str
    name: str = ""
    #: Identity proved the mailbox (sign-up link, Google's verified claim). Only then may the
    #: address stand for the person, e.g. to see guest orders placed with it.
    email_verified: bool = False

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


#: At most one JWKS fetch per this many seconds for a key id the set does not hold (a forged or
#: garbled kid must not turn every request into a call to identity).
JWKS_REFETCH_INTERVAL_S = 5.0
#: While no key is known at all (identity unreachable at start), retry sooner than that.
JWKS_EMPTY_RETRY_S = 0.5


class KeySet(JwksCache):
    """Identity's public keys, fetched from its JWKS (or one PEM key given in settings)."""

    def __init__(self, settings: AuthSettings) -> None:
        super().__init__(
            self._fetch,
            refetch_after_s=JWKS_REFETCH_INTERVAL_S,
            empty_retry_s=JWKS_EMPTY_RETRY_S,
        )
        self.settings = settings
        self.pem_key: Any = _load_pem(settings.public_key_pem) if settings.public_key_pem else None

    async def key_for(self, kid: str | None) -> Any:
        if self.pem_key is not None:
            return self.pem_key
        jwk = await self.get(kid)
        if jwk is None:
            raise jwt.InvalidKeyError("unknown key id")
        return jwk.key

    async def _fetch(self) -> dict[str, Any] | None:
        try:
            async with httpx.AsyncClient(timeout=3.0) as client:
                response = await client.get(self.settings.jwks_url)
                response.raise_for_status()
                document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("jwks_fetch_failed", url=self.settings.jwks_url, error=str(exc))
            return None
        return document if isinstance(document, dict) else None


def _load_pem(pem: str) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    return load_pem_public_key(pem.replace("\\n", "\n").encode())


class TokenVerifier:
    def __init__(self, settings: AuthSettings, redis: Redis | None = None) -> None:
        self.settings = settings
        self.keys = KeySet(settings)
        self.redis = redis
        # Sessions this process has seen revoked, for while Redis cannot be asked (oldest first).
        self._revoked_seen: OrderedDict[str, float] = OrderedDict()
        self._redis_down_until = 0.0

    async def _revoked(self, sid: str) -> bool:
        """Whether identity revoked this session. While Redis is unreachable the answer comes
        from the revocations this process has already seen (docs/degradation.md): a signed-in
        shopper keeps shopping, at the cost of a session revoked during the outage living on
        here until its short-lived token expires."""
        if self.redis is None:
            return False
        now = time.monotonic()
        if now >= self._redis_down_until:
            try:
                revoked = bool(await self.redis.exists(REVOKED_SESSION_KEY.format(sid=sid)))
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # Skip Redis for a moment: every request waiting out its retries adds latency.
                self._redis_down_until = now + REVOCATION_RECHECK_S
                log.warning("revocation_check_unavailable", error=str(exc))
            else:
                if revoked:
                    self._revoked_seen[sid] = now + REVOKED_MEMORY_S
                    self._revoked_seen.move_to_end(sid)
                    while len(self._revoked_seen) > REVOKED_MEMORY_SIZE:
                        self._revoked_seen.popitem(last=False)
                return revoked
        until = self._revoked_seen.get(sid)
        return until is not None and until > now

    async def verify(self, token: str) -> Principal:
        """The principal a token speaks for; ``jwt.PyJWTError`` when it speaks for no one."""
        header = jwt.get_unverified_header(token)
        if header.get("alg") not in ALGORITHMS:
            raise jwt.InvalidAlgorithmError("algorithm not allowed")
        key = await self.keys.key_for(header.get("kid"))
        claims = jwt.decode(
            token,
            key=key,
            algorithms=ALGORITHMS,
            audience=self.settings.audience,
            issuer=self.settings.issuer,
            options={"require": ["exp", "iat", "sub", "aud", "iss", "sid"]},
            leeway=5,
        )
        sid = str(claims["sid"])
        if await self._revoked(sid):
            raise jwt.InvalidTokenError("session revoked")
        return Principal(
            user_id=uuid.UUID(str(claims["sub"])),
            email=str(claims.get("email", "")),
            roles=frozenset(str(r) for r in claims.get("roles", [])),
            session_id=sid,
            name=str(claims.get("name", "")),
            email_verified=claims.get("email_verified") is True,
        )


class AuthenticationMiddleware:
    """Puts the :class:`Principal` (or ``None``) in ``scope["user"]``, ``None`` for a
    cookie-authenticated state change that fails the CSRF check. Refuses by itself only a state
    change sent from another site (:func:`ember_shared.csrf.cross_site_refusal`), before any
    guard."""

    def __init__(self, app: ASGIApp, verifier: TokenVerifier) -> None:
        self.app = app
        self.verifier = verifier
        self.csrf_key = verifier.settings.csrf_key
        self.csrf_name = verifier.settings.csrf_header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        if scope.get("method") in UNSAFE_METHODS:
            refusal = cross_site_refusal(ASGIConnection(scope, receive), scope.get("route_handler"))
            if refusal is not None:
                await answer_problem(scope, receive, send, refusal)
                return
        authorization, cookie, given_csrf = _auth_headers(scope.get("headers", ()), self.csrf_name)
        token, from_cookie = _token_from(
            authorization, cookie, self.verifier.settings.access_cookie
        )
        principal: Principal | None = None
        auth_error: str | None = None
        if token:
            try:
                principal = await self.verifier.verify(token)
            except (jwt.PyJWTError, ValueError) as exc:
                auth_error = _describe(exc)
        # The session's own token, not merely the cookie's value: a planted cookie and a header
        # equal to it name no session.
        if (
            principal is not None
            and from_cookie
            and scope.get("method") in UNSAFE_METHODS
            and not csrf_matches(self.csrf_key, principal.session_id, given_csrf)
        ):
            principal = None
            auth_error = "csrf"
        scope["user"] = principal
        scope["auth"] = auth_error
        await self.app(scope, receive, send)


def _describe(exc: Exception) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "expired"
    return "invalid"


def _auth_headers(headers: Any, csrf_name: bytes) -> tuple[str, str, str]:
    """``Authorization``, ``Cookie`` and the CSRF header (the last of each, as a dict of the
    headers had it), read in one pass without decoding the rest: every request pays this."""
    authorization = cookie = csrf = b""
    for raw_name, value in headers:
        name = raw_name.lower()
        if name == b"authorization":
            authorization = value
        elif name == b"cookie":
            cookie = value
        elif name == csrf_name:
            csrf = value
    return authorization.decode("latin-1"), cookie.decode("latin-1"), csrf.decode("latin-1")


def _token_from(authorization: str, cookie: str, cookie_name: str) -> tuple[str, bool]:
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip(), False
    if cookie_name not in cookie:
        return "", True
    return _parse_cookies(cookie).get(cookie_name, ""), True


def _parse_cookies(raw: str) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for part in raw.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            cookies[name] = value
    return cookies


def _unauthenticated(connection: ASGIConnection[Any, Any, Any, Any]) -> Problem:
    reason = connection.scope.get("auth")
    if reason == "csrf":
        return Problem(
            403, "csrf", "The CSRF token is missing or is not this session's (ember_csrf cookie)."
        )
    if reason == "expired":
        return Problem(
            401,
            "token-expired",
            "Your session token has expired: refresh it or sign in again.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return Problem(
        401, "unauthenticated", "Sign in to do this.", headers={"WWW-Authenticate": "Bearer"}
    )


def current_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    user = connection.scope.get("user")
    return user if isinstance(user, Principal) else None


async def requires_signed_in(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    if current_principal(connection) is None:
        raise _unauthenticated(connection)


async def requires_admin(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    principal = current_principal(connection)
    if principal is None:
        raise _unauthenticated(connection)
    if not principal.is_admin:
        raise Problem(403, "forbidden", "This needs the admin role.")


async def requires_service(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard for ``/internal/...`` routes: the caller must present the service credential."""
    expected = connection.app.state.get("service_token", "")
    given = connection.headers.get(SERVICE_TOKEN_HEADER, "")
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise Problem(401, "service-credential", "This route is for Ember services only.")


async def provide_principal(request: Any) -> Principal:
    """Dependency for handlers behind ``requires_signed_in``."""
    principal = current_principal(request)
    if principal is None:
        raise _unauthenticated(request)
    return principal


async def provide_optional_principal(request: Any) -> Principal | None:
    return current_principal(request)
