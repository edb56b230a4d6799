"""The two OpenAPI documents of a service: the public one and the full one.

The public document (``/api/docs/<service>`` and its ``openapi.json``, served through Caddy)
describes what the shop offers the world: no ``/internal/...`` route, no service credential
scheme, no schema that only those routes use. Those tell an attacker which calls the services
trust each other with and how the credential is sent, and no outside client can call them.

The full document, internal routes included, is served on the service's own port at
``/internal/docs/openapi.json`` to holders of the service credential (Caddy never routes
``/internal/``): the authorization matrix and the flow tests read that one. The published
contract baselines are generated from the app itself (``app.openapi_schema``), which stays
whole, so they keep every route they ever had.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.plugins import JsonRenderPlugin, ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.response import Response
from litestar.serialization import encode_json

from ember_shared.auth import requires_service

INTERNAL_PREFIX = "/internal"
#: The security scheme of the services' shared credential (``X-Service-Token``).
SERVICE_SCHEME = "ServiceToken"
FULL_DOCUMENT_PATH = "/internal/docs/openapi.json"
OPENAPI_JSON = "application/vnd.oai.openapi+json"
_SCHEMA_REF = re.compile(r'"#/components/schemas/([^"]+)"')


def _is_internal(path: str) -> bool:
    return path == INTERNAL_PREFIX or path.startswith(INTERNAL_PREFIX + "/")


def _refs(value: Any) -> set[str]:
    return set(_SCHEMA_REF.findall(encode_json(value).decode()))


def _without_service_scheme(operation: Any) -> Any:
    if not isinstance(operation, dict) or "security" not in operation:
        return operation
    security = [r for r in operation["security"] if SERVICE_SCHEME not in r]
    return {**operation, "security": security}


def public_document(full: dict[str, Any]) -> dict[str, Any]:
    """``full`` without internal routes, the service credential's scheme and the component
    schemas nothing public refers to any more (``full`` is left as it is)."""
    document = dict(full)
    paths = {p: item for p, item in (full.get("paths") or {}).items() if not _is_internal(p)}
    for path, item in paths.items():
        paths[path] = {method: _without_service_scheme(op) for method, op in item.items()}
    document["paths"] = paths
    components = dict(full.get("components") or {})
    schemes = {
        name: scheme
        for name, scheme in (components.get("securitySchemes") or {}).items()
        if name != SERVICE_SCHEME
    }
    if "securitySchemes" in components:
        components["securitySchemes"] = schemes
    schemas: dict[str, Any] = components.get("schemas") or {}
    # Every schema reachable from what remains (paths, other components), and no other.
    kept: set[str] = set()
    pending = _refs(
        {**document, "components": {k: v for k, v in components.items() if k != "schemas"}}
    )
    while pending:
        name = pending.pop()
        if name in kept or name not in schemas:
            continue
        kept.add(name)
        pending |= _refs(schemas[name]) - kept
    if "schemas" in components:
        components["schemas"] = {name: s for name, s in schemas.items() if name in kept}
    document["components"] = components
    return document


class _Public:
    """Renders the public document in place of the full one (cached: the full one is)."""

    _source: dict[str, Any] | None = None
    _public: dict[str, Any] | None = None

    def public(self, full: dict[str, Any]) -> dict[str, Any]:
        if self._source is not full or self._public is None:
            self._source, self._public = full, public_document(full)
        return self._public


class PublicJsonRenderPlugin(_Public, JsonRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, self.public(openapi_schema))


class PublicScalarRenderPlugin(_Public, ScalarRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, self.public(openapi_schema))


class PublicSwaggerRenderPlugin(_Public, SwaggerRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, self.public(openapi_schema))


def full_document_handler() -> HTTPRouteHandler:
    """``GET /internal/docs/openapi.json``: every route, for the services' own tooling."""

    @get(
        FULL_DOCUMENT_PATH,
        guards=[requires_service],
        include_in_schema=False,
        media_type=OPENAPI_JSON,
        sync_to_thread=False,
        cache=False,
    )
    def full_document(request: Request[Any, Any, Any]) -> Response[bytes]:
        schema = request.app.openapi_schema.to_schema()
        return Response(encode_json(schema), media_type=OPENAPI_JSON)

    return full_document
