"""The shopper read path's Redis cache: encoded JSON bytes, invalidated at once on a write.

Layout (all under ``catalog:cache:``):

- ``gen``: a generation counter, bumped by every invalidation;
- ``v:<kind>:<hash>``: one answer, stored as its 16-character ETag followed by the JSON body;
- ``keys:lists``: the keys of every listing, search and category answer (one invalidation
  deletes them all); ``keys:pages``: every product page key; ``keys:product:<id>``: the page
  keys of one product (it is served by slug and by id).

Correctness against a concurrent write: a reader notes ``gen`` *before* it queries Postgres,
and its fill (a Lua script) stores the answer only if ``gen`` is still the same. A writer
commits first and then invalidates (bump ``gen`` and delete the keys, also one script), so an
answer computed from data older than the commit is either refused or deleted.

Stampede safety on a cold key: one build per process at a time (single flight), and one per
cluster through a short Redis lock (``SET NX PX``); the others poll the key for the fresh value.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

log = structlog.get_logger("catalog.cache")

PREFIX = "catalog:cache:"
GEN_KEY = PREFIX + "gen"
LISTS_SET = PREFIX + "keys:lists"
PAGES_SET = PREFIX + "keys:pages"
ETAG_LENGTH = 16

_FILL = """
local gen = redis.call('GET', KEYS[1]) or '0'
if gen ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[2])
  redis.call('PEXPIRE', KEYS[i], ARGV[3])
