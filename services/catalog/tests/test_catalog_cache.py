"""The read-path cache: one build for a cold key however many ask, across replicas too;
fills refused when a write lands mid-build; invalidation only after a commit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from catalog.cache import (
    GEN_KEY,
    LISTS_SET,
    REDIS_DOWN,
    CatalogCache,
    Invalidation,
    body_of,
    value_key,
)
from catalog_testkit import Kit
from ember_devkit.testing.ports import free_port
from ember_shared.db import after_commit_done
from ember_shared.settings import RedisSettings
from litestar import Litestar
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

Client = httpx.AsyncClient


@pytest.fixture
async def replicas() -> list[CatalogCache]:
    """Two caches with their own Redis connections, as two replicas of the service have."""
    clients = [Redis.from_url(RedisSettings().url) for _ in range(2)]
    # A long lock: a slow, busy machine must not make the waiters give up and build too.
    yield [CatalogCache(c, ttl_seconds=60, lock_ms=15_000) for c in clients]  # type: ignore[misc]
    for c in clients:
        await c.aclose()


async def test_a_cold_product_page_is_built_once_for_fifty_shoppers(
    client: Client, kit: Kit, cache: CatalogCache
) -> None:
    product = await kit.product()
    await cache.invalidate_everything()
    builds = cache.stats.builds
    answers = await asyncio.gather(
        *(client.get(f"/api/products/{product['slug']}") for _ in range(50))
    )
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert cache.stats.builds - builds == 1


async def test_replicas_share_one_build_of_a_cold_key(replicas: list[CatalogCache]) -> None:
    key = value_key("test", uuid.uuid4())
    calls = 0

    async def build() -> tuple[bytes, Sequence[str]]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.3)
        return b'{"n":1}', (LISTS_SET,)

    answers = await asyncio.gather(*(replicas[i % 2].get_or_build(key, build) for i in range(20)))
    assert calls == 1
    assert {body_of(a) for a in answers} == {b'{"n":1}'}
    assert await replicas[0].get(key) == answers[0]


async def test_a_fill_is_refused_when_a_write_commits_during_the_build(
    replicas: list[CatalogCache],
) -> None:
    reader, writer = replicas
    key = value_key("test", uuid.uuid4())

    async def build_then_write_lands() -> tuple[bytes, Sequence[str]]:
        # The reader has read the old data; now a writer commits and invalidates.
        await writer.invalidate(Invalidation(lists=True))
        return b'{"price":100}', (LISTS_SET,)

    refused = reader.stats.fills_refused
    value = await reader.get_or_build(key, build_then_write_lands)
    assert body_of(value) == b'{"price":100}'  # this request still gets an answer...
    assert await reader.get(key) is None  # ...but nobody else will be served it from Redis
    assert reader.stats.fills_refused == refused + 1


async def test_a_miss_after_a_write_does_not_join_a_build_that_read_before_it(
    replicas: list[CatalogCache],
) -> None:
    """A shopper reloading right after an admin's edit got the old price: the miss (the edit's
    invalidation emptied the key) joined a build still in flight from before the commit."""
    reader, writer = replicas
    key = value_key("test", uuid.uuid4())
    old_data_read, write_landed = asyncio.Event(), asyncio.Event()

    async def build_from_before_the_write() -> tuple[bytes, Sequence[str]]:
        old_data_read.set()
        await write_landed.wait()
        return b'{"price":100}', (LISTS_SET,)

    async def build_after_the_write() -> tuple[bytes, Sequence[str]]:
        return b'{"price":200}', (LISTS_SET,)

    first = asyncio.create_task(reader.get_or_build(key, build_from_before_the_write))
    await old_data_read.wait()
    await writer.invalidate(Invalidation(lists=True))  # the edit commits, then invalidates
    second = asyncio.create_task(reader.get_or_build(key, build_after_the_write))
    # Lets the second request miss and find the first build in flight (ordering only: were
    # it too short, the second would find nothing in flight and the test could not fail).
    await asyncio.sleep(0.2)
    write_landed.set()
    assert body_of(await asyncio.wait_for(second, timeout=30)) == b'{"price":200}'
    assert body_of(await first) == b'{"price":100}'
    assert body_of(await reader.get(key) or b"") == b'{"price":200}'


async def test_waiters_build_themselves_when_the_lock_holder_is_gone(
    replicas: list[CatalogCache],
) -> None:
    cache = CatalogCache(replicas[0].redis, ttl_seconds=60, lock_ms=200)
    key = value_key("test", uuid.uuid4())
    await cache.redis.set(key + ":lock", "crashed-replica", px=60_000)

    async def build() -> tuple[bytes, Sequence[str]]:
        return b"{}", ()

    value = await asyncio.wait_for(cache.get_or_build(key, build), timeout=5)
    assert body_of(value) == b"{}"


async def test_invalidation_waits_for_the_commit(
    catalog_app: Litestar, replicas: list[CatalogCache]
) -> None:
    cache: CatalogCache = catalog_app.state.catalog_cache
    key = value_key("test", uuid.uuid4())

    async def build() -> tuple[bytes, Sequence[str]]:
        return b"{}", (LISTS_SET,)

    await cache.get_or_build(key, build)
    session: AsyncSession
    async with catalog_app.state.catalog_sessions() as session:
        await session.begin()
        cache.invalidate_on_commit(session, lists=True)
        await session.rollback()
    await cache.settle()
    assert await cache.get(key) is not None  # rolled back: nothing is stale

    generation = await cache.redis.get(GEN_KEY)
    async with catalog_app.state.catalog_sessions() as session:
        await session.begin()
        cache.invalidate_on_commit(session, lists=True)
        assert await cache.get(key) is not None  # not before the commit
        await session.commit()
        await after_commit_done(session)
    assert await cache.get(key) is None
    assert await cache.redis.get(GEN_KEY) != generation


async def test_the_bypass_header_is_honoured_only_in_local_mode(
    client: Client, kit: Kit, catalog_app: Litestar
) -> None:
    product = await kit.product()
    url = f"/api/products/{product['slug']}"
    await client.get(url)
    assert (await client.get(url)).headers["x-cache"] == "hit"
    assert (await client.get(url, headers={"X-Cache-Bypass": "1"})).headers["x-cache"] == "miss"
    catalog_app.state.catalog_bypass_allowed = False
    try:
        assert (await client.get(url, headers={"X-Cache-Bypass": "1"})).headers["x-cache"] == "hit"
    finally:
        catalog_app.state.catalog_bypass_allowed = True


async def test_listings_cached_after_an_invalidation_are_current(
    client: Client, kit: Kit, cache: CatalogCache
) -> None:
    category = await kit.category()
    await kit.product(category_id=category["id"])
    url = f"/api/products?category={category['slug']}"
    assert (await client.get(url)).json()["total"] == 1
    await kit.product(category_id=category["id"])
    fresh = await client.get(url)
    assert fresh.json()["total"] == 2
    assert fresh.headers["x-cache"] == "miss"
    assert (await client.get(url)).headers["x-cache"] == "hit"


async def test_pages_past_the_last_and_empty_searches_are_not_kept(
    client: Client, kit: Kit
) -> None:
    category = await kit.category()
    await kit.product(category_id=category["id"])
    past = f"/api/products?category={category['slug']}&page=7"
    assert (await client.get(past)).json()["items"] == []
    assert (await client.get(past)).headers["x-cache"] == "miss"
    junk = "/api/products/search?q=" + uuid.uuid4().hex
    assert (await client.get(junk)).json()["items"] == []
    assert (await client.get(junk)).headers["x-cache"] == "miss"
    first = f"/api/products?category={category['slug']}"
    await client.get(first)
    assert (await client.get(first)).headers["x-cache"] == "hit"


class SentCommands(Redis):
    """A client that notes the name and arguments of every command it sends."""

    sent: list[tuple[Any, ...]]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent.append(args)
        return await super().execute_command(*args, **options)


@pytest.fixture
async def counted() -> AsyncIterator[tuple[CatalogCache, SentCommands]]:
    client = SentCommands.from_url(RedisSettings().url)
    client.sent = []
    yield CatalogCache(client, ttl_seconds=60, lock_ms=1_000), client
    await client.aclose()


async def test_reads_asked_together_reach_redis_as_one_command(
    counted: tuple[CatalogCache, SentCommands],
) -> None:
    cache, client = counted
    stored = {value_key("test", uuid.uuid4()): f"value {i}".encode() for i in range(3)}
    for key, value in stored.items():
        await client.set(key, value, px=60_000)
    missing = value_key("test", uuid.uuid4())
    keys = [*stored, missing, next(iter(stored))]
    client.sent.clear()

    answers = await asyncio.gather(*(cache.get(key) for key in keys))

    assert answers == [*stored.values(), None, next(iter(stored.values()))]
    assert client.sent == [("MGET", *stored, missing)]
    # A read alone is a plain GET, with nothing to wait for.
    client.sent.clear()
    assert await cache.get(missing) is None
    assert client.sent == [("GET", missing)]


async def test_a_read_given_up_leaves_the_others_of_its_batch_their_answers(
    counted: tuple[CatalogCache, SentCommands],
) -> None:
    cache, client = counted
    key = value_key("test", uuid.uuid4())
    await client.set(key, b"kept", px=60_000)
    client.sent.clear()
    reads = [asyncio.ensure_future(cache.get(key)) for _ in range(3)]
    await asyncio.sleep(0)  # each read has asked
    reads[0].cancel()  # its shopper went away before Redis answered
    answers = await asyncio.gather(*reads, return_exceptions=True)
    assert isinstance(answers[0], asyncio.CancelledError)
    assert answers[1:] == [b"kept", b"kept"]
    assert client.sent == [("GET", key)]


async def test_every_read_of_a_batch_hears_that_redis_is_down() -> None:
    client = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    cache = CatalogCache(client, ttl_seconds=60, lock_ms=1_000)
    try:
        answers = await asyncio.gather(
            *(cache.get(value_key("test", i)) for i in range(4)), return_exceptions=True
        )
    finally:
        await client.aclose()
    assert all(isinstance(answer, REDIS_DOWN) for answer in answers), answers
