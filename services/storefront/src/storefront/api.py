"""Talking to the services' public APIs on the shopper's behalf.

The storefront calls each service directly at its internal base URL (never through Caddy), with
one pooled :class:`httpx.AsyncClient` per service per process. Each page request gets an
:class:`Api`: it carries the shopper's credentials to the services (the ``ember_access`` cookie
as ``Authorization: Bearer``, the ``ember_cart`` cookie, and to identity the session cookies),
remembers every ``Set-Cookie`` the services answer so the page relays them to the browser, and
uses a cookie a service just set for the rest of the request (a guest's first add-to-cart makes
the cart cookie that checkout then needs).

Who the shopper is, :class:`Visitor`, is decided here too: the access token is verified locally
(identity's key, revoked sessions in Redis); an expired or missing one is renewed through
identity's ``/api/auth/refresh`` when a session cookie exists.

Errors come back as :class:`ApiProblem` (the service's RFC 9457 body, kept for the page to turn
into a friendly sentence) or :class:`ApiUnavailable` (no answer, or a 5xx).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from http.cookies import CookieError, SimpleCookie
from typing import Any, Literal

import httpx
import jwt
import structlog
from ember_shared.auth import Principal, TokenVerifier
from ember_shared.cookies import ACCESS_COOKIE, CART_COOKIE, CSRF_COOKIE, SESSION_COOKIE
from ember_shared.logging import CORRELATION_ID_HEADER, current_correlation_id
from ember_shared.settings import service_url
from litestar import Request
from litestar.datastructures import Cookie

log = structlog.get_logger("storefront.api")

#: The cookies the storefront reads and relays; any other a service sets is relayed as well.
MANAGED_COOKIES = (ACCESS_COOKIE, SESSION_COOKIE, CSRF_COOKIE, CART_COOKIE)
#: The services the storefront calls.
SERVICES = ("identity", "catalog", "cart", "checkout", "orders", "notifier")
#: Longest cookie value forwarded (the services bound theirs far below this).
MAX_COOKIE_VALUE = 4096

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class ApiProblem(Exception):
    """A service answered an error (problem+json, or anything else it sent with a 4xx/5xx)."""

    def __init__(self, status: int, body: Mapping[str, Any] | None = None) -> None:
        self.status = status
        self.body: dict[str, Any] = dict(body or {})
        type_uri = str(self.body.get("type", ""))
        self.kind = type_uri.rsplit("/", 1)[-1] if type_uri else ""
        self.detail = str(self.body.get("detail", "") or "")
        super().__init__(f"{status} {self.kind}: {self.detail}")

    @property
    def errors(self) -> list[dict[str, Any]]:
        raw = self.body.get("errors")
        return [e for e in raw if isinstance(e, dict)] if isinstance(raw, list) else []

    def field_errors(self) -> dict[str, str]:
        """Validation messages by field name (the last part of each error's ``key``)."""
        out: dict[str, str] = {}
        for error in self.errors:
            key = str(error.get("key", "")).rsplit(".", 1)[-1]
            if key and key not in out:
                out[key] = str(error.get("message", "")) or "Check this field."
        return out


class ApiUnavailable(ApiProblem):
    """A service did not answer, or answered 5xx: the page says so, politely."""

    def __init__(self, service: str, reason: str, status: int = 503) -> None:
        super().__init__(status, {"type": "unavailable", "detail": reason})
        self.service = service


class ApiClients:
    """One pooled HTTP client per service, for the life of the process."""

    def __init__(self, timeout_ms: int) -> None:
        self.timeout = httpx.Timeout(timeout_ms / 1000, connect=min(2.0, timeout_ms / 1000))
        self._clients: dict[str, httpx.AsyncClient] = {}

    def client(self, service: str) -> httpx.AsyncClient:
        client = self._clients.get(service)
        if client is None:
            client = httpx.AsyncClient(
                base_url=service_url(service),
                # One client serves every shopper: it must never keep a cookie of its own (one
                # shopper's cart or session would ride along on the next shopper's request).
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
                timeout=self.timeout,
                # A connection refused (a replica restarting) is tried once more.
                transport=httpx.AsyncHTTPTransport(retries=1),
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                follow_redirects=False,
            )
            self._clients[service] = client
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


@dataclass(frozen=True)
class Visitor:
    """Who is looking at the page: a signed-in principal, or a guest."""

    principal: Principal | None = None

    @property
    def signed_in(self) -> bool:
        return self.principal is not None

    @property
    def is_admin(self) -> bool:
        return self.principal is not None and self.principal.is_admin

    @property
    def email(self) -> str:
        return self.principal.email if self.principal else ""

    @property
    def name(self) -> str:
        if self.principal is None:
            return ""
        return self.principal.name or self.principal.email.split("@", 1)[0]

    @property
    def user_id(self) -> uuid.UUID | None:
        return self.principal.user_id if self.principal else None


GUEST = Visitor()


def cookie_from_header(header: str) -> Cookie | None:
    """A ``Set-Cookie`` header as a Litestar cookie (None when it cannot be read)."""
    parsed: SimpleCookie = SimpleCookie()
    try:
        parsed.load(header)
    except CookieError:
        return None
    for key, morsel in parsed.items():
        max_age_raw = morsel["max-age"]
        try:
            max_age = int(max_age_raw) if max_age_raw != "" else None
        except ValueError:
            max_age = None
        samesite = str(morsel["samesite"]).lower() or "lax"
        return Cookie(
            key=key,
            value=morsel.value,
            max_age=max_age,
            path=morsel["path"] or "/",
            domain=morsel["domain"] or None,
            secure=bool(morsel["secure"]),
            httponly=bool(morsel["httponly"]),
            samesite=samesite if samesite in ("lax", "strict", "none") else "lax",  # type: ignore[arg-type]
            expires=0 if max_age == 0 else None,
        )
    return None


@dataclass
class Api:
    """The services, as one shopper's request sees them."""

    clients: ApiClients
    verifier: TokenVerifier
    jar: dict[str, str]
    client_ip: str = ""
    user_agent: str = ""
    #: The Host the browser asked for: checkout returns the shopper from Stripe to it (when it is
    #: one of the shop's configured origins), where their cookies are.
    host: str = ""
    #: Cookies to send back to the browser, by name (the last one set wins).
    outgoing: dict[str, Cookie] = field(default_factory=dict)
    _visitor: Visitor | None = None

    @classmethod
    def for_request(
        cls, request: Request[Any, Any, Any], clients: ApiClients, verifier: TokenVerifier
    ) -> Api:
        jar = {
            name: value
            for name in MANAGED_COOKIES
            if (value := request.cookies.get(name, "")) and len(value) <= MAX_COOKIE_VALUE
        }
        return cls(
            clients=clients,
            verifier=verifier,
            jar=jar,
            client_ip=request.client.host if request.client else "",
            user_agent=request.headers.get("user-agent", "")[:255],
            host=request.headers.get("host", "")[:255],
        )

    # --- who is asking ------------------------------------------------------------------

    async def visitor(self) -> Visitor:
        if self._visitor is None:
            self._visitor = await self._resolve_visitor()
        return self._visitor

    def forget_visitor(self) -> None:
        """After sign-in or sign-out: the next question is answered from the new cookies."""
        self._visitor = None

    async def _resolve_visitor(self) -> Visitor:
        token = self.jar.get(ACCESS_COOKIE, "")
        if token:
            try:
                return Visitor(await self.verifier.verify(token))
            except jwt.ExpiredSignatureError:
                pass
            except (jwt.PyJWTError, ValueError):
                # A token that is not ours, or a revoked session: not signed in (a session
                # cookie may still renew it below; identity decides).
                log.info("access_token_refused")
            self.jar.pop(ACCESS_COOKIE, None)
        if self.jar.get(SESSION_COOKIE):
            return await self._refresh()
        return GUEST

    async def _refresh(self) -> Visitor:
        try:
            await self.call(
                "identity",
                "POST",
                "/api/auth/refresh",
                json={},
                bearer=False,
                cookies=(SESSION_COOKIE, CSRF_COOKIE),
            )
        except ApiUnavailable:
            log.warning("refresh_unavailable")
            return GUEST
        except ApiProblem as problem:
            # The session is over: identity answered cleared cookies, relayed as they came.
            log.info("refresh_refused", kind=problem.kind)
            self.jar.pop(SESSION_COOKIE, None)
            return GUEST
        token = self.jar.get(ACCESS_COOKIE, "")
        if not token:
            return GUEST
        try:
            return Visitor(await self.verifier.verify(token))
        except (jwt.PyJWTError, ValueError):
            return GUEST

    # --- calling ------------------------------------------------------------------------

    def _headers(self, bearer: bool, cookies: Sequence[str]) -> dict[str, str]:
        headers = {
            "Accept": "application/json",
            CORRELATION_ID_HEADER: current_correlation_id(),
        }
        # The services rate-limit and audit by client address; the storefront speaks for the
        # browser (uvicorn trusts this header from loopback, as it does from Caddy).
        if self.client_ip:
            headers["X-Forwarded-For"] = self.client_ip
        if self.user_agent:
            headers["User-Agent"] = self.user_agent
        if self.host:
            headers["X-Forwarded-Host"] = self.host
        token = self.jar.get(ACCESS_COOKIE, "")
        if bearer and token and self._visitor is not None and self._visitor.signed_in:
            headers["Authorization"] = f"Bearer {token}"
        sent = [f"{name}={self.jar[name]}" for name in cookies if self.jar.get(name)]
        if sent:
            headers["Cookie"] = "; ".join(sent)
        return headers

    def _take_cookies(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            cookie = cookie_from_header(header)
            if cookie is None:
                continue
            self.outgoing[cookie.key] = cookie
            if cookie.max_age == 0 or not cookie.value:
                self.jar.pop(cookie.key, None)
            else:
                self.jar[cookie.key] = cookie.value or ""

    async def call(
        self,
        service: str,
        method: Method,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        bearer: bool = True,
        cookies: Sequence[str] = (CART_COOKIE,),
    ) -> Any:
        """Call ``service`` and answer its decoded JSON body (None when it has none)."""
        if bearer and self._visitor is None:
            await self.visitor()
        clean_params = (
            {k: v for k, v in params.items() if v not in (None, "")} if params is not None else None
        )
        try:
            response = await self.clients.client(service).request(
                method,
                path,
                json=json if files is None else None,
                params=clean_params,
                files=files,
                headers=self._headers(bearer, cookies),
            )
        except httpx.HTTPError as exc:
            log.warning("api_unreachable", service=service, path=path, error=type(exc).__name__)
            raise ApiUnavailable(service, "The service did not answer.") from exc
        self._take_cookies(response)
        body: Any = None
        if response.content:
            try:
                body = response.json()
            except ValueError:
                body = None
        if response.status_code >= 500:
            log.warning("api_error", service=service, path=path, status=response.status_code)
            raise ApiUnavailable(
                service,
                str(body.get("detail", "")) if isinstance(body, dict) else "",
                response.status_code,
            )
        if response.status_code >= 400:
            raise ApiProblem(response.status_code, body if isinstance(body, dict) else None)
        return body

    async def get(self, service: str, path: str, **kwargs: Any) -> Any:
        return await self.call(service, "GET", path, **kwargs)

    async def post(self, service: str, path: str, **kwargs: Any) -> Any:
        return await self.call(service, "POST", path, **kwargs)

    async def put(self, service: str, path: str, **kwargs: Any) -> Any:
        return await self.call(service, "PUT", path, **kwargs)

    async def patch(self, service: str, path: str, **kwargs: Any) -> Any:
        return await self.call(service, "PATCH", path, **kwargs)

    async def delete(self, service: str, path: str, **kwargs: Any) -> Any:
        return await self.call(service, "DELETE", path, **kwargs)

    @property
    def has_cart(self) -> bool:
        """Whether a cart may exist for this visitor (a guest cookie, or a signed-in shopper)."""
        return bool(self.jar.get(CART_COOKIE)) or bool(self._visitor and self._visitor.signed_in)
