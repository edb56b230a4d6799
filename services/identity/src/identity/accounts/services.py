"""Signing up, signing in and out, and resetting a forgotten password.

Two rules from the architecture shape this module (invariant 7): the rate limiter runs before
any Argon2 verify, and no answer tells whether an email belongs to an account. An unknown email
is checked against a dummy hash, so it takes as long as a wrong password; a sign-up answers the
same for a new and a known address, and the account is made only when the emailed link is opened.
"""

from __future__ import annotations

import datetime as dt
import uuid

from advanced_alchemy.exceptions import DuplicateKeyError, IntegrityError
from ember_shared.events.contracts import (
    PasswordChanged,
    PasswordResetRequested,
    SignUpForExistingAccount,
    SignUpRequested,
    UserRegistered,
)
from ember_shared.problems import Problem
from ember_shared.sealing import public_key, seal
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.policy import check_password
from identity.accounts.repositories import (
    ResetTokenRepository,
    SignUpRepository,
    UserRepository,
)
from identity.accounts.schemas import (
    ForgotPasswordRequest,
    LoginRequest,
    RegisterRequest,
    ResetPasswordRequest,
    VerifyEmailRequest,
    normalize_email,
)
from identity.accounts.sessions import Issued, Sessions, new_secret, now_utc, token_hash
from identity.audit.services import Actions, record, record_detached
from identity.context import Identity, RequestMeta
from identity.events import outbox
from identity.models import ROLE_CUSTOMER, SignUp, User

INVALID_CREDENTIALS = "The email or password is not right."
#: Sign-up and reset mails one address may receive per rate-limit window.
MAILS_PER_ADDRESS = 5


def invalid_credentials() -> Problem:
    return Problem(
        401,
        "invalid-credentials",
        INVALID_CREDENTIALS,
        title="Sign-in failed",
        headers={"WWW-Authenticate": "Bearer"},
    )


def rate_limited(retry_after: int) -> Problem:
    return Problem(
        429,
        "rate-limited",
        f"Too many attempts. Try again in {retry_after} seconds.",
        title="Too many attempts",
        headers={"Retry-After": str(retry_after)},
        retry_after=retry_after,
    )


