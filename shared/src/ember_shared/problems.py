"""RFC 9457 problem details for every error a service answers.

One exception type, :class:`Problem`, for the errors our own code raises; handlers that turn
Litestar's own exceptions (validation, 404, 405, auth), repository errors and anything
unexpected into ``application/problem+json``; and :func:`document_problems`, which makes the
OpenAPI document say so, so that clients and schemathesis know every error's shape.
"""

from __future__ import annotations

import traceback
from http import HTTPStatus
from typing import Any

import asyncpg
import msgspec
import structlog
from advanced_alchemy.exceptions import (
    DuplicateKeyError,
    ForeignKeyError,
    IntegrityError,
    NotFoundError,
    RepositoryError,
)
from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.spec import Components, OpenAPIMediaType, OpenAPIResponse, Reference, Schema
from litestar.types import ExceptionHandlersMap
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import SQLAlchemyError

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://ember.shop/problems/"

log = structlog.get_logger("ember.problems")


class Problem(HTTPException):
    """An error our code raises on purpose: a status, a stable type slug and a human sentence.

    ``extra`` members are added to the body as RFC 9457 extension members (for example the
    list of cart lines that cannot be bought).
    """

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail=detail, status_code=status, headers=headers)
        self.kind = kind
        self.title = title or HTTPStatus(status).phrase
        self.members = extra


def not_found(what: str, detail: str | None = None) -> Problem:
    return Problem(404, "not-found", detail or f"No such {what}.", title="Not found")


def conflict(kind: str, detail: str, **extra: Any) -> Problem:
    return Problem(409, kind, detail, **extra)


