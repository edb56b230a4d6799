"""Signing in with Google: authorization code + PKCE, with state and nonce checks.

``start`` keeps the state, nonce and PKCE verifier in Redis (ten minutes, single use) under the
state's hash, and binds the state to this browser with a short httpOnly cookie, so a state from
someone else's sign-in (login CSRF) is refused. ``finish`` checks both, exchanges the code,
verifies the ID token and signs in the user whose verified Google email it names: the linked
account, else the account with that email (now linked), else a new account.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import msgspec
from ember_shared.events.contracts import UserRegistered
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.repositories import UserRepository
from identity.accounts.schemas import EMAIL_PATTERN, normalize_email
from identity.accounts.sessions import Issued, Sessions
from identity.audit.services import Actions, record, record_detached
from identity.context import Identity, RequestMeta
from identity.events import outbox
from identity.google.client import OIDCError, OIDCProvider
from identity.models import ROLE_CUSTOMER, OAuthLink, User
from identity.profile.repositories import LinkRepository

PROVIDER = "google"
STATE_TTL = 600
STATE_KEY = "identity:oidc-state:{digest}"
STATE_COOKIE = "ember_oidc_state"
DEFAULT_NEXT = "/account"


class PendingSignIn(msgspec.Struct):
    nonce: str
    code_verifier: str
    redirect_uri: str
    next: str


@dataclass(frozen=True)
class Started:
    authorization_url: str
    state: str


def safe_next(value: str | None) -> str:
    """Only a path on our own site: no scheme, no host, no ``//`` or backslash tricks."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return DEFAULT_NEXT
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value) or len(value) > 500:
        return DEFAULT_NEXT
    return value


def _state_key(state: str) -> str:
    return STATE_KEY.format(digest=hashlib.sha256(state.encode()).hexdigest())


class GoogleSignIn:
    def __init__(
        self,
        db: AsyncSession,
        identity: Identity,
        provider: OIDCProvider,
        meta: RequestMeta,
        origin: str = "",
    ) -> None:
        self.db = db
        #: The shop's origin the shopper is on (one of PUBLIC_URL and its aliases): Google sends
        #: the browser back there, where its cart and cookies are.
        self.origin = origin or identity.public_url
        self.identity = identity
        self.provider = provider
        self.meta = meta
        self.users = UserRepository(session=db)
        self.links = LinkRepository(session=db)
        #: Where this sign-in was to land, once known: a refusal sends the browser back to the
        #: sign-in page with it, so the shopper does not lose the page they came from.
        self.next_path: str | None = None

    @property
    def redirect_uri(self) -> str:
        return self.identity.settings.google_redirect_uri or (
            f"{self.origin}/api/auth/google/callback"
        )

    async def start(self, *, next_path: str | None, login_hint: str = "") -> Started:
        state = secrets.token_urlsafe(32)
        pending = PendingSignIn(
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(64),
            redirect_uri=self.redirect_uri,
            next=safe_next(next_path),
        )
        url = await self.provider.authorization_url(
            redirect_uri=pending.redirect_uri,
            state=state,
            nonce=pending.nonce,
            code_verifier=pending.code_verifier,
            login_hint=login_hint,
        )
        assert self.identity.redis is not None
        await self.identity.redis.set(_state_key(state), msgspec.json.encode(pending), ex=STATE_TTL)
        return Started(authorization_url=url, state=state)

    async def abandon(self, *, state: str, state_cookie: str) -> None:
        """The provider sent the browser back without a code (cancelled, or an error): drop the
        pending sign-in and learn where it was headed. Only this browser's own state counts, so
        a forged callback learns nothing and spends nobody's sign-in."""
        if (
            not state
            or not state_cookie
            or not hmac.compare_digest(state.encode(), state_cookie.encode())
        ):
            return
        assert self.identity.redis is not None
        raw = await self.identity.redis.getdel(_state_key(state))
        if raw is not None:
            self.next_path = safe_next(msgspec.json.decode(raw, type=PendingSignIn).next)

    async def finish(self, *, code: str, state: str, state_cookie: str) -> tuple[Issued, str]:
        try:
            return await self._finish(code=code, state=state, state_cookie=state_cookie)
        except OIDCError as exc:
            await record_detached(
                self.identity.engine, Actions.GOOGLE_FAILED, meta=self.meta, reason=exc.reason
            )
            raise

    async def _finish(self, *, code: str, state: str, state_cookie: str) -> tuple[Issued, str]:
        if (
            not state
            or not state_cookie
            or not hmac.compare_digest(state.encode(), state_cookie.encode())
        ):
            raise OIDCError("bad-state", "This sign-in was not started in this browser.")
        assert self.identity.redis is not None
        raw = await self.identity.redis.getdel(_state_key(state))
        if raw is None:
            raise OIDCError(
                "bad-state", "This sign-in has expired or was already used. Start again."
            )
        pending = msgspec.json.decode(raw, type=PendingSignIn)
        self.next_path = pending.next
        tokens = await self.provider.exchange(
            code=code, redirect_uri=pending.redirect_uri, code_verifier=pending.code_verifier
        )
        claims = await self.provider.verify_id_token(tokens["id_token"], nonce=pending.nonce)
        if claims.get("email_verified") not in (True, "true"):
            raise OIDCError("email-not-verified", "Your Google email address is not verified.")
        email = normalize_email(str(claims.get("email", "")))
        if len(email) > 254 or not re.match(EMAIL_PATTERN, email):
            raise OIDCError("bad-email", "Google sent no usable email address.")
        subject = str(claims["sub"])[:255]
        name = str(claims.get("name", ""))[:120]
        user = await self._user_for(subject=subject, email=email, name=name)
        if user.is_disabled:
            raise OIDCError("account-disabled", "This account has been disabled.")
        issued = await Sessions(self.db, self.identity).start(user, method=PROVIDER, meta=self.meta)
        return issued, pending.next

    async def _user_for(self, *, subject: str, email: str, name: str) -> User:
        link = await self.links.by_subject(PROVIDER, subject)
        if link is not None:
            user = await self.users.by_id(link.user_id, lock=True)
            if user is not None:
                return user
        user = await self.users.by_email(email)
        if user is None:
            user = User(
                email=email, name=name, password_hash=None, role=ROLE_CUSTOMER, email_verified=True
            )
            await self.users.add(user)
            await outbox.add(self.db, UserRegistered(user_id=user.id, email=email, name=name))
            await record(
                self.db,
                Actions.REGISTERED,
                user_id=user.id,
                email=email,
                meta=self.meta,
                method=PROVIDER,
            )
        elif not user.email_verified:
            # Someone may have registered this address without owning it, hoping its owner
            # would later link Google and share the account. The owner has now proved it:
            # whatever password and sessions existed before stop working.
            if user.password_hash is not None:
                user.password_hash = None
                await Sessions(self.db, self.identity).revoke_all(
                    user.id, reason="email-proved-by-google"
                )
            user.email_verified = True
        existing = await self.links.by_user(PROVIDER, user.id)
        if existing is None:
            await self.links.add(
                OAuthLink(user_id=user.id, provider=PROVIDER, subject=subject, email=email)
            )
        else:
            existing.subject = subject
            existing.email = email
        if not user.name and name:
            user.name = name
        await record(self.db, Actions.GOOGLE_LINKED, user_id=user.id, email=email, meta=self.meta)
        return user
