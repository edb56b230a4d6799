"""Sign-in limits that stop password guessing without letting anyone lock the owner out.

Checked before any Argon2 work, in this order, so a refused attempt costs nothing and says
nothing about the account:

* a growing delay per account: after ``login_max_per_account`` failures from anywhere, each
  further try must wait 2, 4, 8 ... seconds (capped at ``login_delay_cap_s``) after the last
  failure. Guessing from many addresses slows to a crawl, yet the owner waits seconds, not minutes;
* failures per client address (``login_max_per_ip``), so one address cannot try many accounts;
* failures per (account, client address) (``login_max_per_account``): the guesser is stopped,
  the owner signing in from elsewhere is not;
* a much higher per-account ceiling (``login_account_ceiling``), a backstop only.

Every counter counts an attempt when it starts (so concurrent guesses cannot slip past) and gives
it back when the password was right: successes are never held against an address shared by many
(an office, a carrier's NAT). A successful sign-in or a password reset clears the account's
counters for every address at once, by moving the account to a new epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from identity.security.ratelimit import RateLimiter, limiter_key
from identity.settings import IdentitySettings

log = structlog.get_logger("identity.signin_limits")
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)


@dataclass(frozen=True)
class Refused:
    retry_after: int
    scope: str


@dataclass(frozen=True)
class Attempt:
    email: str
    ip: str
    epoch: str
    refused: Refused | None = None


class SignInLimits:
    def __init__(self, limiter: RateLimiter, redis: Redis, settings: IdentitySettings) -> None:
        self.limiter = limiter
        self.redis = redis
        self.settings = settings

    def _pair(self, attempt: Attempt) -> str:
        return f"{attempt.epoch}|{attempt.email}|{attempt.ip}"

    def _account(self, attempt: Attempt) -> str:
        return f"{attempt.epoch}|{attempt.email}"

    async def _epoch(self, email: str) -> str:
        try:
            value = await self.redis.get(limiter_key("login-epoch", email))
        except REDIS_DOWN:
            return "0"
        return value.decode() if isinstance(value, bytes) else str(value or "0")

    async def _delay_left(self, email: str) -> int:
        try:
            until = await self.redis.get(limiter_key("login-delay", email))
        except REDIS_DOWN:
            return 0
        if until is None:
            return 0
        left = float(until) - time.time()
        return max(1, int(left + 0.999)) if left > 0 else 0

    async def admit(self, email: str, ip: str) -> Attempt:
        """Count the attempt; ``refused`` says why it may not be tried (nothing else counted)."""
        s = self.settings
        window = s.login_window_seconds
        attempt = Attempt(email=email, ip=ip, epoch=await self._epoch(email))
        wait = await self._delay_left(email)
        if wait:
            return Attempt(email, ip, attempt.epoch, Refused(wait, "account-delay"))
        retry = await self.limiter.hit("login-ip", ip, limit=s.login_max_per_ip, window=window)
        if retry is not None:
            return Attempt(email, ip, attempt.epoch, Refused(retry, "ip"))
        retry = await self.limiter.hit(
            "login-pair", self._pair(attempt), limit=s.login_max_per_account, window=window
        )
        if retry is not None:
            await self.limiter.refund("login-ip", ip)
            return Attempt(email, ip, attempt.epoch, Refused(retry, "account-client"))
        retry = await self.limiter.hit(
            "login-account", self._account(attempt), limit=s.login_account_ceiling, window=window
        )
        if retry is not None:
            await self.limiter.refund("login-ip", ip)
            await self.limiter.refund("login-pair", self._pair(attempt))
            return Attempt(email, ip, attempt.epoch, Refused(retry, "account"))
        return attempt

    async def failed(self, attempt: Attempt) -> None:
        """The password was wrong: past the free tries, the account's next try must wait."""
        s = self.settings
        try:
            failures = int(
                await self.redis.get(limiter_key("login-account", self._account(attempt))) or 0
            )
            over = failures - s.login_max_per_account
            if over > 0:
                delay = min(2 ** min(over, 20), s.login_delay_cap_s)
                await self.redis.set(
                    limiter_key("login-delay", attempt.email),
                    str(time.time() + delay),
                    ex=delay + 1,
                )
        except REDIS_DOWN as exc:
            log.warning("sign_in_delay_skipped", error=str(exc))

    async def succeeded(self, attempt: Attempt) -> None:
        """The right password: nothing counted against this address, and the account starts over."""
        await self.limiter.refund("login-ip", attempt.ip)
        # Also given back one by one: while Redis is away, clear() cannot move the epoch.
        await self.limiter.refund("login-pair", self._pair(attempt))
        await self.limiter.refund("login-account", self._account(attempt))
        await self.clear(attempt.email)

    async def clear(self, email: str) -> None:
        """Forget the account's failures everywhere (a verified sign-in, a password reset)."""
        epoch_key = limiter_key("login-epoch", email)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(epoch_key)
                # Outlives every counter of the old epoch, so an old epoch never comes back.
                pipe.expire(epoch_key, self.settings.login_window_seconds * 2 + 60)
                pipe.delete(limiter_key("login-delay", email))
                await pipe.execute()
        except REDIS_DOWN as exc:
            log.warning("sign_in_limits_clear_skipped", error=str(exc))
