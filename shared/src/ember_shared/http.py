"""Calling another service directly: its internal URL, the service credential, the correlation id.

    async with service_client("catalog") as catalog:
        response = await catalog.post("/internal/catalog/products/lookup", json={...})

Every request carries ``X-Service-Token`` and the current ``X-Correlation-ID``, so the callee's
logs join the caller's. Timeouts are short: a caller that needs an answer now must not hang.
"""

from __future__ import annotations

import httpx

from ember_shared.auth import SERVICE_TOKEN_HEADER
from ember_shared.logging import CORRELATION_ID_HEADER, current_correlation_id
from ember_shared.settings import AuthSettings, service_url

DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=2.0)

#: How long a caller keeps an idle connection to another service for its next request.
CLIENT_KEEPALIVE_S = 5.0
#: How long every server of ours (uvicorn's ``--timeout-keep-alive``: the devstack, the
#: Dockerfile, the test harness) keeps an idle connection: far longer than its callers do, so
#: the caller always closes first. A server closing one just as a caller reuses it fails a
#: request that did nothing wrong (httpx's RemoteProtocolError, a 503 to the shopper).
SERVER_KEEP_ALIVE_S = 150


async def _add_correlation_id(request: httpx.Request) -> None:
    request.headers[CORRELATION_ID_HEADER] = current_correlation_id()


def service_client(
    service: str,
    *,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    retries: int = 1,
) -> httpx.AsyncClient:
    """An HTTP client for ``service``'s internal routes (connection errors retried ``retries`` times)."""
    return httpx.AsyncClient(
        base_url=service_url(service),
        headers={SERVICE_TOKEN_HEADER: AuthSettings().service_token},
        timeout=timeout,
        transport=httpx.AsyncHTTPTransport(
            retries=retries,
            limits=httpx.Limits(
                max_connections=100,
                max_keepalive_connections=20,
                keepalive_expiry=CLIENT_KEEPALIVE_S,
            ),
        ),
        event_hooks={"request": [_add_correlation_id]},
    )
