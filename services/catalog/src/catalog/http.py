"""Answering a shopper read from the cache: the stored bytes go out as they are, with an ETag."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ember_shared.tracing import note
from litestar import Request, Response
from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.cache import (
    REDIS_DOWN,
    CatalogCache,
    body_of,
    cache_headers,
    etag_of,
    with_etag,
)
from catalog.settings import CatalogSettings

#: The request span's attribute saying how the cache answered: hit, miss (built from
#: Postgres and stored), bypass (the benchmark's header), unusable (not trusted since a Redis
#: outage) or unreachable (Redis failed this read).
CACHE_OUTCOME = "ember.cache.outcome"

#: Honoured only when EMBER_MODE=local: the benchmark's way to measure the uncached path.
BYPASS_HEADER = "x-cache-bypass"

Build = Callable[[AsyncSession], Awaitable[tuple[bytes, Sequence[str]]]]


async def cached_json(
    request: Request[Any, Any, State],
    key: str,
    build: Build,
    sessions: Callable[[], AsyncSession] | None = None,
) -> Response[Any]:
    """``sessions``: where a miss reads (the read path's autocommit sessions unless given)."""
    state = request.app.state
    cache: CatalogCache = state.catalog_cache
    open_session = sessions or state.db_reads

    async def run() -> tuple[bytes, Sequence[str]]:
        # A session only on a miss: a cache hit touches Redis and nothing else.
        async with open_session() as session:
            return await build(session)

    hit = False
    if state.catalog_bypass_allowed and request.headers.get(BYPASS_HEADER) == "1":
        outcome = "bypass"
        body, _ = await run()
        value = with_etag(body)
    elif not cache.usable:
        # Redis is away or not yet checked after an outage: Postgres answers (it is the truth).
        outcome = "unusable"
        body, _ = await run()
        value = with_etag(body)
    else:
        try:
            # The lookup is an attribute of the request's span, not a Redis span of its own
            # (the read is sent with others, outside any request: BatchedReads): a sampled
            # cached answer is one span (a miss still shows the build's SQL and Redis calls).
            cached = await cache.get(key)
            if cached is not None:
                outcome, value, hit = "hit", cached, True
            else:
                outcome = "miss"
                value = await cache.get_or_build(key, run)
        except REDIS_DOWN as exc:
            outcome = "unreachable"
            cache.unreachable(exc)
            body, _ = await run()
            value = with_etag(body)
    note(CACHE_OUTCOME, outcome)
    headers = cache_headers(value, hit)
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and etag_of(value) in if_none_match:
        return Response(content=b"", status_code=304, headers=headers)
    return Response(content=body_of(value), media_type="application/json", headers=headers)


def catalog_settings_of(request: Request[Any, Any, State]) -> CatalogSettings:
    settings: CatalogSettings = request.app.state.catalog_settings
    return settings