end
return 1
"""

_INVALIDATE = """
redis.call('INCR', KEYS[1])
local deleted = 0
for i = 2, #KEYS do
  local members = redis.call('SMEMBERS', KEYS[i])
  for j = 1, #members, 500 do
    deleted = deleted + redis.call('UNLINK', unpack(members, j, math.min(j + 499, #members)))
  end
  redis.call('UNLINK', KEYS[i])
end
return deleted
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

#: Builds a cached answer: its JSON body and the key sets it belongs to.
Builder = Callable[[], Awaitable[tuple[bytes, Sequence[str]]]]

_PENDING_KEY = "catalog.cache.pending"
_TASK_KEY = "catalog.cache.task"


def product_set(product_id: uuid.UUID) -> str:
    return f"{PREFIX}keys:product:{product_id}"


def value_key(kind: str, *parts: object) -> str:
    """A cache key for one answer; the parts (already normalised by the caller) are hashed."""
    digest = hashlib.blake2b(
        "\x1f".join(str(p) for p in parts).encode(), digest_size=12
    ).hexdigest()
    return f"{PREFIX}v:{kind}:{digest}"


def with_etag(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=ETAG_LENGTH // 2).hexdigest().encode() + body


@dataclass
class Invalidation:
    """What a committed write made stale."""

    product_ids: set[uuid.UUID] = field(default_factory=set)
    lists: bool = False
    everything: bool = False

    def merge(self, other: Invalidation) -> None:
        self.product_ids |= other.product_ids
        self.lists = self.lists or other.lists
        self.everything = self.everything or other.everything

    def sets(self) -> list[str]:
        if self.everything:
            return [LISTS_SET, PAGES_SET]
        names = [product_set(pid) for pid in sorted(self.product_ids)]
        if self.lists:
            names.append(LISTS_SET)
        return names


@dataclass
class CacheStats:
    hits: int = 0
    builds: int = 0
    fills_refused: int = 0
    invalidations: int = 0


class CatalogCache:
    def __init__(self, redis: Redis, *, ttl_seconds: int, lock_ms: int) -> None:
        self.redis = redis
        self.ttl_ms = ttl_seconds * 1000
        self.lock_ms = lock_ms
        self.stats = CacheStats()
        self._inflight: dict[str, asyncio.Future[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._fill = redis.register_script(_FILL)
        self._invalidate = redis.register_script(_INVALIDATE)
        self._unlock = redis.register_script(_UNLOCK)

    # --- reading -----------------------------------------------------------------------

    async def _get(self, key: str) -> bytes | None:
        value = await self.redis.get(key)
        return value.encode() if isinstance(value, str) else value

    async def get(self, key: str) -> bytes | None:
        """The stored ETag + body, or None on a miss (one Redis round trip)."""
        value = await self._get(key)
        if value is not None:
            self.stats.hits += 1
        return value

    async def get_or_build(self, key: str, build: Builder) -> bytes:
        """ETag + body for ``key``, built by ``build`` on a miss. ``build`` answers the JSON
        body and the key sets the answer belongs to (what invalidates it; none: not cached).

        An exception from ``build`` (a 404 problem, say) propagates to every waiter and
        nothing is cached.
        """
        value = await self.get(key)
        if value is not None:
            return value
        running = self._inflight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        # Mark the outcome as retrieved even when nobody else waited for it.
        future.add_done_callback(lambda f: None if f.cancelled() else f.exception())
        self._inflight[key] = future
        try:
            value = await self._build_once(key, build)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
            raise
        else:
            future.set_result(value)
            return value
        finally:
            self._inflight.pop(key, None)

    async def _build_once(self, key: str, build: Builder) -> bytes:
        lock_key = key + ":lock"
        token = secrets.token_hex(8)
        deadline = time.monotonic() + self.lock_ms / 1000
        delay = 0.005
        while True:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(lock_key, token, nx=True, px=self.lock_ms)
                pipe.get(GEN_KEY)
                locked, generation = await pipe.execute()
            if locked:
                try:
                    return await self._build_and_fill(key, build, generation)
                finally:
                    await self._unlock(keys=[lock_key], args=[token])
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            value = await self.get(key)
            if value is not None:
                return value
            if time.monotonic() > deadline:
                # The lock holder is slow or gone: answer from Postgres rather than wait more.
                generation = await self._get(GEN_KEY)
                return await self._build_and_fill(key, build, generation)

    async def _build_and_fill(self, key: str, build: Builder, generation: bytes | None) -> bytes:
        self.stats.builds += 1
        body, sets = await build()
        value = with_etag(body)
        if not sets:
            # An answer that belongs to no key set could never be invalidated: not cached.
            return value
        stored = await self._fill(
            keys=[GEN_KEY, key, *sets],
            args=[generation or b"0", value, self.ttl_ms],
        )
        if not stored:
            self.stats.fills_refused += 1
        return value

    # --- invalidating ------------------------------------------------------------------

    async def invalidate(self, what: Invalidation) -> None:
        sets = what.sets()
        if not sets:
            return
        self.stats.invalidations += 1
        await self._invalidate(keys=[GEN_KEY, *sets])

    async def invalidate_everything(self) -> None:
        await self.invalidate(Invalidation(everything=True))

    def invalidate_on_commit(
        self,
        session: AsyncSession,
        *,
        product_ids: Iterable[uuid.UUID] = (),
        lists: bool = False,
        everything: bool = False,
    ) -> None:
        """Invalidate once ``session``'s transaction commits (never before: a reader could
        otherwise fill the cache again from the data the transaction is replacing)."""
        pending: Invalidation | None = session.info.get(_PENDING_KEY)
        if pending is None:
            pending = Invalidation()
            session.info[_PENDING_KEY] = pending
            session.info[_PENDING_KEY + ".cache"] = self
        pending.merge(Invalidation(set(product_ids), lists, everything))

    async def commit(self, session: AsyncSession) -> None:
        """Commit the request's transaction and invalidate what it changed before answering,
        so a shopper never reads a stale answer after the write has returned."""
        await session.commit()
        task: asyncio.Task[None] | None = session.info.pop(_TASK_KEY, None)
        if task is not None:
            await task

    def _start(self, what: Invalidation) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._invalidate_logged(what))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _invalidate_logged(self, what: Invalidation) -> None:
        try:
            await self.invalidate(what)
        except Exception as exc:
            log.exception("cache_invalidation_failed", error=str(exc), sets=what.sets())

    async def settle(self) -> None:
        """Wait for invalidations started by commits elsewhere (event handlers, the sweeper)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    pending: Invalidation | None = session.info.pop(_PENDING_KEY, None)
    cache: CatalogCache | None = session.info.pop(_PENDING_KEY + ".cache", None)
    if pending is not None and cache is not None:
        session.info[_TASK_KEY] = cache._start(pending)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)
    session.info.pop(_PENDING_KEY + ".cache", None)


def etag_of(value: bytes) -> str:
    return value[:ETAG_LENGTH].decode()


def body_of(value: bytes) -> bytes:
    return value[ETAG_LENGTH:]


def cache_headers(value: bytes, hit: bool) -> dict[str, Any]:
    return {
        "ETag": f'"{etag_of(value)}"',
        # Shoppers must see a new price at once, so clients revalidate every time (cheap: 304).
        "Cache-Control": "public, no-cache",
        "X-Cache": "hit" if hit else "miss",
    }
