"""Handing one mail to Resend through its SDK, and sorting the answer into what to do next.

This is the only module of Ember that imports ``resend`` (invariant 8: mail leaves only through
the notifier worker). The SDK takes its key and base URL from module globals; the worker sets
them from :class:`~notifier.settings.NotifierSettings` (the local stand-in when no key is set).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import resend
from ember_shared.http import CLIENT_KEEPALIVE_S, ServiceClient, ServiceTransport
from resend.exceptions import ResendError
from resend.http_client_async import AsyncHTTPClient

from notifier.settings import NotifierSettings

#: Resend's 4xx answers that a later try could get past: a busy idempotency key, rate limits,
#: and our own credentials (an operator fixes the key; the mail should not die meanwhile).
RETRYABLE_4XX = frozenset({401, 403, 408, 425, 429})
#: 409 names two different things at Resend: only a concurrent use of the key is worth waiting for.
RETRYABLE_409_TYPES = frozenset({"concurrent_idempotent_requests"})


class Mail(Protocol):
    """What a send reads of a mail (a claimed one, or a ``PendingEmail``)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def idempotency_key(self) -> str: ...
    @property
    def template(self) -> str: ...
    @property
    def to_email(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def html(self) -> str: ...
    @property
    def text(self) -> str: ...


@dataclass(frozen=True)
class SendResult:
    ok: bool
    message_id: str | None = None
    status_code: int | None = None
    error: str | None = None
    retryable: bool = False
    #: Seconds the provider asked us to wait (``Retry-After``), if it said.
    retry_after_s: float | None = None
    duration_ms: int = 0


@functools.cache
def _verified() -> ssl.SSLContext:
    """How Resend's certificate is checked: httpx's context (certifi's CAs), as its own
    transport checked it; made once per process (the CA bundle read and parsed: 40-80 ms)."""
    return httpx.create_ssl_context()


class KeptHTTPXClient(AsyncHTTPClient):
    """The SDK's transport, with one httpx client kept for every send.

    The SDK's own ``HTTPXClient`` opens a new client per mail: a new TLS context (the CA bundle
    read and parsed, 40-80 ms of the worker's CPU on a busy machine) and a new connection each
    time, which held every confirmation back by that much. The client belongs to the event loop
    it was made on (its pooled connections do), so another loop gets one of its own.

    It is ``ember_shared.http``'s :class:`ServiceClient` on a :class:`ServiceTransport`: httpx's
    client (its errors, and OpenTelemetry's httpx instrumentation) on aiohttp's connections,
    without a cookie jar (Resend's API sets none) and without parsing the same URL again for
    every mail. httpx on httpcore (anyio, h11) was ~40 % of the worker's CPU per mail
    (bench/notes/notifier-cpu.md).
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _current(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._client.is_closed:
            self._client = ServiceClient(
                timeout=self._timeout,
                # As httpx's own transport: no retry of a failed connect (the worker retries
                # the mail), idle connections kept 5 s.
                transport=ServiceTransport(
                    retries=0, keepalive_expiry=CLIENT_KEEPALIVE_S, verify=_verified()
                ),
            )
            self._loop = loop
        return self._client

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        json: dict[str, object] | list[object] | None = None,
        files: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        client = self._current()
        try:
            if files is not None:
                response = await client.request(
                    method, url, headers=headers, files=files, data=data
                )
            else:
                response = await client.request(
                    method, url, headers=headers, json=json if data is None else None, data=data
                )
        except httpx.RequestError as exc:
            # As the SDK's own client: its caller turns this into ResendError("HttpClientError").
            raise RuntimeError(f"Request failed: {exc}") from exc
        return response.content, response.status_code, response.headers

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()


def configure_resend(settings: NotifierSettings) -> KeptHTTPXClient:
    resend.api_key = settings.resend_api_key
    resend.api_url = settings.resend_api_url
    transport = KeptHTTPXClient(timeout=settings.send_timeout_s)
    resend.default_async_http_client = transport
    return transport


def classify(error: ResendError) -> tuple[int | None, bool]:
    """The HTTP status (None when no answer came) and whether trying again may succeed."""
    if error.error_type == "HttpClientError":
        return None, True  # no answer: connection refused, timeout, DNS
    try:
        code = int(error.code)
    except (TypeError, ValueError):
        return None, True
    if code >= 500:
        return code, True
    if code == 409:
        return code, error.error_type in RETRYABLE_409_TYPES
    return code, code in RETRYABLE_4XX


def _retry_after(headers: dict[str, str]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


def send_params(email: Mail, settings: NotifierSettings) -> dict[str, Any]:
    params: dict[str, Any] = {
        "from": settings.from_email,
        "to": [email.to_email],
        "subject": email.subject,
        "html": email.html,
        "text": email.text,
        "tags": [{"name": "template", "value": email.template}],
        "headers": {"X-Entity-Ref-ID": str(email.id)},
    }
    if settings.reply_to:
        params["reply_to"] = settings.reply_to
    return params


class ResendSender:
    def __init__(self, settings: NotifierSettings) -> None:
        self.settings = settings
        self.transport = configure_resend(settings)

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def send(self, email: Mail) -> SendResult:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.send_timeout_s + 5):
                response = await resend.Emails.send_async(
                    send_params(email, self.settings),  # type: ignore[arg-type]
                    # Resend keeps the key for 24 hours: a retry after a lost answer, or by a
                    # second worker after a lapsed claim, cannot deliver the mail twice.
                    options={"idempotency_key": email.idempotency_key},
                )
        except ResendError as exc:
            code, retryable = classify(exc)
            return SendResult(
                ok=False,
                status_code=code,
                error=f"{exc.error_type}: {exc.message}"[:2000],
                retryable=retryable,
                retry_after_s=_retry_after(exc.headers),
                duration_ms=_ms_since(started),
            )
        except (TimeoutError, OSError) as exc:
            return SendResult(
                ok=False,
                error=f"{type(exc).__name__}: {exc}"[:2000],
                retryable=True,
                duration_ms=_ms_since(started),
            )
        message_id = str(response.get("id") or "") or None
        if message_id is None:
            return SendResult(
                ok=False,
                status_code=200,
                error="Resend answered without an email id.",
                retryable=True,
                duration_ms=_ms_since(started),
            )
        return SendResult(
            ok=True, message_id=message_id, status_code=200, duration_ms=_ms_since(started)
        )


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
