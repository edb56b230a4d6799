"""The background task that keeps shipped orders' tracking current.

Every ``TRACKING_POLL_INTERVAL`` seconds it claims the shipments whose last sync is older than
``TRACKING_SYNC_INTERVAL`` (``FOR UPDATE SKIP LOCKED``, so replicas share the work), asks the
provider about them in one call per 40, stores new scans and marks delivered orders delivered.
The provider is called outside any database transaction: a slow provider holds no row locks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress

import structlog
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from orders.ordering.services import utcnow
from orders.settings import OrdersSettings, TrackingSettings
from orders.tracking.client import BatchResult, ProviderError, TrackingClient
from orders.tracking.repositories import DueShipment, TrackingRepository
from orders.tracking.services import TrackingService, request_for

log = structlog.get_logger("orders.tracking")


class TrackingPoller:
    def __init__(
        self, engine: AsyncEngine, client: TrackingClient, settings: TrackingSettings
    ) -> None:
        self.client = client
        self.settings = settings
        self.sessions = async_sessionmaker(engine, expire_on_commit=False, class_=AsyncSession)
        self.rounds = 0

    async def run(self) -> None:
        while True:
            try:
                while await self.sync_due() >= self.settings.batch_size:
                    pass  # a full batch: more may be due, go on at once
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("tracking_poll_failed", error=f"{type(exc).__name__}: {exc}")
            self.rounds += 1
            await asyncio.sleep(self.settings.poll_interval_s)

    async def sync_due(self, now: dt.datetime | None = None) -> int:
        """One round: claim due shipments, ask the provider, apply. The number claimed."""
        now = now or utcnow()
        async with self.sessions() as session, session.begin():
            due = await TrackingRepository(session).claim_due(
                now=now,
                synced_before=now - dt.timedelta(seconds=self.settings.sync_interval_s),
                shipped_after=now - dt.timedelta(days=self.settings.max_age_days),
                limit=self.settings.batch_size,
            )
        if not due:
            return 0
        try:
            result = await self._ask(due)
        except ProviderError as exc:
            log.warning("tracking_provider_failed", error=str(exc), shipments=len(due))
            async with self.sessions() as session, session.begin():
                await TrackingRepository(session).record_failure(
                    [d.order_id for d in due], str(exc)
                )
            return len(due)
        async with self.sessions() as session, session.begin():
            service = TrackingService(session, self.client, self.settings)
            for shipment in due:
                order = await service.orders.orders.get_for_update(shipment.order_id)
                if order is None or order.tracking_number != shipment.tracking_number:
                    continue  # corrected while we were asking: the next round has the new one
                if shipment.tracking_number in result.accepted and not shipment.registered:
                    order.tracking_registered = True
                await service.apply_result(
                    order,
                    result.tracking.get(shipment.tracking_number),
                    result.rejected,
                    now,
                )
        log.info("tracking_synced", shipments=len(due))
        return len(due)

    async def _ask(self, due: list[DueShipment]) -> BatchResult:
        unregistered = [request_for(d.carrier, d.tracking_number) for d in due if not d.registered]
        if unregistered:
            registered = await self.client.register(unregistered)
        result = await self.client.track(request_for(d.carrier, d.tracking_number) for d in due)
        if unregistered:
            result.accepted |= registered.accepted
        return result


def tracking_lifespan(
    settings: OrdersSettings,
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """The app's lifespan part that owns the provider client and the poller."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        client = TrackingClient(settings.tracking)
        app.state.tracking_client = client
        task: asyncio.Task[None] | None = None
        poller = TrackingPoller(app.state.db_engine, client, settings.tracking)
        app.state.tracking_poller = poller
        if settings.tracking.poller_enabled:
            task = asyncio.create_task(poller.run(), name="tracking-poller")
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            await client.aclose()

    return lifespan
