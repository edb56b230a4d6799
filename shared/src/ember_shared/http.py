"""Calling another service directly: its internal URL, the service credential, the correlation id.

    async with service_client("catalog") as catalog:
        response = await catalog.post("/internal/catalog/products/lookup", json={...})

Every request carries ``X-Service-Token`` and the current ``X-Correlation-ID``, so the callee's
logs join the caller's. Timeouts are short: a caller that needs an answer now must not hang.

The client is httpx's (its requests, responses, errors, event hooks and OpenTelemetry's httpx
instrumentation, which wraps ``AsyncHTTPTransport``: every caller keeps all of them), but its
connections are aiohttp's (:class:`AiohttpPool`): httpcore on anyio cost ~0.25 ms more CPU per
call than aiohttp for the same request (bench/notes/request-runtime.md), and a paid order makes
several of these calls.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpcore
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
MAX_CONNECTIONS = 100
#: httpcore's: a failed connect is tried again at once, then after 0.5 s, 1 s, ...
RETRY_BACKOFF_S = 0.5


async def _add_correlation_id(request: httpx.Request) -> None:
    request.headers[CORRELATION_ID_HEADER] = current_correlation_id()


def _backoff() -> Iterator[float]:
    yield 0.0
    for n in itertools.count():
        yield RETRY_BACKOFF_S * 2**n


class AiohttpPool:
    """What ``httpx.AsyncHTTPTransport`` asks of its httpcore pool (``handle_async_request``
    on an ``httpcore.Request``, ``aclose``), done by one aiohttp session: its errors raised as
    httpcore's, so httpx maps them to the same ``httpx`` errors as before, and connection
    failures retried ``retries`` times as httpcore retried them. The session is made on the
    first request (it belongs to the running event loop)."""

    def __init__(
        self,
        *,
        retries: int,
        keepalive_expiry: float,
        max_connections: int,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.retries = retries
        self.keepalive_expiry = keepalive_expiry
        self.max_connections = max_connections
        #: How an https peer is verified (aiohttp's ``ssl``): True, the system's CAs.
        self.verify = verify
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[Any, ...], aiohttp.ClientTimeout] = {}

    def _current(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self.max_connections,
                    keepalive_timeout=self.keepalive_expiry,
                    ssl=self.verify,
                ),
                # httpx decodes the body as the headers say, and sets every header itself.
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    def _timeout(self, given: dict[str, float | None]) -> aiohttp.ClientTimeout:
        key = (given.get("connect"), given.get("read"), given.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            connect, read, pool = key
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None,
                # Waiting for a free connection and making one (httpcore's pool and connect).
                connect=None if pool is None or connect is None else pool + connect,
                sock_connect=connect,
                sock_read=read,
            )
        return timeout

    def idle_connections(self) -> int:
        """Connections kept open for the next request (what a test of keep-alive looks at)."""
        if self._session is None:
            return 0
        connector: Any = self._session.connector
        return sum(len(idle) for idle in connector._conns.values())

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        url = request.url
        target = (
            f"{url.scheme.decode('ascii')}://{url.host.decode('ascii')}:{url.port}"
            f"{url.target.decode('ascii')}"
        )
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers]
        body = b"".join([part async for part in request.stream])  # type: ignore[union-attr]
        timeout = self._timeout(request.extensions.get("timeout", {}))
        delays = _backoff()
        retries_left = self.retries
        while True:
            try:
                return await self._send(request.method, target, headers, body, limits=timeout)
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                if retries_left <= 0:
                    raise
                retries_left -= 1
                await asyncio.sleep(next(delays))

    async def _send(
        self,
        method: bytes,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        limits: aiohttp.ClientTimeout,
    ) -> httpcore.Response:
        try:
            async with self._current().request(
                method.decode("ascii"),
                target,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=limits,
            ) as response:
                content = await response.read()
                return httpcore.Response(
                    response.status,
                    headers=list(response.raw_headers),
                    content=content,
                    extensions={
                        "http_version": b"HTTP/1.1",
                        "reason_phrase": (response.reason or "").encode("latin-1"),
                    },
                )
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise httpcore.RemoteProtocolError(
                "Server disconnected without sending a response."
            ) from exc
        except (TimeoutError, aiohttp.SocketTimeoutError) as exc:
            raise httpcore.ReadTimeout(str(exc) or "timed out") from exc
        except aiohttp.ClientPayloadError as exc:
            raise httpcore.RemoteProtocolError(str(exc)) from exc
        except aiohttp.ClientResponseError as exc:
            raise httpcore.RemoteProtocolError(str(exc)) from exc
        except aiohttp.ClientOSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> AiohttpPool:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


class ServiceTransport(httpx.AsyncHTTPTransport):
    """httpx's transport (its conversion of requests, responses and errors, and so its
    OpenTelemetry instrumentation) on an :class:`AiohttpPool`."""

    def __init__(
        self,
        *,
        retries: int,
        keepalive_expiry: float,
        max_connections: int = MAX_CONNECTIONS,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        # Not the parent's: it would build an httpcore pool and an SSL context for nothing.
        self._pool: Any = AiohttpPool(
            retries=retries,
            keepalive_expiry=keepalive_expiry,
            max_connections=max_connections,
            verify=verify,
        )


#: Paths a client remembers merged with its base URL (ids in a path make the set unbounded:
#: past this it starts again).
MERGED_URLS = 256


class NoCookies(httpx.Cookies):
    """A jar that keeps nothing: services answer each other no cookies, and one kept in a
    client shared by every request would go out again on behalf of every shopper."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class ServiceClient(httpx.AsyncClient):
    """httpx's client without the per-call work these calls never need: the cookie jar's
    extraction from every answer (urllib's request adapters), and the parse and merge of the
    same path with the base URL on every call (both ~a quarter of httpx's own CPU per call)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cookies = NoCookies()
        self._merged: dict[str, httpx.URL] = {}
        self._merged_base = self._base_url

    def _merge_url(self, url: httpx.URL | str) -> httpx.URL:
        if not isinstance(url, str):
            return super()._merge_url(url)
        if self._merged_base is not self._base_url or len(self._merged) >= MERGED_URLS:
            # A new base URL (tests and the cart set one), or too many ids seen.
            self._merged.clear()
            self._merged_base = self._base_url
        merged = self._merged.get(url)
        if merged is None:
            merged = self._merged[url] = super()._merge_url(url)
        return merged


def service_client(
    service: str,
    *,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    retries: int = 1,
) -> httpx.AsyncClient:
    """An HTTP client for ``service``'s internal routes (connection errors retried ``retries`` times)."""
    return ServiceClient(
        base_url=service_url(service),
        headers={SERVICE_TOKEN_HEADER: AuthSettings().service_token},
        timeout=timeout,
        transport=ServiceTransport(retries=retries, keepalive_expiry=CLIENT_KEEPALIVE_S),
        event_hooks={"request": [_add_correlation_id]},
    )