class AccountService:
    def __init__(self, db: AsyncSession, identity: Identity, meta: RequestMeta) -> None:
        self.db = db
        self.identity = identity
        self.meta = meta
        self.users = UserRepository(session=db)
        self.reset_tokens = ResetTokenRepository(session=db)
        self.sign_ups = SignUpRepository(session=db)
        self.sessions = Sessions(db, identity)

    def _sealed(self, link: str) -> str:
        # A live link never rests in clear (outbox, streams, dead letters, the notifier's
        # tables): only the notifier's key opens it, while the mail is being sent.
        key = self.identity.mail_seal or public_key(local=self.identity.is_local)
        return seal(link, key)

    async def _limit_ip(self, bucket: str, limit: int) -> None:
        retry = await self.identity.limiter.hit(
            bucket, self.meta.ip, limit=limit, window=self.identity.settings.login_window_seconds
        )
        if retry is not None:
            raise rate_limited(retry)

    async def _mail_flooded(self, bucket: str, email: str) -> bool:
        """Per address, quietly: the answer stays the same, but the inbox is not flooded."""
        retry = await self.identity.limiter.hit(
            bucket,
            email,
            limit=MAILS_PER_ADDRESS,
            window=self.identity.settings.login_window_seconds,
        )
        return retry is not None

    # --- sign up -------------------------------------------------------------------------

    async def register(self, data: RegisterRequest) -> None:
        """Mails the address a link that makes the account, or, when the address already has
        one, a note saying so. The caller's answer is the same either way, and so is the work:
        the password is hashed in both cases, so timing tells nothing either."""
        settings = self.identity.settings
        await self._limit_ip("register-ip", settings.sensitive_max_per_ip)
        email = normalize_email(data.email)
        await check_password(self.identity, data.password, email=email)
        password_hash = await self.identity.passwords.hash(data.password)
        flooded = await self._mail_flooded("sign-up-account", email)
        user = await self.users.by_email(email)
        if flooded or (user is not None and user.is_disabled):
            await record(
                self.db,
                Actions.SIGN_UP_REQUESTED,
                user_id=user.id if user else None,
                email=email,
                meta=self.meta,
                sent=False,
                reason="rate-limited" if flooded else "disabled",
            )
            return
        if user is not None:
            await outbox.add(
                self.db,
                SignUpForExistingAccount(
                    user_id=user.id,
                    email=user.email,
                    name=user.name,
                    sign_in_url=f"{self.identity.public_url}/signin",
                    reset_url=f"{self.identity.public_url}/forgot-password",
                ),
            )
            await record(
                self.db,
                Actions.SIGN_UP_REQUESTED,
                user_id=user.id,
                email=email,
                meta=self.meta,
                sent=True,
                existing_account=True,
            )
            return
        now = now_utc()
        await self.sign_ups.prune(now)
        raw = new_secret()
        expires_at = now + dt.timedelta(hours=settings.sign_up_ttl_hours)
        await self.sign_ups.add(
            SignUp(
                email=email,
                name=data.name.strip(),
                password_hash=password_hash,
                token_hash=token_hash(raw),
                expires_at=expires_at,
            )
        )
        await outbox.add(
            self.db,
            # No name: whoever asks chooses it, and the mail goes to an address they need not
            # own, so a name would carry their words to a stranger's inbox under our brand.
            # The name waits on the sign-up row until the mailbox's owner opens the link.
            SignUpRequested(
                email=email,
                verify_url=self._sealed(f"{self.identity.public_url}/verify-email?token={raw}"),
                expires_at=expires_at.isoformat(),
            ),
        )
        await record(
            self.db,
            Actions.SIGN_UP_REQUESTED,
            email=email,
            meta=self.meta,
            sent=True,
            existing_account=False,
        )

    async def verify_email(self, data: VerifyEmailRequest) -> Issued:
        """Opening the emailed link proves the mailbox: the account is made and signed in."""
        await self._limit_ip("verify-ip", self.identity.settings.sensitive_max_per_ip)
        sign_up = await self.sign_ups.consume(token_hash(data.token), now_utc())
        if sign_up is None:
            await record_detached(
                self.identity.engine,
                Actions.SIGN_UP_FAILED,
                meta=self.meta,
                reason="invalid-token",
            )
            raise Problem(
                400,
                "invalid-sign-up-link",
                "This link is not valid: it may have expired or been used already. "
                "Sign in if your account is ready, or sign up again.",
                title="Sign-up link not valid",
            )
        if await self.users.by_email(sign_up.email) is not None:
            # Only the mailbox owner holds the link, so saying this reveals nothing.
            raise _already_registered()
        user = User(
            email=sign_up.email,
            name=sign_up.name,
            password_hash=sign_up.password_hash,
            role=ROLE_CUSTOMER,
            email_verified=True,
        )
        try:
            await self.users.add(user)
        except (DuplicateKeyError, IntegrityError) as exc:
            # Another link of the same address (or Google) made the account a moment ago.
            raise _already_registered() from exc
        await self.sign_ups.discard_for_email(user.email)
        await outbox.add(self.db, UserRegistered(user_id=user.id, email=user.email, name=user.name))
        await record(self.db, Actions.REGISTERED, user_id=user.id, email=user.email, meta=self.meta)
        return await self.sessions.start(user, method="password", meta=self.meta)

    # --- sign in -------------------------------------------------------------------------

    async def login(self, data: LoginRequest) -> Issued:
        email = normalize_email(data.email)
        limits = self.identity.signin_limits
        # Counted before the account is even looked up: a refused attempt costs no Argon2 work
        # and says nothing about the account (see identity.security.signin_limits).
        attempt = await limits.admit(email, self.meta.ip)
        if attempt.refused is not None:
            await record_detached(
                self.identity.engine,
                Actions.SIGN_IN_LIMITED,
                email=email,
                meta=self.meta,
                scope=attempt.refused.scope,
            )
            raise rate_limited(attempt.refused.retry_after)

        user = await self.users.by_email(email)
        if user is None or user.password_hash is None:
            await self.identity.passwords.verify_dummy(data.password)
            await limits.failed(attempt)
            await self._failed(email, user, "unknown-email" if user is None else "no-password")
            raise invalid_credentials()
        if not await self.identity.passwords.verify(user.password_hash, data.password):
            await limits.failed(attempt)
            await self._failed(email, user, "wrong-password")
            raise invalid_credentials()
        if user.is_disabled:
            # Said only to someone who knows the password.
            await self._failed(email, user, "disabled")
            raise Problem(
                403, "account-disabled", "This account has been disabled.", title="Account disabled"
            )
        if self.identity.passwords.needs_rehash(user.password_hash):
            user.password_hash = await self.identity.passwords.hash(data.password)
        await limits.succeeded(attempt)
        return await self.sessions.start(user, method="password", meta=self.meta)

    async def _failed(self, email: str, user: User | None, reason: str) -> None:
        await record_detached(
            self.identity.engine,
            Actions.SIGN_IN_FAILED,
            user_id=user.id if user else None,
            email=email,
            meta=self.meta,
            reason=reason,
        )

    # --- password reset ------------------------------------------------------------------

    async def forgot_password(self, data: ForgotPasswordRequest) -> None:
        settings = self.identity.settings
        await self._limit_ip("forgot-ip", settings.sensitive_max_per_ip)
        email = normalize_email(data.email)
        flooded = await self._mail_flooded("forgot-account", email)
        user = await self.users.by_email(email)
        if flooded or user is None or user.is_disabled:
            await record(
                self.db,
                Actions.RESET_REQUESTED,
                user_id=user.id if user else None,
                email=email,
                meta=self.meta,
                sent=False,
                reason="rate-limited" if flooded else "no-account",
            )
            return
        raw = new_secret()
        expires_at = now_utc() + dt.timedelta(minutes=settings.reset_token_ttl_minutes)
        await self.reset_tokens.replace(
            user_id=user.id,
            token_hash=token_hash(raw),
            expires_at=expires_at,
            token_id=uuid.uuid4(),
        )
        await outbox.add(
            self.db,
            PasswordResetRequested(
                user_id=user.id,
                email=user.email,
                reset_url=self._sealed(f"{self.identity.public_url}/reset-password?token={raw}"),
                expires_at=expires_at.isoformat(),
            ),
        )
        await record(
            self.db,
            Actions.RESET_REQUESTED,
            user_id=user.id,
            email=email,
            meta=self.meta,
            sent=True,
        )

    async def reset_password(self, data: ResetPasswordRequest) -> User:
        await self._limit_ip("reset-ip", self.identity.settings.sensitive_max_per_ip)
        # Checked first, so a refused password does not use up the link.
        await check_password(self.identity, data.password)
        user_id = await self.reset_tokens.consume(token_hash(data.token), now_utc())
        user = await self.users.by_id(user_id, lock=True) if user_id else None
        if user is None or user.is_disabled:
            await record_detached(
                self.identity.engine,
                Actions.RESET_FAILED,
                user_id=user.id if user else None,
                meta=self.meta,
                reason="invalid-token" if user is None else "disabled",
            )
            raise Problem(
                400,
                "invalid-reset-token",
                "This reset link is not valid: it may have expired or been used already. "
                "Ask for a new one.",
                title="Reset link not valid",
            )
        if data.password.strip().lower() in {user.email, user.email.split("@", 1)[0]}:
            raise Problem(
                422,
                "weak-password",
                "Do not use your email address as your password.",
                title="Choose another password",
                reason="like-email",
            )
        user.password_hash = await self.identity.passwords.hash(data.password)
        # Only the owner of the mailbox could follow the link.
        user.email_verified = True
        ended = await self.sessions.revoke_all(user.id, reason="password-reset")
        # The owner proved the mailbox: failed guesses no longer stand between them and sign-in.
        await self.identity.signin_limits.clear(user.email)
        await outbox.add(self.db, PasswordChanged(user_id=user.id, email=user.email))
        await record(
            self.db,
            Actions.RESET_DONE,
            user_id=user.id,
            email=user.email,
            meta=self.meta,
            sessions_ended=len(ended),
        )
        return user


def _already_registered() -> Problem:
    return Problem(
        409,
        "already-registered",
        "Your address is confirmed and its account is ready: sign in.",
        title="Account already made",
    )
