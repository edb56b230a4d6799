"""The notifier service's ASGI app: ``uvicorn --factory notifier.app:create_app``.

It queues mail from domain events, receives Resend's webhooks and serves the admin email API.
The mail itself is sent by a separate process, the worker (``python -m notifier.worker``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ember_shared.app import ServiceSpec, create_service_app
from ember_shared.settings import service_settings
from litestar import Litestar

from notifier.dead_letters.controllers import DeadLetterController
from notifier.emails.controllers import AdminEmailController
from notifier.events import handlers
from notifier.metrics import mail_probe
from notifier.models import Base
from notifier.settings import NotifierSettings, load_settings
from notifier.suppressions.controllers import SuppressionController
from notifier.webhooks.controllers import ResendWebhookController


def create_app(settings: NotifierSettings | None = None) -> Litestar:
    service = service_settings("notifier")
    notifier_settings = load_settings(settings, service)
    public_url = service.app.public_url

    @asynccontextmanager
    async def notifier_state(app: Litestar) -> AsyncIterator[None]:
        app.state.notifier_settings = notifier_settings
        yield

    return create_service_app(
        ServiceSpec(
            name="notifier",
            title="Ember notifier",
            description=__doc__ or "",
            route_handlers=[
                ResendWebhookController,
                AdminEmailController,
                SuppressionController,
                DeadLetterController,
            ],
            base=Base,
            events=handlers,
            event_dependencies={"public_url": lambda: public_url},
            lifespans=[notifier_state],
            metrics=[mail_probe],
        ),
        service,
    )
