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
        transport=httpx.AsyncHTTPTransport(retries=retries),
        event_hooks={"request": [_add_correlation_id]},
    )
