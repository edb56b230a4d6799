"""Every Redis client of a service is built here, so each one survives a Redis restart.

``Redis.from_url`` builds its connections with no retry at all (the client's default ``retry``
is not handed to a pool made from a URL): after a restart every pooled connection is dead and
fails the one request that picks it. Here a failed command on a dead connection reconnects and
runs again (a few quick, jittered tries, so a real outage still fails fast and the caller's
fallback takes over), and a connection idle for a while is pinged before it is used.

Each command is sent under ``asyncio.timeout`` (:class:`TimedSend`): redis-py sends through
``asyncio.wait_for`` whenever the client has a socket timeout, a Task and a timer for every
command, ~5 % of a cached catalog answer's CPU (bench/README.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: Tries after the first: enough to get past every stale connection of a restart (each retry
#: reconnects), few enough that a request during an outage gives up in well under a second.
RETRIES = 3
BACKOFF_BASE_S = 0.02
BACKOFF_CAP_S = 0.25
HEALTH_CHECK_INTERVAL_S = 10


def redis_retry(retries: int = RETRIES) -> Retry:
    # Connection errors only: a command that timed out may have run, and sending an INCR, an
    # XADD or a dead letter again would count or append it twice.
    return Retry(
        ExponentialWithJitterBackoff(base=BACKOFF_BASE_S, cap=BACKOFF_CAP_S),
        retries,
        supported_errors=(RedisConnectionError,),
    )


class TimedSend(AbstractConnection):
    """A connection that sends a command under ``asyncio.timeout`` instead of ``wait_for``;
    the same errors as redis-py's own ``send_packed_command`` (a timeout or a socket error
    closes the connection and raises redis' ``TimeoutError`` / ``ConnectionError``)."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        if not self.socket_timeout:
            await super().send_packed_command(command, check_health)
            return
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()  # type: ignore[no-untyped-call]
        writer = self._writer
        assert writer is not None, "connected above"
        try:
            if isinstance(command, str):
                command = command.encode()
            if isinstance(command, bytes):
                command = [command]
            async with asyncio.timeout(self.socket_timeout):
                writer.writelines(command)
                await writer.drain()
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            err_no, message = ("UNKNOWN", exc.args[0]) if len(exc.args) == 1 else exc.args[:2]
            raise RedisConnectionError(
                f"Error {err_no} while writing to socket. {message}."
            ) from exc
        except BaseException:
            # A send cut short leaves part of a command on the wire: the connection is unusable.
            await self.disconnect(nowait=True)
            raise


def timed_send(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """``connection_class`` (TCP, TLS or Unix socket, as the URL says) with :class:`TimedSend`."""
    if issubclass(connection_class, TimedSend):
        return connection_class
    return type(connection_class.__name__, (TimedSend, connection_class), {})


def redis_from_url(
    url: str,
    *,
    socket_connect_timeout: float = 2.0,
    socket_timeout: float | None = 5.0,
    **kwargs: Any,
) -> Redis:
    """A client whose commands reconnect and retry on a dead connection (see the module)."""
    client = Redis.from_url(
        url,
        retry=redis_retry(),
        retry_on_error=[RedisConnectionError],
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        socket_connect_timeout=socket_connect_timeout,
        socket_timeout=socket_timeout,
        **kwargs,
    )
    pool = client.connection_pool
    pool.connection_class = timed_send(pool.connection_class)
    return client
