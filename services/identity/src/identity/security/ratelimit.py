"""A Redis fixed-window counter, shared by every replica of the service.

Keys are hashed, so Redis never holds an email address in clear. One round trip per check:
INCR, and an expiry set on the first hit of a window.

While Redis is unreachable the count is kept in this process instead (docs/degradation.md):
sign-in keeps working and stays limited, per replica rather than across them, until Redis is
back.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = structlog.get_logger("identity.ratelimit")

_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""

# Never below zero, and never a key without its window's expiry.
_REFUND = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
  return redis.call('DECR', KEYS[1])
end
return 0
"""

KEY_PREFIX = "identity:rate"
#: After Redis failed a check, the local counter answers for this long before Redis is tried.
REDIS_RECHECK_S = 1.0
#: Local windows kept at most (oldest dropped first): bounded memory under a flood of subjects.
LOCAL_WINDOWS = 50_000


def limiter_key(bucket: str, subject: str) -> str:
    digest = hashlib.sha256(subject.encode("utf-8")).hexdigest()[:40]
    return f"{KEY_PREFIX}:{bucket}:{digest}"


class RateLimiter:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._script = redis.register_script(_HIT)
        self._refund = redis.register_script(_REFUND)
        #: key -> (count, monotonic end of its window)
        self._local: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._redis_down_until = 0.0

    async def hit(self, bucket: str, subject: str, *, limit: int, window: int) -> int | None:
        """Count one attempt; the seconds to wait when it goes over ``limit``, else None."""
        key = limiter_key(bucket, subject)
        now = time.monotonic()
        if now >= self._redis_down_until:
            try:
                count, ttl = await self._script(keys=[key], args=[window])
            except (RedisConnectionError, RedisTimeoutError) as exc:
                self._redis_down_until = now + REDIS_RECHECK_S
                log.warning("rate_limit_local_fallback", error=str(exc))
            else:
                if int(count) > limit:
                    return max(1, int(ttl))
                return None
        return self._hit_locally(key, now, limit=limit, window=window)

    def _hit_locally(self, key: str, now: float, *, limit: int, window: int) -> int | None:
        count, ends = self._local.get(key, (0, 0.0))
        if ends <= now:
            count, ends = 0, now + window
        count += 1
        self._local[key] = (count, ends)
        self._local.move_to_end(key)
        while len(self._local) > LOCAL_WINDOWS:
            self._local.popitem(last=False)
        if count > limit:
            return max(1, int(ends - now))
        return None

    async def refund(self, bucket: str, subject: str) -> None:
        """Take back one counted attempt (a sign-in that succeeded is not held against anyone)."""
        key = limiter_key(bucket, subject)
        count, ends = self._local.get(key, (0, 0.0))
        if count > 0:
            self._local[key] = (count - 1, ends)
        try:
            await self._refund(keys=[key])
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("rate_limit_refund_skipped", error=str(exc))

    async def reset(self, bucket: str, subject: str) -> None:
        key = limiter_key(bucket, subject)
        self._local.pop(key, None)
        try:
            await self.redis.delete(key)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            # The window runs out by itself; a sign-in must not fail for want of this delete.
            log.warning("rate_limit_reset_skipped", error=str(exc))
