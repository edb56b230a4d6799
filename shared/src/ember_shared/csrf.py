"""Cross-site request forgery: one defence, used by every service and the storefront.

Three parts, each refusing what the others might let through:

1. **The CSRF token is bound to the session.** It is ``HMAC-SHA256(key, session id)``
   (:func:`session_csrf_token`), the key derived from the services' shared secret
   (:attr:`ember_shared.settings.AuthSettings.csrf_key`). Identity hands it out at sign-in (the
   ``ember_csrf`` cookie the page reads, and ``csrf_token`` in the answer); a state change
   authenticated by the ``ember_access`` cookie must echo it in ``X-CSRF-Token``, and every
   service recomputes it from the access token's ``sid``. A cookie and header pair someone
   made up (equal to each other, or planted from a sibling domain) names no session, so it is
   refused: only a page that could read the victim's own cookie can send the right value.
2. **Cross-site state changes are refused outright** (:func:`cross_site_refusal`, on every
   app, before any guard): a browser marks them ``Sec-Fetch-Site: cross-site`` and sends
   an ``Origin`` that is not the shop's. That covers guests, whose only credential is the guest
   cart cookie and who have no session to bind a token to. Server-to-server callers send
   neither header; webhooks opt out anyway (``exclude_from_csrf=True`` in the handler's opt).
3. **A JSON body is taken only as JSON** (:func:`refuses_other_media_types`, after the guards,
   so an anonymous caller still hears 401 first). A handler reading its ``data`` as JSON
   refuses any other content type (``text/plain``, form encodings, none) with 415: a
   cross-site page can send those without asking, but ``application/json`` needs a CORS
   preflight we never grant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import urlsplit

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.enums import RequestEncodingType
from litestar.handlers.base import BaseRouteHandler
from litestar.handlers.http_handlers import HTTPRouteHandler
from litestar.params import BodyKwarg

from ember_shared.problems import Problem

CSRF_HEADER = "x-csrf-token"
#: The handler opt that takes a route out of the cross-site checks (webhooks: a provider's
#: servers post their own content types, and no browser is involved).
EXCLUDE_OPT = "exclude_from_csrf"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LABEL = b"ember-csrf.v1:"


def derive_csrf_key(service_token: str, secret: str = "") -> bytes:
    """The key CSRF tokens are made with: ``secret`` when set, else one derived from the
    services' shared credential (never the credential itself)."""
    if secret:
        return secret.encode()
    return hmac.new(service_token.encode(), b"ember-csrf-key.v1", hashlib.sha256).digest()


def session_csrf_token(key: bytes, session_id: str) -> str:
    """The CSRF token of one session (the same for its whole life, across refreshes)."""
    digest = hmac.new(key, _LABEL + session_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_matches(key: bytes, session_id: str, given: str) -> bool:
    """Whether ``given`` is the CSRF token of this session."""
    if not given or not session_id or len(given) > 100:
        return False
    return hmac.compare_digest(session_csrf_token(key, session_id).encode(), given.encode())


def media_type_of(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def is_json(content_type: str) -> bool:
    """``application/json`` or an ``application/*+json`` type (problem+json, merge-patch+json)."""
    media_type = media_type_of(content_type)
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _has_body(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    headers = connection.headers
    if "transfer-encoding" in headers:
        return True
    try:
        return int(headers.get("content-length", "0") or "0") > 0
    except ValueError:
        return True


def _body_encoding(handler: BaseRouteHandler) -> str | None:
    """How the handler reads its ``data`` (None when it takes no parsed body)."""
    if not isinstance(handler, HTTPRouteHandler):
        return None
    field = handler.parsed_data_field
    if field is None:
        return None
    kwarg = field.kwarg_definition
    if isinstance(kwarg, BodyKwarg):
        media_type = kwarg.media_type
        return media_type.value if isinstance(media_type, RequestEncodingType) else str(media_type)
    return RequestEncodingType.JSON.value


def _sends_right_media_type(encoding: str, content_type: str) -> bool:
    if encoding == RequestEncodingType.JSON.value:
        return is_json(content_type)
    return media_type_of(content_type) == encoding


def _origin_allowed(connection: ASGIConnection[Any, Any, Any, Any], origin: str) -> bool:
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False  # "null" (a sandboxed frame, a data: page) or garbage
    netloc = parts.netloc.lower()
    if netloc == connection.headers.get("host", "").strip().lower():
        return True
    settings = connection.app.state.get("settings")
    app_settings = getattr(settings, "app", None)
    return app_settings is not None and netloc in app_settings.public_origins


def cross_site_refusal(
    connection: ASGIConnection[Any, Any, Any, Any], handler: Any
) -> Problem | None:
    """A state change a browser sent from another site is refused (403), before any guard:
    checked by :class:`ember_shared.auth.AuthenticationMiddleware` on every app (it was an
    app-wide guard, and Litestar copies the route handler for each guard of each request)."""
    if connection.scope.get("method") not in UNSAFE_METHODS or (
        handler is not None and handler.opt.get(EXCLUDE_OPT)
    ):
        return None
    fetch_site = connection.headers.get("sec-fetch-site", "").strip().lower()
    origin = connection.headers.get("origin")
    if fetch_site == "cross-site" or (
        origin is not None and not _origin_allowed(connection, origin)
    ):
        return Problem(
            403,
            "cross-site",
            "This change was sent from another site: it is refused.",
            title="Cross-site request refused",
        )
    return None


async def refuses_other_media_types(request: Request[Any, Any, Any]) -> None:
    """App-wide ``before_request`` hook (after the guards, so who may call is answered first): a
    body is taken only in the media type its handler reads (415 otherwise)."""
    handler = request.scope.get("route_handler")
    if request.method not in UNSAFE_METHODS or handler is None or handler.opt.get(EXCLUDE_OPT):
        return
    encoding = _body_encoding(handler)
    if encoding is None or not _has_body(request):
        return
    content_type = request.headers.get("content-type", "")
    if not _sends_right_media_type(encoding, content_type):
        wanted = "application/json" if encoding == RequestEncodingType.JSON.value else encoding
        raise Problem(
            415,
            "unsupported-media-type",
            f"Send this request as {wanted}.",
            title="Unsupported media type",
        )
