"""The storefront's ASGI app: ``uvicorn --factory storefront.app:create_app`` (port 8100).

Server-rendered pages (Jinja + htmx) over the services' public APIs. It owns no tables, so it is
built without a models base; its readiness still reports the shared database and Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ember_shared.app import ServiceSpec, create_service_app
from ember_shared.asyncapi import asyncapi_document
from ember_shared.auth import TokenVerifier
from ember_shared.settings import service_settings
from litestar import Litestar, Request
from litestar.config.app import AppConfig
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import CacheControlHeader
from litestar.di import Provide
from litestar.static_files import create_static_files_router

from storefront.api import Api, ApiClients, Visitor
from storefront.errors import html_aware_handlers
from storefront.pages import (
    account,
    admin,
    admin_offers,
    auth,
    cart,
    checkout,
    reports,
    seo,
    shop,
    subscriptions,
)
from storefront.pages import system as system_page
from storefront.settings import StorefrontSettings, load_settings
from storefront.web import STATIC_DIR, relay_cookies

CSRF_COOKIE = "ember_form_csrf"
CSRF_HEADER = "x-form-csrf"


async def provide_api(request: Request[Any, Any, Any]) -> Api:
    api = request.state.get("api")
    if not isinstance(api, Api):
        state = request.app.state
        api = Api.for_request(request, state.api_clients, state.token_verifier)
        request.state.api = api
    return api


async def provide_visitor(api: Api) -> Visitor:
    return await api.visitor()


#: The largest body a storefront route takes unless it says otherwise (bytes).
FORM_MAX_BODY = 256 * 1024


def create_app(settings: StorefrontSettings | None = None) -> Litestar:
    service = service_settings("storefront")
    storefront = load_settings(settings, service)

    @asynccontextmanager
    async def clients(app: Litestar) -> AsyncIterator[None]:
        app.state.storefront_settings = storefront
        # Canonical links, the sitemap and structured data name the shop's one public address.
        app.state.public_url = service.app.public_url.rstrip("/")
        app.state.cookie_secure = not service.app.is_local
        app.state.api_clients = ApiClients(storefront.api_timeout_ms)
        app.state.token_verifier = TokenVerifier(service.auth, app.state.redis)
        try:
            yield
        finally:
            await app.state.api_clients.aclose()

    def configure(config: AppConfig) -> None:
        config.csrf_config = CSRFConfig(
            secret=storefront.csrf_key(service.auth.service_token),
            # __Host-: only this exact origin, over HTTPS, may set it, so a neighbouring
            # subdomain cannot plant a pair of its own (the token is not tied to a session).
            cookie_name=CSRF_COOKIE if service.app.is_local else f"__Host-{CSRF_COOKIE}",
            header_name=CSRF_HEADER,
            cookie_httponly=True,
            cookie_secure=not service.app.is_local,
            cookie_samesite="lax",
            # Browsers post CSP reports without any token; the probes are GETs anyway.
            exclude=["/csp-report"],
        )
        config.exception_handlers = html_aware_handlers(dict(config.exception_handlers))
        config.before_send = [*config.before_send, relay_cookies]
        # Forms only: the longest (a product's 20,000-character description, percent-encoded)
        # fits well inside. The image upload route sets its own, larger limit.
        config.request_max_body_size = FORM_MAX_BODY

    return create_service_app(
        ServiceSpec(
            name="storefront",
            title="Ember storefront",
            description="The shop's server-rendered pages, over the public APIs.",
            route_handlers=[
                create_static_files_router(
                    path="/static",
                    directories=[STATIC_DIR],
                    include_in_schema=False,
                    cache_control=CacheControlHeader(max_age=31_536_000, public=True),
                    name="static",
                ),
                *shop.ROUTES,
                *cart.ROUTES,
                *checkout.ROUTES,
                *auth.ROUTES,
                *account.ROUTES,
                *subscriptions.ROUTES,
                *admin.ROUTES,
                *admin_offers.ROUTES,
                *reports.ROUTES,
                *system_page.ROUTES,
                *seo.ROUTES,
                # The events belong to no one service; the storefront serves their document.
                asyncapi_document,
            ],
            dependencies={
                "api": Provide(provide_api),
                "visitor": Provide(provide_visitor),
            },
            lifespans=[clients],
            configure=configure,
        ),
        service,
    )
