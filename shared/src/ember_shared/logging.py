"""structlog JSON logs carrying the request id and the correlation id.

The request id names one HTTP request (Caddy's ``X-Request-ID`` or a new one). The correlation
id follows one shopper action across services: it arrives in ``X-Correlation-ID``, is sent on
every outgoing HTTP call and stored in every event envelope, and is bound again by the consumer
that handles the event. Request bodies and cookies are never logged (they hold tokens).
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ember_shared.ids import new_id

REQUEST_ID_HEADER = "x-request-id"
CORRELATION_ID_HEADER = "x-correlation-id"

correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def current_correlation_id() -> str:
    """The correlation id of the work in hand, or a new one for work that starts here."""
    value = correlation_id_var.get()
    if value is None:
        value = str(new_id())
        correlation_id_var.set(value)
    return value


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stdout,
        format=f"%(levelname)s {service} %(name)s %(message)s",
    )
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


#: What a client-given id may look like (a UUID, a ULID, Caddy's request ids): anything else is
#: replaced, so no one writes markup, spaces or megabytes into our logs and events.
_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _id_or_none(raw: bytes | None) -> str | None:
    value = (raw or b"").decode("latin-1")
    return value if _ID.fullmatch(value) else None


class RequestContextMiddleware:
    """Binds the request and correlation ids to the log context and echoes them back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = _id_or_none(headers.get(REQUEST_ID_HEADER.encode())) or str(new_id())
        correlation_id = _id_or_none(headers.get(CORRELATION_ID_HEADER.encode())) or request_id
        scope.setdefault("state", {})["request_id"] = request_id
        token = correlation_id_var.set(correlation_id)
        structlog.contextvars.bind_contextvars(request_id=request_id, correlation_id=correlation_id)

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (REQUEST_ID_HEADER.encode(), request_id.encode("latin-1")),
                    (CORRELATION_ID_HEADER.encode(), correlation_id.encode("latin-1")),
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_ids)
        finally:
            structlog.contextvars.unbind_contextvars("request_id", "correlation_id")
            correlation_id_var.reset(token)
