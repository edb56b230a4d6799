"""What every request of every service goes through once, in one layer (issue 12).

Request and correlation ids (:mod:`ember_shared.logging`), the request metrics
(:mod:`ember_shared.metrics`) and ``Cache-Control: no-store`` by default were three middlewares,
each with its own ``send`` wrapper, and the metrics were Litestar's Prometheus middleware, which
built a ``Request``, a label dict and four label lookups (each a tuple, a lock and a dict) per
request. Here the headers are read in one pass, a route's metric series are looked up once per
route, method and status and kept, and one ``send`` wrapper adds the headers, notes the status
and times the answer. Together with the cheaper authentication header scan
(:mod:`ember_shared.auth`) a trivial route's server CPU fell by about a third
(bench/notes/request-runtime.md).
"""

from __future__ import annotations

import re
import time
from typing import Any

from litestar.types import ASGIApp, Receive, Send

from ember_shared.ids import new_id
from ember_shared.logging import (
    CORRELATION_ID_HEADER,
    REQUEST_ID_HEADER,
    correlation_id_var,
    id_or_none,
    request_ids_var,
)
from ember_shared.metrics import RequestMetrics

_REQUEST_ID = REQUEST_ID_HEADER.encode()
_CORRELATION_ID = CORRELATION_ID_HEADER.encode()
_CACHE_CONTROL = b"cache-control"
_NO_STORE = (_CACHE_CONTROL, b"no-store")
#: Not counted in the request metrics: the probes and the scrapes (Litestar's ``exclude``
#: patterns, searched in the path as it did).
UNMEASURED = re.compile("/metrics|/api/health/")


class ServiceRequests:
    """Binds the request and correlation ids (to the log context, and echoed back), counts and
    times the request by route, method and status, and answers ``Cache-Control: no-store``
    unless the route set a policy of its own: profiles, carts, orders and errors are personal
    and must not be kept by a browser or a proxy (the catalog's cacheable routes say so)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.metrics = RequestMetrics(service)

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given_request_id, given_correlation_id = _given_ids(scope["headers"])
        request_id = id_or_none(given_request_id) or str(new_id())
        correlation_id = id_or_none(given_correlation_id) or request_id
        state = scope.get("state")
        if state is None:
            scope["state"] = {"request_id": request_id}
        else:
            state["request_id"] = request_id
        echoed = (
            (_REQUEST_ID, request_id.encode("latin-1")),
            (_CORRELATION_ID, correlation_id.encode("latin-1")),
        )
        route = None
        if UNMEASURED.search(scope["path"]) is None:
            route = self.metrics.route(scope.get("method", ""), scope.get("path_template", ""))
            route.in_progress.inc()
        started = time.perf_counter()
        status = 200
        duration = 0.0

        async def send_with_ids(message: Any) -> None:
            nonlocal status, duration
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                message["headers"] = _answer_headers(message.get("headers"), echoed)
            elif kind == "http.response.body":
                duration = time.perf_counter() - started
            await send(message)

        ids_token = request_ids_var.set((request_id, correlation_id))
        token = correlation_id_var.set(correlation_id)
        try:
            await self.app(scope, receive, send_with_ids)
        finally:
            correlation_id_var.reset(token)
            request_ids_var.reset(ids_token)
            if route is not None:
                route.in_progress.dec()
                route.answered(status, duration)


def _given_ids(headers: Any) -> tuple[bytes | None, bytes | None]:
    request_id: bytes | None = None
    correlation_id: bytes | None = None
    for name, value in headers:
        # As a dict of the headers did: the last of a repeated header.
        if name == _REQUEST_ID:
            request_id = value
        elif name == _CORRELATION_ID:
            correlation_id = value
    return request_id, correlation_id


def _answer_headers(given: Any, echoed: tuple[tuple[bytes, bytes], ...]) -> list[Any]:
    headers = list(given or ())
    for name, _ in headers:
        if name.lower() == _CACHE_CONTROL:
            break
    else:
        headers.append(_NO_STORE)
    headers += echoed
    return headers


def service_requests(service: str) -> Any:
    from litestar.middleware import DefineMiddleware

    return DefineMiddleware(ServiceRequests, service=service)