def problem_response(
    request: Request[Any, Any, Any],
    status: int,
    kind: str,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **members: Any,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + kind,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    request_id = request.scope.get("state", {}).get("request_id")
    if request_id:
        body["request_id"] = request_id
    body.update(members)
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _kind_for_status(status: int) -> str:
    return {
        400: "bad-request",
        401: "unauthenticated",
        403: "forbidden",
        404: "not-found",
        405: "method-not-allowed",
        409: "conflict",
        413: "payload-too-large",
        415: "unsupported-media-type",
        422: "unprocessable",
        429: "rate-limited",
        503: "unavailable",
    }.get(status, "http-error")


def _on_problem(request: Request[Any, Any, Any], exc: Problem) -> Response[dict[str, Any]]:
    return problem_response(
        request,
        exc.status_code,
        exc.kind,
        exc.detail,
        title=exc.title,
        headers=exc.headers,
        **exc.members,
    )


async def answer_problem(scope: Any, receive: Any, send: Any, problem: Problem) -> None:
    """Answer ``problem`` from a middleware as the exception handlers answer it raised in a
    route (a middleware's exception would reach only the app's outermost handler, past the
    request layer that adds the request id and ``no-store``)."""
    request: Request[Any, Any, Any] = Request(scope=scope, receive=receive, send=send)
    handler = scope.get("route_handler")
    encoders = handler.resolve_type_encoders() if handler is not None else None
    response = _on_problem(request, problem).to_asgi_response(
        app=None, request=request, type_encoders=encoders
    )
    await response(scope, receive, send)


def _on_validation(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[dict[str, Any]]:
    errors = exc.extra if isinstance(exc.extra, list) else []
    return problem_response(
        request,
        400,
        "validation",
        "The request is not valid: see errors.",
        title="Invalid request",
        errors=[_clean_validation_error(e) for e in errors],
    )


def _clean_validation_error(error: Any) -> dict[str, Any]:
    if isinstance(error, dict):
        return {k: str(v) for k, v in error.items() if k in {"message", "key", "source"}}
    return {"message": str(error)}


def _on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    detail = exc.detail if exc.detail and exc.detail != HTTPStatus(status).phrase else ""
    if status >= 500:
        log.error("http_error", status=status, path=request.url.path, detail=exc.detail)
        detail = "The service could not answer. Try again shortly."
    return problem_response(
        request,
        status,
        _kind_for_status(status),
        detail or HTTPStatus(status).description or HTTPStatus(status).phrase,
        headers=exc.headers,
    )


def _on_repository(
    request: Request[Any, Any, Any], exc: RepositoryError
) -> Response[dict[str, Any]]:
    if isinstance(exc, NotFoundError):
        return problem_response(request, 404, "not-found", "No such resource.")
    if isinstance(exc, DuplicateKeyError):
        return problem_response(request, 409, "duplicate", "That already exists.")
    if isinstance(exc, ForeignKeyError | IntegrityError):
        return problem_response(request, 409, "conflict", "That conflicts with existing data.")
    return _on_unexpected(request, exc)


def _on_database(request: Request[Any, Any, Any], exc: SQLAlchemyError) -> Response[dict[str, Any]]:
    if isinstance(exc, sa_exc.IntegrityError):
        return problem_response(request, 409, "conflict", "That conflicts with existing data.")
    if isinstance(exc, sa_exc.DataError):
        return problem_response(
            request, 400, "invalid-value", "A value is out of the accepted range."
        )
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        return _unavailable(request, exc)
    if _database_unreachable(exc):
        return _unavailable(request, exc)
    return _on_unexpected(request, exc)


def _database_unreachable(exc: BaseException) -> bool:
    """Postgres restarting or gone: asyncpg's "the database system is starting up", a connection
    cut mid-query, or the socket not there. They reach us as a bare ``DBAPIError`` or even as the
    driver's own ``OSError``: an outage, not a bug (503, not 500)."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    seen: BaseException | None = exc
    for _ in range(5):  # the driver's error sits a few causes down
        if seen is None:
            return False
        if isinstance(seen, asyncpg.PostgresConnectionError | asyncpg.CannotConnectNowError):
            return True
        if isinstance(seen, OSError) and _raised_in_driver(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _raised_in_driver(exc: BaseException) -> bool:
    # Only the database driver's socket errors: an OSError of our own code stays a 500.
    return any("/asyncpg/" in frame.filename for frame in traceback.extract_tb(exc.__traceback__))


def _unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.warning("dependency_unavailable", path=request.url.path, error=type(exc).__name__)
    return problem_response(
        request,
        503,
        "unavailable",
        "A service this request needs is unavailable. Try again shortly.",
        headers={"Retry-After": "5"},
    )


def _on_undecodable(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """A body that is not UTF-8, or nested deeper than the decoder goes: the client's fault.

    msgspec raises these as UnicodeDecodeError and RecursionError, which Litestar does not turn
    into its own 400 as it does other decode errors."""
    if isinstance(exc, RecursionError) and "deserializ" not in str(exc):
        return _on_unexpected(request, exc)  # a recursion of our own is a bug, not bad input
    return problem_response(
        request,
        400,
        "invalid-body",
        "The request body is not valid JSON: it must be UTF-8 and not nested too deeply.",
        title="Invalid request body",
    )


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if _database_unreachable(exc):
        return _unavailable(request, exc)
    # The stack trace goes to the log, bound to the request id; never into the response.
    log.exception("unhandled_error", path=request.url.path, method=request.method, exc_info=exc)
    return problem_response(
        request,
        500,
        "internal",
        "Something went wrong on our side. It has been logged.",
        title="Internal error",
    )


class DatabaseConnectionLost(ConnectionError):
    """asyncpg's connection lost under a statement sent behind SQLAlchemy's back
    (``ember_shared.db.simple_query``: a transaction's BEGIN with its first statement, its
    COMMIT): Postgres restarting or gone, an outage (503), not a bug."""


def exception_handlers() -> ExceptionHandlersMap:
    return {
        Problem: _on_problem,
        ValidationException: _on_validation,
        HTTPException: _on_http,
        RepositoryError: _on_repository,
        SQLAlchemyError: _on_database,
        RedisConnectionError: _unavailable,
        RedisTimeoutError: _unavailable,
        DatabaseConnectionLost: _unavailable,
        UnicodeDecodeError: _on_undecodable,
        RecursionError: _on_undecodable,
        Exception: _on_unexpected,
    }


class ProblemDetails(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details, as every error response carries them."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[dict[str, str]] | None = None


#: Errors any route may answer; each operation documents these plus its own.
COMMON_ERROR_STATUSES = (400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500, 503)


def _problem_schema() -> Schema:
    return Schema(
        type="object",  # type: ignore[arg-type]
        required=["type", "title", "status", "detail"],
        properties={
            "type": Schema(type="string", format="uri"),  # type: ignore[arg-type]
            "title": Schema(type="string"),  # type: ignore[arg-type]
            "status": Schema(type="integer"),  # type: ignore[arg-type]
            "detail": Schema(type="string"),  # type: ignore[arg-type]
            "instance": Schema(type="string"),  # type: ignore[arg-type]
            "request_id": Schema(type="string"),  # type: ignore[arg-type]
            "errors": Schema(type="array", items=Schema(type="object")),  # type: ignore[arg-type]
        },
        additional_properties=True,
        description="RFC 9457 problem details.",
    )


def document_problems(app: Litestar) -> None:
    """Rewrite the app's OpenAPI so every error is documented as ``application/problem+json``.

    Litestar documents the exceptions it knows of as plain JSON with its own shape; ours answer
    RFC 9457 bodies, so the document must say that, for every operation and status we answer.
    """
    if app.openapi_config is None:
        return
    from litestar._openapi.plugin import OpenAPIPlugin

    openapi = app.plugins.get(OpenAPIPlugin).provide_openapi()
    components = openapi.components or Components()
    openapi.components = components
    schemas = components.schemas if components.schemas is not None else {}
    components.schemas = schemas
    schemas["ProblemDetails"] = _problem_schema()
    ref = Reference(ref="#/components/schemas/ProblemDetails")
    for path_item in (openapi.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(path_item, method, None)
            if operation is None:
                continue
            responses = operation.responses if operation.responses is not None else {}
            operation.responses = responses
            for status in COMMON_ERROR_STATUSES:
                responses.setdefault(
                    str(status), OpenAPIResponse(description=HTTPStatus(status).phrase)
                )
            for code, response in responses.items():
                if not code.isdigit() or int(code) < 400 or isinstance(response, Reference):
                    continue
                response.content = {PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=ref)}
