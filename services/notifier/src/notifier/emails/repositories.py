"""Every query on the outbox and its attempts (polar's rule: queries live here, nowhere else)."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Sequence
from typing import Any

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from ember_shared.ids import new_id
from sqlalchemy import Integer, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import selectinload

from notifier.models import DeliveryAttempt, EmailStatus, PendingEmail, Suppression
from notifier.suppressions.repositories import normalize_email

#: Statuses the worker picks up once ``next_attempt_at`` has come.
DUE_STATUSES = (EmailStatus.QUEUED.value, EmailStatus.FAILED.value)


@functools.cache
def _claim() -> Any:
    """The claim, built once with bound parameters: it runs on every pass of every worker (every
    queued mail and every idle poll), and building it (and walking it for its cache key) each
    time was half of an idle worker's CPU."""
    now = bindparam("now", type_=PendingEmail.__table__.c.updated_at.type)
    due = (
        select(PendingEmail.id)
        .where(
            or_(
                PendingEmail.status.in_(DUE_STATUSES) & (PendingEmail.next_attempt_at <= now),
                (PendingEmail.status == EmailStatus.SENDING.value)
                & (PendingEmail.locked_until < now),
            )
        )
        .order_by(PendingEmail.next_attempt_at)
        .limit(bindparam("limit", type_=Integer))
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    # Addresses are stored without spaces (ADDRESS_PATTERN) and suppressions lower-cased by the
    # same lower() (their CHECK), so this is normalize_email's comparison.
    suppressed = (
        select(Suppression.id)
        .where(Suppression.email == func.lower(PendingEmail.to_email))
        .exists()
        .label("suppressed")
    )
    return (
        update(PendingEmail)
        .where(PendingEmail.id.in_(select(due.c.id)))
        .values(
            status=EmailStatus.SENDING.value,
            attempts=PendingEmail.attempts + 1,
            claim_token=bindparam("claim_token"),
            locked_until=bindparam("lease_until"),
            updated_at=now,
        )
        .returning(PendingEmail, suppressed)
        .execution_options(synchronize_session=False, populate_existing=True)
    )


class PendingEmailRepository(SQLAlchemyAsyncRepository[PendingEmail]):
    model_type = PendingEmail

    async def insert_once(self, values: dict[str, object]) -> uuid.UUID | None:
        """Insert a mail unless its idempotency key is already there; its id, or None if it was."""
        statement = (
            insert(PendingEmail)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[PendingEmail.idempotency_key])
            .returning(PendingEmail.id)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def insert_once_and_notify(
        self, values: dict[str, object], channel: str
    ) -> uuid.UUID | None:
        """:meth:`insert_once`, and a NOTIFY on ``channel`` (delivered with the commit) when it
        inserted: one round trip where the insert and the notify took two."""
        added = (
            insert(PendingEmail)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[PendingEmail.idempotency_key])
            .returning(PendingEmail.id)
            .cte("added")
        )
        statement = select(added.c.id, func.pg_notify(channel, "")).select_from(added)
        row = (await self.session.execute(statement)).first()
        return row.id if row is not None else None

    async def look_before_queueing(
        self, idempotency_key: str, address: str
    ) -> tuple[tuple[uuid.UUID, str] | None, bool]:
        """The mail already queued under ``idempotency_key`` (id, status), if any, and whether
        ``address`` is suppressed: the two reads before queueing, in one round trip."""
        queued = (
            select(PendingEmail.id, PendingEmail.status)
            .where(PendingEmail.idempotency_key == idempotency_key)
            .limit(1)
        )
        suppressed = select(Suppression.id).where(Suppression.email == normalize_email(address))
        row = (
            await self.session.execute(
                select(
                    queued.with_only_columns(PendingEmail.id).scalar_subquery().label("id"),
                    queued.with_only_columns(PendingEmail.status).scalar_subquery().label("status"),
                    suppressed.exists().label("suppressed"),
                )
            )
        ).one()
        return ((row.id, row.status) if row.id is not None else None), bool(row.suppressed)

    async def find_by_key(self, idempotency_key: str) -> PendingEmail | None:
        return await self.get_one_or_none(PendingEmail.idempotency_key == idempotency_key)

    async def page(
        self, *, status: str | None, to_email: str | None, limit: int, offset: int
    ) -> tuple[Sequence[PendingEmail], int]:
        conditions = []
        if status is not None:
            conditions.append(PendingEmail.status == status)
        if to_email is not None:
            conditions.append(func.lower(PendingEmail.to_email) == to_email.strip().lower())
        total = (
            await self.session.execute(
                select(func.count()).select_from(PendingEmail).where(*conditions)
            )
        ).scalar_one()
        rows = (
            await self.session.execute(
                select(PendingEmail)
                .where(*conditions)
                .order_by(PendingEmail.created_at.desc(), PendingEmail.id.desc())
                .limit(limit)
                .offset(offset)
            )
        ).scalars()
        return list(rows), int(total)

    async def with_attempts(self, email_id: uuid.UUID) -> PendingEmail | None:
        return (
            await self.session.execute(
                select(PendingEmail)
                .where(PendingEmail.id == email_id)
                .options(selectinload(PendingEmail.delivery_attempts))
                .execution_options(populate_existing=True)
            )
        ).scalar_one_or_none()

    async def claim_due(
        self, *, now: dt.datetime, limit: int, lease_until: dt.datetime, claim_token: uuid.UUID
    ) -> list[tuple[PendingEmail, bool]]:
        """Take up to ``limit`` due mails for this worker, each with whether its address is
        suppressed now: one statement (on an autocommit session it is the whole claim), where
        the claim and the suppression read were two, in a transaction of their own.

        ``FOR UPDATE SKIP LOCKED`` lets several workers claim at once without taking the same
        row; a row left ``sending`` by a worker that died is due again once its lease lapses.
        """
        parameters = {
            "now": now,
            "limit": limit,
            "lease_until": lease_until,
            "claim_token": claim_token,
        }
        rows = (await self.session.execute(_claim(), parameters)).tuples().all()
        return sorted(
            ((email, bool(flag)) for email, flag in rows), key=lambda row: row[0].next_attempt_at
        )

    async def finish_attempt(
        self,
        email_id: uuid.UUID,
        claim_token: uuid.UUID,
        values: dict[str, object],
        attempt: dict[str, object],
    ) -> bool:
        """Record one try (``attempt``) and the end of its claim (``values``) in one statement,
        which on an autocommit session is the whole transaction: four round trips before.
        False when the claim had lapsed and another worker has it (the try is recorded
        anyway, as it was made)."""
        recorded = (
            insert(DeliveryAttempt)
            .values(id=new_id(), **attempt)
            # A lapsed claim's late answer must not fail on the number its successor used.
            .on_conflict_do_nothing(
                index_elements=[DeliveryAttempt.email_id, DeliveryAttempt.attempt]
            )
            .returning(DeliveryAttempt.id)
            .cte("recorded")
        )
        finished = (
            update(PendingEmail)
            .where(PendingEmail.id == email_id, PendingEmail.claim_token == claim_token)
            .values(**values, claim_token=None, locked_until=None)
            .returning(PendingEmail.id)
            .cte("finished")
        )
        # Both CTEs run whatever the outer query reads (data-modifying CTEs always do).
        statement = select(
            select(func.count()).select_from(finished).scalar_subquery(),
            select(func.count()).select_from(recorded).scalar_subquery(),
        )
        kept, _ = (await self.session.execute(statement)).one()
        return bool(kept)

    async def requeue(
        self, email_id: uuid.UUID, from_statuses: Sequence[str], now: dt.datetime
    ) -> bool:
        statement = (
            update(PendingEmail)
            .where(PendingEmail.id == email_id, PendingEmail.status.in_(from_statuses))
            .values(
                status=EmailStatus.QUEUED.value,
                attempts_at_requeue=PendingEmail.attempts,
                next_attempt_at=now,
                claim_token=None,
                locked_until=None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        result = await self.session.execute(statement)
        return bool(getattr(result, "rowcount", 0))

    async def set_delivery(
        self, provider_message_id: str, delivery_status: str, at: dt.datetime, *, overwrite: bool
    ) -> int:
        """Record what Resend reported for a sent mail. A later "delivered" must not hide an
        earlier bounce or complaint, so only ``overwrite`` statuses replace one already set."""
        conditions = [PendingEmail.provider_message_id == provider_message_id]
        if not overwrite:
            conditions.append(PendingEmail.delivery_status.is_(None))
        statement = (
            update(PendingEmail)
            .where(*conditions)
            .values(delivery_status=delivery_status, delivery_updated_at=at)
            .execution_options(synchronize_session=False)
        )
        result = await self.session.execute(statement)
        return int(getattr(result, "rowcount", 0))
