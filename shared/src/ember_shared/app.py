"""One way to build a service app, used by all of them (litestar-fullstack's plugin wiring).

A service describes itself with a :class:`ServiceSpec` (its routes, its models' base, its
event handlers, its own dependencies) and :func:`create_service_app` adds what every service
has: settings, JSON logs with request ids, problem details, the database session, Redis, token
verification, the cross-site checks (:mod:`ember_shared.csrf`), probes, its OpenAPI document
and the event runtime (outbox relay and consumers).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.stores.redis import RedisStore
from litestar.types import ControllerRouterHandler
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import DeclarativeBase

from ember_shared.auth import AuthenticationMiddleware, TokenVerifier
from ember_shared.csrf import refuses_other_media_types
from ember_shared.db import make_engine, sqlalchemy_plugin
from ember_shared.drain import Drain
from ember_shared.events.handlers import EventHandlers, Provider
from ember_shared.health import health_controller
from ember_shared.heap import freeze_start_up_heap
from ember_shared.logging import configure_logging
from ember_shared.metrics import MetricsProbe, mark_worker_dead, metrics_controller
from ember_shared.openapi import (
    PublicJsonRenderPlugin,
    PublicScalarRenderPlugin,
    PublicSwaggerRenderPlugin,
    full_document_handler,
)
from ember_shared.problems import document_problems, exception_handlers
from ember_shared.redis_conn import redis_from_url
from ember_shared.request_layer import service_requests
from ember_shared.settings import ServiceSettings, refuse_to_start, service_settings
from ember_shared.system import system_controller
from ember_shared.tracing import instrument_engine, litestar_middleware, setup_tracing

Lifespan = Callable[[Litestar], AbstractAsyncContextManager[None]]


@dataclass
class ServiceSpec:
    name: str
    title: str
    description: str
    route_handlers: Sequence[ControllerRouterHandler]
    base: type[DeclarativeBase] | None = None
    events: EventHandlers | None = None
    #: Providers of what event handlers ask for by name that only the app can make (its
    #: cache, its settings); they win over ``events.dependencies`` of the same name.
    event_dependencies: Mapping[str, Provider] = field(default_factory=dict)
    dependencies: dict[str, Provide] = field(default_factory=dict)
    lifespans: Sequence[Lifespan] = ()
    #: Called with the finished AppConfig, for what a service must add by hand.
    configure: Callable[[AppConfig], None] | None = None
    version: str = "1.0.0"
    #: The service's own gauges, set when /metrics is scraped (:mod:`ember_shared.metrics`).
    metrics: Sequence[MetricsProbe] = ()


def redis_client(settings: ServiceSettings) -> Redis:
    return redis_from_url(settings.redis.url, decode_responses=False)


def create_service_app(spec: ServiceSpec, settings: ServiceSettings | None = None) -> Litestar:
    settings = settings or service_settings(spec.name)
    refuse_to_start(settings.production_problems())
    configure_logging(spec.name, settings.app.log_level, settings.app.log_format)
    setup_tracing(spec.name)
    engine = make_engine(settings)
    instrument_engine(engine)
    redis = redis_client(settings)
    verifier = TokenVerifier(settings.auth, redis)

    @asynccontextmanager
    async def resources(app: Litestar) -> AsyncIterator[None]:
        from ember_shared.events.runtime import EventRuntime

        app.state.redis = redis
        app.state.db_engine = engine
        # Each statement its own transaction, without the BEGIN and COMMIT round trips of a
        # request transaction around it: for a route that only reads, and for a write that is
        # one statement and must end with it (checkout's budget claim and its locks).
        # (The engine itself too, made once: a one-statement read or write on its connection
        # needs no session.)
        app.state.db_autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        app.state.db_reads = async_sessionmaker(app.state.db_autocommit, expire_on_commit=False)
        app.state.settings = settings
        # Without a configured credential (tests, a lone service) internal routes stay closed.
        app.state.service_token = settings.auth.service_token or secrets.token_urlsafe(32)
        runtime = EventRuntime(
            settings,
            engine,
            spec.base.metadata if spec.base else None,
            spec.events,
            dependencies=spec.event_dependencies,
        )
        app.state.events = runtime
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()
            await redis.aclose()
            await engine.dispose()

    docs_path = f"/api/docs/{spec.name}"
    config = AppConfig(
        route_handlers=[
            health_controller(spec.name),
            metrics_controller(spec.metrics),
            system_controller(spec.version),
            full_document_handler(),
            *spec.route_handlers,
        ],
        plugins=[sqlalchemy_plugin(settings, engine)],
        middleware=[
            # Ids, request metrics and no-store by default (one layer, outside tracing so that
            # a request's time includes its span's).
            service_requests(spec.name),
            *[m for m in [litestar_middleware()] if m is not None],
            DefineMiddleware(AuthenticationMiddleware, verifier=verifier),
        ],
        exception_handlers=exception_handlers(),
        # Every state change: none from another site (AuthenticationMiddleware, before any
        # guard); then, once the route's guards let the caller in, a JSON body only as
        # application/json.
        before_request=refuses_other_media_types,
        dependencies=dict(spec.dependencies),
        lifespan=[Drain(settings.app.shutdown_drain_ms).lifespan, resources, *spec.lifespans],
        on_startup=[document_problems, freeze_start_up_heap],
        # With several workers sharing a metrics directory, this one's gauges leave with it.
        on_shutdown=[mark_worker_dead],
        stores={"rate_limit": RedisStore(redis, namespace=f"{spec.name}:rate-limit")},
        openapi_config=OpenAPIConfig(
            title=spec.title,
            version=spec.version,
            description=spec.description,
            path=docs_path,
            # These pages and openapi.json show the public routes only; the full document is
            # at /internal/docs/openapi.json (ember_shared.openapi).
            render_plugins=[
                PublicScalarRenderPlugin(),
                PublicSwaggerRenderPlugin(path="/swagger"),
                PublicJsonRenderPlugin(),
            ],
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(
                        type="http", scheme="bearer", bearer_format="JWT"
                    ),
                }
            ),
            use_handler_docstrings=True,
        ),
        debug=False,
        # Routes that take uploads raise their own limit; everything else is small JSON.
        request_max_body_size=1_048_576,
    )
    if spec.configure is not None:
        spec.configure(config)
    return Litestar.from_config(config)
