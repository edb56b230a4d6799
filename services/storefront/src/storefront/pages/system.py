"""The staff system page (``/admin/system``): is every service up, and is anything stuck?

Each service's own ``/internal/system`` (with the service credential, straight to the service,
never through Caddy) tells its version, outbox backlog, consumer lag and its dead letters; the
notifier's admin API lists the dead letters (replayed from here) and the mail that failed. A
service that does not answer within a moment shows as down; the page never waits on it.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

import httpx
from ember_shared.auth import SERVICE_TOKEN_HEADER
from litestar import Request, Response, get, post
from litestar.params import Parameter

from storefront.api import Api, ApiProblem, Visitor
from storefront.errors import error_response
from storefront.pages.admin import staff_only
from storefront.web import redirect, render

#: The services behind the shop, in the order the page lists them.
BACKENDS = ("identity", "catalog", "cart", "checkout", "orders", "notifier")
STATUS_TIMEOUT_S = 2.0
DEAD_LETTERS_SHOWN = 50
MAIL_FAILURES_SHOWN = 5
LETTER_ID = re.compile(r"\d{1,20}-\d{1,20}")
LetterId = Annotated[str, Parameter(pattern=LETTER_ID.pattern, max_length=41)]


async def _service_status(
    request: Request[Any, Any, Any], api: Api, service: str
) -> dict[str, Any]:
    try:
        response = await api.clients.client(service).get(
            "/internal/system",
            headers={SERVICE_TOKEN_HEADER: request.app.state.service_token},
            timeout=STATUS_TIMEOUT_S,
        )
    except httpx.HTTPError as exc:
        return {"service": service, "up": False, "error": type(exc).__name__}
    if response.status_code != 200:
        return {"service": service, "up": False, "error": f"HTTP {response.status_code}"}
    body: dict[str, Any] = response.json()
    consumers = body.get("consumers") or []
    return {
        **body,
        "up": True,
        "lag": sum(int(c.get("lag", 0)) for c in consumers),
        "pending": sum(int(c.get("pending", 0)) for c in consumers),
    }


async def _optional(call: Any) -> Any:
    try:
        return await call
    except ApiProblem:
        return None


@get("/admin/system", name="admin-system", include_in_schema=False, cache=False)
async def system(
    request: Request[Any, Any, Any],
    api: Api,
    visitor: Visitor,
    *,
    replayed: Annotated[str | None, Parameter(pattern=LETTER_ID.pattern, max_length=41)] = None,
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    statuses, letters, failed, dead = await asyncio.gather(
        asyncio.gather(*(_service_status(request, api, s) for s in BACKENDS)),
        _optional(
            api.get(
                "notifier", "/api/admin/emails/dead-letters", params={"limit": DEAD_LETTERS_SHOWN}
            )
        ),
        _optional(
            api.get(
                "notifier",
                "/api/admin/emails",
                params={"status": "failed", "page_size": MAIL_FAILURES_SHOWN},
            )
        ),
        _optional(
            api.get(
                "notifier",
                "/api/admin/emails",
                params={"status": "dead", "page_size": MAIL_FAILURES_SHOWN},
            )
        ),
    )
    # This page is the storefront answering: it is up.
    own = {
        "service": "storefront",
        "version": request.app.openapi_schema.info.version,
        "up": True,
        "outbox": None,
        "dead_letters": None,
        "lag": 0,
        "pending": 0,
    }
    services = [*statuses, own]
    return render(
        request,
        "admin/system.html",
        {
            "services": services,
            "letters": letters,
            "failed": failed,
            "dead": dead,
            "replayed": replayed,
            "title": "System",
            "section": "system",
        },
    )


@post(
    "/admin/system/dead-letters/{letter_id:str}/replay",
    name="admin-dead-letter-replay",
    include_in_schema=False,
)
async def replay(
    request: Request[Any, Any, Any], api: Api, visitor: Visitor, letter_id: LetterId
) -> Response[Any]:
    if (gate := staff_only(request, visitor)) is not None:
        return gate
    try:
        await api.post("notifier", f"/api/admin/emails/dead-letters/{letter_id}/replay", json={})
    except ApiProblem as problem:
        if problem.status == 404:
            return error_response(
                request, 404, "Already handled", "That dead letter was replayed or discarded."
            )
        raise
    return redirect(request, f"/admin/system?replayed={letter_id}")


ROUTES = [system, replay]
