"""A Redis fixed-window counter, shared by every replica of the service.

Keys are hashed, so Redis never holds an email address in clear. One round trip per check:
INCR, and an expiry set on the first hit of a window.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

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

KEY_PREFIX = "identity:rate"


def limiter_key(bucket: str, subject: str) -> str:
    digest = hashlib.sha256(subject.encode("utf-8")).hexdigest()[:40]
    return f"{KEY_PREFIX}:{bucket}:{digest}"


class RateLimiter:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._script = redis.register_script(_HIT)

    async def hit(self, bucket: str, subject: str, *, limit: int, window: int) -> int | None:
        """Count one attempt; the seconds to wait when it goes over ``limit``, else None."""
        count, ttl = await self._script(keys=[limiter_key(bucket, subject)], args=[window])
        if int(count) > limit:
            return max(1, int(ttl))
        return None

    async def reset(self, bucket: str, subject: str) -> None:
        await self.redis.delete(limiter_key(bucket, subject))
