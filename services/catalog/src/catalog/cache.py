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

While Redis is unreachable (docs/degradation.md): the first Redis error makes this process stop
trusting the cache, and reads go to Postgres; an invalidation that fails is kept (merged) and
replayed. A guard (:meth:`CatalogCache.guard`, one task per process) gives the cache back only
once Redis answers again, the kept invalidations are replayed and the cache is checked against
the Redis server's ``run_id``: a restarted Redis reloads entries written before its outage,
which invalidations lost meanwhile (perhaps by a process that has died since) should have
removed, so on a new ``run_id`` everything is invalidated, once for all replicas
(``catalog:cache:run-id`` remembers the run the cache was last checked against).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from ember_shared.db import after_commit, pending_after_commit
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession

log = structlog.get_logger("catalog.cache")

PREFIX = "catalog:cache:"
GEN_KEY = PREFIX + "gen"
LISTS_SET = PREFIX + "keys:lists"
PAGES_SET = PREFIX + "keys:pages"
RUN_KEY = PREFIX + "run-id"
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

#: Invalidates everything unless the cache was already checked against this Redis run.
#: KEYS: run-id key, gen, then the key sets. ARGV: the server's run_id.
_RESYNC = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end
redis.call('INCR', KEYS[2])
for i = 3, #KEYS do
  local members = redis.call('SMEMBERS', KEYS[i])
  for j = 1, #members, 500 do
    redis.call('UNLINK', unpack(members, j, math.min(j + 499, #members)))
  end
  redis.call('UNLINK', KEYS[i])
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

#: What "Redis is unreachable" looks like to a client (not a refused command or a bad script).
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

#: Builds a cached answer: its JSON body and the key sets it belongs to.
Builder = Callable[[], Awaitable[tuple[bytes, Sequence[str]]]]


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
    #: Invalidations that failed (kept and replayed) and whole-cache resyncs after a restart.
    invalidations_failed: int = 0
    resyncs: int = 0


class CatalogCache:
    def __init__(self, redis: Redis, *, ttl_seconds: int, lock_ms: int) -> None:
        self.redis = redis
        self.ttl_ms = ttl_seconds * 1000
        self.lock_ms = lock_ms
        self.stats = CacheStats()
        self._inflight: dict[str, _Build] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._fill = redis.register_script(_FILL)
        self._invalidate = redis.register_script(_INVALIDATE)
        self._unlock = redis.register_script(_UNLOCK)
        self._resync = redis.register_script(_RESYNC)
        #: False from the first Redis error until the guard has put the cache right again.
        self.trusted = True
        self._lost = Invalidation()
        self._reads = BatchedReads(redis)

    @property
    def usable(self) -> bool:
        """Whether reads may use the cache now (else they go to Postgres)."""
        return self.trusted

    def unreachable(self, exc: BaseException) -> None:
        """Redis failed a call: stop trusting the cache until the guard has checked it."""
        if self.trusted:
            log.warning("cache_unreachable", error=str(exc))
        self.trusted = False

    # --- reading -----------------------------------------------------------------------

    async def _get(self, key: str) -> bytes | None:
        value = await self.redis.get(key)
        return value.encode() if isinstance(value, str) else value

    async def get(self, key: str) -> bytes | None:
        """The stored ETag + body, or None on a miss (one Redis round trip, shared with the
        other reads of this turn of the event loop: :class:`BatchedReads`)."""
        value = await self._reads.get(key)
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
            noted = running.generation
            # Join a build only if it read Postgres after this miss: one that noted an older
            # generation may hold data a commit (whose invalidation made this miss) replaced.
            if noted is None or noted == (await self._get(GEN_KEY) or b"0"):
                return await asyncio.shield(running.future)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        # Mark the outcome as retrieved even when nobody else waited for it.
        future.add_done_callback(lambda f: None if f.cancelled() else f.exception())
        build_state = _Build(future)
        self._inflight[key] = build_state
        try:
            value = await self._build_once(key, build, build_state)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
            raise
        else:
            future.set_result(value)
            return value
        finally:
            if self._inflight.get(key) is build_state:
                del self._inflight[key]

    async def _build_once(self, key: str, build: Builder, state: _Build) -> bytes:
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
                state.generation = generation or b"0"
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
                state.generation = generation or b"0"
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
        otherwise fill the cache again from the data the transaction is replacing). The
        request path waits for it before answering, the event consumer before acknowledging;
        one transaction's invalidations are merged into one Redis call."""
        what = Invalidation(set(product_ids), lists, everything)
        for hook in pending_after_commit(session):
            if isinstance(hook, _InvalidateAfterCommit) and hook.cache is self:
                hook.what.merge(what)
                return
        after_commit(session, _InvalidateAfterCommit(self, what))

    async def _invalidate_logged(self, what: Invalidation) -> None:
        task = asyncio.current_task()
        if task is not None:
            # settle() waits for it (shutdown, and tests that read right after an event).
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await self.invalidate(what)
        except Exception as exc:
            # Kept, never dropped: the guard replays it before the cache is used again.
            self.stats.invalidations_failed += 1
            self._lost.merge(what)
            self.unreachable(exc)
            log.warning("cache_invalidation_failed", error=str(exc), sets=what.sets())

    # --- surviving a Redis outage ------------------------------------------------------

    async def resync(self) -> None:
        """Replay the invalidations kept during an outage and, if Redis restarted since the
        cache was last checked, invalidate everything; then trust the cache again. Raises
        the Redis error when Redis is still away."""
        lost, self._lost = self._lost, Invalidation()
        try:
            info = await self.redis.info("server")
            run_id = str(info.get("run_id", ""))
            flushed = await self._resync(
                keys=[RUN_KEY, GEN_KEY, LISTS_SET, PAGES_SET], args=[run_id]
            )
            if lost.sets():
                await self.invalidate(lost)
        except BaseException:
            self._lost.merge(lost)
            raise
        if flushed:
            self.stats.resyncs += 1
            log.info("cache_resynced", run_id=run_id)
        if not self.trusted:
            log.info("cache_trusted_again")
        # An invalidation that failed while this pass ran waits for the next one.
        self.trusted = not self._lost.sets()

    async def guard(self, every_s: float = 1.0) -> None:
        """Check the cache against Redis every ``every_s`` (four times as often while it is
        not trusted), for ever; run it as a task and cancel it on shutdown."""
        task = asyncio.current_task()
        while True:
            try:
                await self.resync()
            except REDIS_DOWN as exc:
                self.unreachable(exc)
            except Exception as exc:  # the guard must outlive anything Redis answers
                self.unreachable(exc)
                log.exception("cache_guard_failed", error=str(exc))
            # A cancellation that lands while a Redis call times out can reach us as that
            # call's timeout error; the task still counts the request, so honour it here
            # (a swallowed one left a shutdown waiting on the guard for ever).
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            await asyncio.sleep(every_s if self.trusted else every_s / 4)

    async def settle(self) -> None:
        """Wait for invalidations started by commits elsewhere (event handlers, the sweeper)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class BatchedReads:
    """Cache reads asked in the same turn of the event loop go to Redis as one ``MGET``.

    A cached answer is mostly its Redis read, and the read is mostly the write to Redis' socket
    and the wake-up of the server on the other end (a third of a cached listing's CPU, py-spy
    and cProfile agree): under load several requests ask in the same turn, and one command
    carries them all (what ioredis and rueidis call auto-pipelining; redis-py has none). A
    read is sent no later than on the loop's next turn, after the read was asked, so it sees
    whatever a write committed before it; an error reaches every read of its batch, and each
    caller falls back as for its own failed read."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._asked: dict[str, list[asyncio.Future[bytes | None]]] = {}
        self._asked_on: asyncio.AbstractEventLoop | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def get(self, key: str) -> bytes | None:
        loop = asyncio.get_running_loop()
        if not self._asked or self._asked_on is not loop:
            # (A batch left by a loop that closed before sending it is dropped with its loop.)
            self._asked, self._asked_on = {}, loop
            # In a context of its own: a batch serves several requests and belongs to none
            # (no request's span, log fields or cancellation).
            loop.call_soon(self._send, context=contextvars.Context())
        future: asyncio.Future[bytes | None] = loop.create_future()
        self._asked.setdefault(key, []).append(future)
        return await future

    def _send(self) -> None:
        asked, self._asked = self._asked, {}
        task = asyncio.ensure_future(self._read(asked))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _read(self, asked: dict[str, list[asyncio.Future[bytes | None]]]) -> None:
        keys = list(asked)
        try:
            values = (
                await self.redis.mget(keys) if len(keys) > 1 else [await self.redis.get(keys[0])]
            )
        except asyncio.CancelledError:
            for futures in asked.values():
                for future in futures:
                    future.cancel()
            raise
        except Exception as exc:
            for futures in asked.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        for key, value in zip(keys, values, strict=True):
            found = value.encode() if isinstance(value, str) else value
            for future in asked[key]:
                if not future.done():
                    future.set_result(found)


@dataclass
class _Build:
    """A build in flight in this process, and the generation it noted before reading Postgres
    (None until it has)."""

    future: asyncio.Future[bytes]
    generation: bytes | None = None


@dataclass
class _InvalidateAfterCommit:
    """One transaction's invalidations, run by its commit (:func:`ember_shared.db.after_commit`)."""

    cache: CatalogCache
    what: Invalidation

    async def __call__(self) -> None:
        await self.cache._invalidate_logged(self.what)


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
