"""The Stripe stand-in's ASGI app: ``uvicorn --factory standins.stripe:create_app --port 8201``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from ember_shared.heap import freeze_start_up_heap
from ember_shared.logging import configure_logging
from ember_shared.settings import env_str
from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from standins.stripe.api import api_router, stripe_json
from standins.stripe.control import control_router
from standins.stripe.errors import StripeError
from standins.stripe.pages import pages_router
from standins.stripe.settings import StandinSettings
from standins.stripe.store import PayResult, Store
from standins.stripe.webhooks import WebhookDeliverer

log = structlog.get_logger("standins.stripe")


class StandinRuntime:
    """Background work: expiring sessions on time and settling delayed payments."""

    def __init__(
        self, settings: StandinSettings, store: Store, deliverer: WebhookDeliverer
    ) -> None:
        self.settings = settings
        self.store = store
        self.deliverer = deliverer
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.deliverer.start(resume=self.settings.delivers_webhooks)
        self._spawn(self._expire_forever())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.deliverer.stop()
        await asyncio.to_thread(self.store.close)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expire_forever(self) -> None:
        while True:
            try:
                expired = self.store.expire_due()
                if expired:
                    log.info("sessions_expired", sessions=expired)
            except Exception as exc:
                log.warning("expiry_failed", error=str(exc))
            await asyncio.sleep(self.settings.expiry_interval_seconds)

    def after_pay(self, session_id: str, result: PayResult) -> None:
        if result.outcome == "processing" and self.settings.async_settle_seconds > 0:
            self._spawn(self._settle_later(session_id))

    async def _settle_later(self, session_id: str) -> None:
        await asyncio.sleep(self.settings.async_settle_seconds)
        with contextlib.suppress(StripeError):
            self.store.settle_delayed(session_id, succeeded=True)


def _on_stripe_error(_: Request[Any, Any, Any], exc: StripeError) -> Response[Any]:
    return stripe_json(exc.body(), exc.status)


def _on_validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    return stripe_json(StripeError(400, f"Invalid request: {exc.extra or exc.detail}").body(), 400)


def _on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code == 404:
        message = f"Unrecognized request URL ({request.method}: {request.url.path})."
    else:
        message = exc.detail
    return stripe_json(StripeError(exc.status_code, message).body(), exc.status_code)


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("standin_error", path=request.url.path, exc_info=exc)
    return stripe_json(
        StripeError(500, "An error occurred in the Stripe stand-in.", type_="api_error").body(), 500
    )


def create_app(settings: StandinSettings | None = None) -> Litestar:
    settings = settings or StandinSettings()
    configure_logging("stripe-standin", env_str("LOG_LEVEL", "INFO"), env_str("LOG_FORMAT", "json"))
    store = Store(
        public_url=settings.public_url,
        state_path=settings.state_path,
        min_expiry_seconds=settings.min_expiry_seconds,
    )
    deliverer = WebhookDeliverer(
        store,
        url=settings.webhook_url,
        secret=settings.webhook_secret,
        retry_base_seconds=settings.retry_base_seconds,
        max_attempts=settings.max_attempts,
        concurrency=settings.delivery_concurrency,
        enabled_events=settings.enabled_event_types,
    )
    if settings.delivers_webhooks:
        store.on_event(deliverer.on_event)
    runtime = StandinRuntime(settings, store, deliverer)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = Litestar(
        route_handlers=[api_router, pages_router, control_router],
        lifespan=[lifespan],
        exception_handlers={
            StripeError: _on_stripe_error,
            ValidationException: _on_validation,
            HTTPException: _on_http,
            Exception: _on_unexpected,
        },
        openapi_config=None,
        request_max_body_size=1_048_576,
        debug=False,
        # As a service does: collections walk what the stand-in keeps, not its start-up.
        on_startup=[freeze_start_up_heap],
    )
    app.state.store = store
    app.state.deliverer = deliverer
    app.state.runtime = runtime
    app.state.settings = settings
    return app
