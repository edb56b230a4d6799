"""Commands are sent under a timeout without a Task each (ember_shared.redis_conn.TimedSend)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ember_devkit.testing.plugin import TestEnv
from ember_shared.redis_conn import redis_from_url
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError


async def tasks_made_by(run: Any) -> int:
    """How many asyncio Tasks ``run()`` makes."""
    loop = asyncio.get_running_loop()
    made = 0
    previous = loop.get_task_factory()

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        nonlocal made
        made += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(counting)
    try:
        await run()
    finally:
        loop.set_task_factory(previous)
    return made


async def test_a_command_is_sent_without_a_task_of_its_own(ember_env: TestEnv) -> None:
    ours = redis_from_url(ember_env.redis_url, socket_timeout=5.0)
    # What redis-py does on its own with a socket timeout: a Task per command (wait_for).
    plain = Redis.from_url(ember_env.redis_url, socket_timeout=5.0)
    try:
        for client in (ours, plain):
            await client.set("redis-send:probe", b"1")

        async def reads(client: Redis) -> None:
            for _ in range(20):
                assert await client.get("redis-send:probe") == b"1"

        assert await tasks_made_by(lambda: reads(plain)) >= 20
        assert await tasks_made_by(lambda: reads(ours)) == 0
    finally:
        await ours.delete("redis-send:probe")
        await ours.aclose()
        await plain.aclose()


@pytest.fixture
async def deaf_server() -> AsyncIterator[int]:
    """A server that answers the connection's greeting, then reads nothing more: a large
    command fills the socket buffers and its send cannot finish."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Small commands (the connection's greeting) are answered +OK each; the first large
        # one is where it stops reading.
        while chunk := await reader.read(65536):
            if len(chunk) > 16384:
                break
            writer.write(b"+OK\r\n" * chunk.count(b"*"))
            await writer.drain()
        await asyncio.Event().wait()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()


async def test_a_send_that_cannot_finish_in_time_times_out_and_closes_the_connection(
    deaf_server: int,
) -> None:
    client = redis_from_url(f"redis://127.0.0.1:{deaf_server}", socket_timeout=0.3)
    try:
        connection = await client.connection_pool.get_connection()
        try:
            with pytest.raises(RedisTimeoutError, match="Timeout writing to socket"):
                await connection.send_command("SET", "big", b"x" * 64_000_000)
            assert not connection.is_connected
        finally:
            await client.connection_pool.release(connection)
    finally:
        await client.aclose()
