"""A throwaway service ("evtest") for the event backbone's tests: its schema, events, helpers."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from ember_devkit.testing.waiting import eventually_async as eventually
from ember_shared.db import service_base
from ember_shared.events import EventData
from ember_shared.events.relay import OutboxRelay
from ember_shared.settings import (
    AppSettings,
    AuthSettings,
    DatabaseSettings,
    EventSettings,
    RedisSettings,
    ServiceSettings,
)
from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

SCHEMA = "evtest"
Base = service_base(SCHEMA)


class Effect(Base):
    """What a test handler did: one row per run, so a second run shows up as a second row."""

    __tablename__ = "effects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID]
    handler: Mapped[str] = mapped_column(String(200))
    n: Mapped[int]
    correlation_id: Mapped[str] = mapped_column(String(100), default="")
    log_correlation_id: Mapped[str] = mapped_column(String(100), default="")


class Ping(EventData, frozen=True, kw_only=True):
    TYPE = "evtest.ping.v1"
    n: int
    note: str = ""


class Pong(EventData, frozen=True, kw_only=True):
    TYPE = "evtest.pong.v1"
    n: int


FAST_EVENTS = {
    "relay_interval_ms": 20,
    "relay_listening_interval_ms": 20,
    "relay_batch": 50,
    "relay_max_backoff_ms": 200,
    "reclaim_idle_ms": 300,
    "reclaim_interval_ms": 50,
    "max_deliveries": 3,
    "read_batch": 10,
    "shutdown_grace_ms": 300,
    "stream_maxlen": 10_000,
}


def make_settings(
    database_url: str, redis_url: str, name: str = SCHEMA, **events: Any
) -> ServiceSettings:
    return ServiceSettings(
        app=AppSettings(name=name, log_format="console"),
        db=DatabaseSettings(url=database_url, pool_size=5, max_overflow=5),
        redis=RedisSettings(url=redis_url),
        auth=AuthSettings(),
        events=EventSettings(**{**FAST_EVENTS, **events}),
    )


async def relay_passes(relay: OutboxRelay, count: int = 2) -> None:
    """Return once ``relay`` has finished ``count`` more successful passes: what a pass would
    have sent again (a duplicate) has then been sent."""
    seen: list[float | None] = [relay.stats.last_success_at]

    async def passed() -> bool:
        if relay.stats.last_success_at != seen[-1]:
            seen.append(relay.stats.last_success_at)
        return len(seen) > count

    await eventually(passed, f"{count} more relay passes", every=0.005)


@dataclass
class TcpProxy:
    """A TCP front for a server (TCP or Unix socket) that a test can take down and bring back.

    While down it still accepts connections and drops them at once (counted in ``refused``),
    so a client sees the outage the way it sees a server that went away.
    """

    target_host: str | None = None
    target_port: int | None = None
    target_path: str | None = None
    port: int = 0
    up: bool = True
    refused: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        await self.go_down()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def go_down(self) -> None:
        self.up = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def come_back(self) -> None:
        self.up = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            if self.target_path:
                up_reader, up_writer = await asyncio.open_unix_connection(self.target_path)
            else:
                assert self.target_host
                assert self.target_port
                up_reader, up_writer = await asyncio.open_connection(
                    self.target_host, self.target_port
                )
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, up_writer})

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            except (OSError, RuntimeError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)


def postgres_proxy(database_url: str) -> tuple[TcpProxy, Callable[[int], str]]:
    """A proxy for the Postgres in ``database_url`` and how to build the URL that goes through it."""
    parts = urlsplit(database_url)
    query = parse_qs(parts.query)
    socket_dir = (query.get("host") or [""])[0]
    port = parts.port or 5432
    if socket_dir.startswith("/"):
        proxy = TcpProxy(target_path=f"{socket_dir}/.s.PGSQL.{port}")
    else:
        proxy = TcpProxy(target_host=parts.hostname or "127.0.0.1", target_port=port)
    user = parts.username or "postgres"
    password = f":{parts.password}" if parts.password else ""

    def url(proxy_port: int) -> str:
        netloc = f"{user}{password}@127.0.0.1:{proxy_port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    return proxy, url
