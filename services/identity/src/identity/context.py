"""What every identity request handler shares: settings, hasher, signer, limiter, clients.

One :class:`Identity` is built per app (:func:`identity.app.create_app`) and reached through
the ``identity`` dependency. Tests reach it as ``app.state.identity`` to observe or replace
parts (the password verifier, the clock of the breach checker's HTTP client, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from ember_shared.cookies import SESSION_COOKIE
from ember_shared.settings import ServiceSettings
from litestar import Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.security.breached import BreachedPasswords
from identity.security.passwords import Passwords
from identity.security.ratelimit import RateLimiter
from identity.security.signin_limits import SignInLimits
from identity.security.tokens import TokenSigner
from identity.settings import IdentitySettings


@dataclass
class Identity:
    settings: IdentitySettings
    service: ServiceSettings
    passwords: Passwords
    breached: BreachedPasswords
    signer: TokenSigner
    # Set when the app starts (they need its event loop).
    redis: Redis | None = None
    engine: AsyncEngine | None = None
    http: httpx.AsyncClient | None = None
    _limiter: RateLimiter | None = None
    #: The notifier's public key that seals mailed links (set when the app is built).
    mail_seal: X25519PublicKey | None = None

    @property
    def limiter(self) -> RateLimiter:
        if self._limiter is None:
            assert self.redis is not None, "the app has not started"
            self._limiter = RateLimiter(self.redis)
        return self._limiter

    @property
    def signin_limits(self) -> SignInLimits:
        assert self.redis is not None, "the app has not started"
        return SignInLimits(self.limiter, self.redis, self.settings)

    @property
    def is_local(self) -> bool:
        return self.service.app.is_local

    @property
    def public_url(self) -> str:
        return self.service.app.public_url.rstrip("/")


@dataclass(frozen=True)
class RequestMeta:
    """Where a request came from, for rate limits and the audit log.

    Behind Caddy, uvicorn runs with ``--proxy-headers`` so ``client.host`` is the browser's
    address, not Caddy's.
    """

    ip: str
    user_agent: str
    #: The browser's current session (refresh) token, if any: a new sign-in replaces it.
    session_cookie: str = ""

    @classmethod
    def of(cls, request: Request[Any, Any, Any]) -> RequestMeta:
        host = request.client.host if request.client else ""
        return cls(
            ip=host[:64] or "unknown",
            user_agent=request.headers.get("user-agent", "")[:255],
            session_cookie=request.cookies.get(SESSION_COOKIE, "")[:200],
        )


async def provide_identity(request: Request[Any, Any, Any]) -> Identity:
    identity: Identity = request.app.state.identity
    return identity


async def provide_meta(request: Request[Any, Any, Any]) -> RequestMeta:
    return RequestMeta.of(request)
