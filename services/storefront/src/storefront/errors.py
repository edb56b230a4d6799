"""Errors as a person sees them: friendly pages for browsers, problem+json for everything else.

A browser navigating the shop (``Accept: text/html``) gets a page in the shop's layout, with a
sentence and a way on; an htmx request gets a short notice swapped into the page's flash area;
any other client (a probe, ``curl``, a test) gets the shared RFC 9457 answer unchanged. Errors
the services answered (:class:`ApiProblem`) are never shown raw.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from ember_shared.problems import problem_response
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, PermissionDeniedException
from litestar.response import Redirect
from litestar.types import ExceptionHandlersMap

from storefront.api import ApiProblem, ApiUnavailable
from storefront.web import is_htmx, render_html

log = structlog.get_logger("storefront.errors")

PAGES: dict[int, tuple[str, str]] = {
    400: ("That link does not look right", "Something in the address is not what we expected."),
    403: ("Not for you, sorry", "This page is not open to your account."),
    404: (
        "We could not find that page",
        "It may have moved, or the link may be mistyped. Our coffees are all in the shop.",
    ),
    405: ("That does not work here", "This page cannot be used that way."),
    413: ("That is too big", "The file or form you sent is larger than we accept."),
    429: ("Slow down a little", "Too many tries in a short time. Wait a moment and try again."),
    500: (
        "Something went wrong on our side",
        "It has been logged and we will look into it. Please try again in a moment.",
    ),
    503: (
        "Part of the shop is taking a break",
        "We could not reach it just now. Please try again in a moment.",
    ),
}
CSRF_PAGE = (
    "This form has expired",
    "For your safety we did not send it. Go back, reload the page and try again.",
)


def wants_html(request: Request[Any, Any, Any]) -> bool:
    return is_htmx(request) or "text/html" in request.headers.get("accept", "")


def error_response(
    request: Request[Any, Any, Any],
    status: int,
    title: str | None = None,
    detail: str | None = None,
) -> Response[Any]:
    default_title, default_detail = PAGES.get(status, PAGES[500 if status >= 500 else 400])
    title = title or default_title
    detail = detail or default_detail
    if is_htmx(request):
        html = render_html(request, "partials/notice.html", {"kind": "error", "message": detail})
        # htmx swaps 2xx answers only: the notice goes to the flash area, whatever was targeted.
        return Response(
            html,
            status_code=200,
            media_type=MediaType.HTML,
            headers={
                "HX-Retarget": "#flash",
                "HX-Reswap": "innerHTML",
                "Cache-Control": "no-store",
            },
        )
    html = render_html(
        request,
        "error.html",
        {"status": status, "error_title": title, "error_detail": detail, "title": title},
    )
    return Response(
        html, status_code=status, media_type=MediaType.HTML, headers={"Cache-Control": "no-store"}
    )


def _on_api_problem(request: Request[Any, Any, Any], exc: ApiProblem) -> Response[Any]:
    if isinstance(exc, ApiUnavailable):
        log.warning("page_service_unavailable", path=request.url.path, service=exc.service)
        status = 503
    else:
        log.info("page_api_problem", path=request.url.path, status=exc.status, kind=exc.kind)
        status = exc.status if exc.status in PAGES else 400
    if status == 401 and wants_html(request):
        target = f"/signin?next={request.url.path}"
        if is_htmx(request):
            return Response(None, status_code=204, headers={"HX-Redirect": target})
        return Redirect(target, status_code=303)
    if wants_html(request):
        return error_response(request, status)
    return problem_response(
        request,
        status,
        "upstream" if status >= 500 else (exc.kind or "upstream-refused"),
        PAGES.get(status, PAGES[500])[1],
    )


def html_aware_handlers(shared: ExceptionHandlersMap) -> ExceptionHandlersMap:
    """The shared handlers, each answering a page instead when a browser asked for one."""

    def wrap(handler: Callable[..., Response[Any]]) -> Callable[..., Response[Any]]:
        def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
            if not wants_html(request):
                return handler(request, exc)
            if isinstance(exc, PermissionDeniedException) and "CSRF" in str(exc.detail):
                return error_response(request, 403, *CSRF_PAGE)
            if isinstance(exc, HTTPException):
                status = exc.status_code
            else:
                handler(request, exc)  # logs it, as for any other client
                status = 500
            if status not in PAGES:
                status = 500 if status >= 500 else 400
            return error_response(request, status)

        return handle

    wrapped: dict[Any, Any] = {key: wrap(handler) for key, handler in shared.items()}  # type: ignore[arg-type]
    wrapped[ApiProblem] = _on_api_problem
    return wrapped
