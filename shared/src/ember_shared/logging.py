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
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog

from ember_shared.ids import new_id

REQUEST_ID_HEADER = "x-request-id"
CORRELATION_ID_HEADER = "x-correlation-id"

correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)
#: The request id and correlation id of the request in hand (set by
#: :class:`ember_shared.request_layer.ServiceRequests`), added to each log line as it is written
#: (:func:`add_request_ids`): a request that logs nothing pays one variable, not the binding and
#: unbinding of two of structlog's context variables.
request_ids_var: ContextVar[tuple[str, str] | None] = ContextVar("request_ids", default=None)


def current_correlation_id() -> str:
    """The correlation id of the work in hand, or a new one for work that starts here."""
    value = correlation_id_var.get()
    if value is None:
        value = str(new_id())
        correlation_id_var.set(value)
    return value


def add_request_ids(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The request's ids on a log line (what is bound explicitly wins)."""
    ids = request_ids_var.get()
    if ids is not None:
        event_dict.setdefault("request_id", ids[0])
        event_dict.setdefault("correlation_id", ids[1])
    return event_dict


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_request_ids,
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


def id_or_none(raw: bytes | None) -> str | None:
    value = (raw or b"").decode("latin-1")
    return value if _ID.fullmatch(value) else None
