"""Every Redis client of a service is built here, so each one survives a Redis restart.

``Redis.from_url`` builds its connections with no retry at all (the client's default ``retry``
is not handed to a pool made from a URL): after a restart every pooled connection is dead and
fails the one request that picks it. Here a failed command on a dead connection reconnects and
runs again (a few quick, jittered tries, so a real outage still fails fast and the caller's
fallback takes over), and a connection idle for a while is pinged before it is used.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

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


def redis_from_url(
    url: str,
    *,
    socket_connect_timeout: float = 2.0,
    socket_timeout: float | None = 5.0,
    **kwargs: Any,
) -> Redis:
    """A client whose commands reconnect and retry on a dead connection (see the module)."""
    return Redis.from_url(
        url,
        retry=redis_retry(),
        retry_on_error=[RedisConnectionError],
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        socket_connect_timeout=socket_connect_timeout,
        socket_timeout=socket_timeout,
        **kwargs,
    )
