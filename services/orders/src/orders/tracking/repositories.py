"""Queries about shipments: which are due a sync, and their scans."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from orders.models import Order, TrackingEvent
from orders.ordering.status import OrderStatus
from orders.tracking.client import ProviderScan


@dataclass(frozen=True)
class DueShipment:
    order_id: uuid.UUID
    carrier: str
    tracking_number: str
    registered: bool


def fingerprint(scan: ProviderScan) -> str:
    raw = "|".join(
        [
            scan.occurred_at.isoformat(),
            scan.status,
            scan.sub_status,
            scan.description,
            scan.location,
        ]
    )
    return hashlib.sha256(raw.encode()).hexdigest()


class TrackingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim_due(
        self,
        *,
        now: dt.datetime,
        synced_before: dt.datetime,
        shipped_after: dt.datetime,
        limit: int,
    ) -> list[DueShipment]:
        """Take up to ``limit`` shipments due a sync and stamp them, so another replica's
        poller (or this one's next round) leaves them alone until the interval has passed."""
        due = (
            select(Order.id)
            .where(
                Order.status == OrderStatus.SHIPPED.value,
                Order.tracking_number.is_not(None),
                or_(Order.shipped_at.is_(None), Order.shipped_at >= shipped_after),
                or_(Order.tracking_last_sync.is_(None), Order.tracking_last_sync < synced_before),
            )
            .order_by(Order.tracking_last_sync.asc().nulls_first())
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(Order)
            .where(Order.id.in_(due.scalar_subquery()))
            .values(tracking_last_sync=now)
            .returning(Order.id, Order.carrier, Order.tracking_number, Order.tracking_registered)
            .execution_options(synchronize_session=False)
        )
        rows = (await self.session.execute(statement)).all()
        return [
            DueShipment(
                order_id=row[0],
                carrier=row[1] or "",
                tracking_number=row[2] or "",
                registered=row[3],
            )
            for row in rows
        ]

    async def add_scans(self, order_id: uuid.UUID, scans: Sequence[ProviderScan]) -> int:
        """Store the scans not stored yet; the number added."""
        if not scans:
            return 0
        rows = [
            {
                "order_id": order_id,
                "fingerprint": fingerprint(scan),
                "occurred_at": scan.occurred_at,
                "status": scan.status,
                "sub_status": scan.sub_status,
                "description": scan.description,
                "location": scan.location,
            }
            for scan in scans
        ]
        statement = (
            insert(TrackingEvent)
            .values(rows)
            .on_conflict_do_nothing(constraint="uq_tracking_events_order_fingerprint")
            .returning(TrackingEvent.id)
        )
        return len((await self.session.execute(statement)).all())

    async def forget_scans(self, order_id: uuid.UUID) -> None:
        await self.session.execute(delete(TrackingEvent).where(TrackingEvent.order_id == order_id))

    async def scans_for(self, order_id: uuid.UUID, *, limit: int = 200) -> Sequence[TrackingEvent]:
        statement = (
            select(TrackingEvent)
            .where(TrackingEvent.order_id == order_id)
            .order_by(TrackingEvent.occurred_at.desc(), TrackingEvent.id.desc())
            .limit(limit)
        )
        return (await self.session.execute(statement)).scalars().all()

    async def record_failure(self, order_ids: Sequence[uuid.UUID], error: str) -> None:
        if not order_ids:
            return
        await self.session.execute(
            update(Order)
            .where(and_(Order.id.in_(order_ids)))
            .values(tracking_error=error[:500])
            .execution_options(synchronize_session=False)
        )
