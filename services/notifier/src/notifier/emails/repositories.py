"""Every query on the outbox and its attempts (polar's rule: queries live here, nowhere else)."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from ember_shared.ids import new_id
from sqlalchemy import (
    Integer,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_scoped_session
from sqlalchemy.orm import selectinload

from notifier.models import DeliveryAttempt, EmailStatus, PendingEmail, Suppression
from notifier.suppressions.repositories import normalize_email

#: Statuses the worker picks up once ``next_attempt_at`` has come.
DUE_STATUSES = (EmailStatus.QUEUED.value, EmailStatus.FAILED.value)

_EMAILS = cast(Table, PendingEmail.__table__)
_ATTEMPTS = cast(Table, DeliveryAttempt.__table__)
_SUPPRESSIONS = cast(Table, Suppression.__table__)
#: What queueing a mail writes (the rest are the columns' server defaults): ``values`` of
#: :meth:`PendingEmailRepository.queue_once` less the id and the two counters, given here.
QUEUED_COLUMNS = (
    "id",
    "idempotency_key",
    "template",
    "to_email",
    "subject",
    "html",
    "text",
    "status",
    "attempts",
    "attempts_at_requeue",
    "last_error",
    "source_event_id",
    "source_event_type",
    "sealed_link",
    "traceparent",
)
#: What a try records (``attempt`` of :meth:`PendingEmailRepository.finish_attempt`, and an id).
ATTEMPT_COLUMNS = (
    "id",
    "email_id",
    "attempt",
    "started_at",
    "duration_ms",
    "outcome",
    "status_code",
    "error",
    "provider_message_id",
)


class ClaimedMail(NamedTuple):
    """A claimed mail, as the worker sends it and records its try: the columns it reads, as
    the claim returned them. A plain tuple, not a (detached) ``PendingEmail``: the ORM's
    instrumented ``__init__`` for the claimed row and again for the copy with its link opened
    was ~10 % of the worker's CPU per mail."""

    id: uuid.UUID
    idempotency_key: str
    template: str
    to_email: str
    subject: str
    html: str
    text: str
    attempts: int
    attempts_at_requeue: int
    next_attempt_at: dt.datetime
    sealed_link: str | None
    traceparent: str | None


#: What runs a statement: an autocommit connection (the worker's) or a (repository's) session.
Executor = AsyncConnection | AsyncSession | async_scoped_session[AsyncSession]


def _typed(table: Table, name: str, key: str | None = None) -> Any:
    return bindparam(key or name, type_=table.c[name].type)


# The statements of every mail (queued, claimed, finished) are built once on the tables with
# bound parameters: built per call on the mapped class, each was coerced, walked for its cache
# key and run through the ORM's bulk-DML path every time, ~half of the notifier's CPU per
# queued mail and of the worker's per mail outside the send itself (issue 12).
def _queue_once() -> Any:
    """Queueing a mail, one statement: the address's suppression read (``flags``), the mail
    inserted unless its idempotency key is there (``suppressed`` instead of ``queued`` if the
    address is on the list), and a NOTIFY (delivered with the commit) for a mail queued to be
    sent. Its id and status come back, nothing when the key was there already. A look first
    (the key, the suppression) and then the insert took two round trips per mail."""
    given = {name: _typed(_EMAILS, name, f"mail_{name}") for name in QUEUED_COLUMNS}
    queued: Any = literal_column(f"'{EmailStatus.QUEUED.value}'")
    flags = select(
        select(_SUPPRESSIONS.c.id)
        .where(_SUPPRESSIONS.c.email == _typed(_SUPPRESSIONS, "email", "suppressed_email"))
        .exists()
        .label("suppressed")
    ).cte("flags")
    # Only a mail that would be queued is held back; one already dead (an address that cannot
    # be mailed at all) stays dead with its reason.
    held = and_(given["status"] == queued, flags.c.suppressed)
    given["status"] = case(
        (held, literal_column(f"'{EmailStatus.SUPPRESSED.value}'")), else_=given["status"]
    )
    given["last_error"] = case(
        (held, bindparam("suppressed_error", SUPPRESSED_ERROR, type_=Text())),
        else_=given["last_error"],
    )
    added = (
        insert(_EMAILS)
        .from_select(list(QUEUED_COLUMNS), select(*given.values()).select_from(flags))
        .on_conflict_do_nothing(index_elements=[_EMAILS.c.idempotency_key])
        .returning(_EMAILS.c.id, _EMAILS.c.status)
        .cte("added")
    )
    channel = bindparam("channel", type_=String())
    notified = case((added.c.status == queued, func.pg_notify(channel, "")))
    return select(added.c.id, added.c.status, notified.label("notified")).select_from(added)


#: What a mail queued for an address on the suppression list keeps as its error.
SUPPRESSED_ERROR = "The address is on the suppression list."
_QUEUE_ONCE = _queue_once()


@functools.cache
def _finish(changed: tuple[str, ...]) -> Any:
    """The try recorded and the claim ended (``changed`` set, the claim cleared), one statement
    per set of changed columns (one per outcome), built once. Its parameters are named apart
    from the columns: one named as a column of an INSERT's or UPDATE's table is written to it."""
    recorded = (
        insert(_ATTEMPTS)
        .values({name: _typed(_ATTEMPTS, name, f"attempt_{name}") for name in ATTEMPT_COLUMNS})
        # A lapsed claim's late answer must not fail on the number its successor used.
        .on_conflict_do_nothing(index_elements=[_ATTEMPTS.c.email_id, _ATTEMPTS.c.attempt])
        .returning(_ATTEMPTS.c.id)
        .cte("recorded")
    )
    finished = (
        update(_EMAILS)
        .where(
            _EMAILS.c.id == _typed(_EMAILS, "id", "finished_id"),
            _EMAILS.c.claim_token == _typed(_EMAILS, "claim_token", "claim"),
        )
        .values(
            {name: _typed(_EMAILS, name, f"set_{name}") for name in changed}
            | {"claim_token": None, "locked_until": None}
        )
        .returning(_EMAILS.c.id)
        .cte("finished")
    )
    # Both CTEs run whatever the outer query reads (data-modifying CTEs always do).
    return select(
        select(func.count()).select_from(finished).scalar_subquery(),
        select(func.count()).select_from(recorded).scalar_subquery(),
    )


@functools.cache
def _claim() -> Any:
    """The claim, built once with bound parameters: it runs on every pass of every worker (every
    queued mail and every idle poll), and building it (and walking it for its cache key) each
    time was half of an idle worker's CPU."""
    now = bindparam("now", type_=_EMAILS.c.updated_at.type)
    # The statuses are written into the statement, not bound: Postgres plans a prepared
    # statement for any values (generic) only once that plan looks no dearer than the ones for
    # the values given, and with the statuses bound it cannot tell that the rows asked for are
    # those of ix_pending_emails_due (status IN queued, failed, sending): its generic plan read
    # the whole table (every mail ever sent), so each claim was planned again (~0.3 ms of
    # Postgres' CPU per mail). Written in, both plans read the partial index, and the generic
    # one is kept.
    due_statuses: list[Any] = [literal_column(f"'{status}'") for status in DUE_STATUSES]
    sending: Any = literal_column(f"'{EmailStatus.SENDING.value}'")
    due = (
        select(_EMAILS.c.id)
        .where(
            or_(
                _EMAILS.c.status.in_(due_statuses) & (_EMAILS.c.next_attempt_at <= now),
                (_EMAILS.c.status == sending) & (_EMAILS.c.locked_until < now),
            )
        )
        .order_by(_EMAILS.c.next_attempt_at)
        .limit(bindparam("limit", type_=Integer))
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    # Addresses are stored without spaces (ADDRESS_PATTERN) and suppressions lower-cased by the
    # same lower() (their CHECK), so this is normalize_email's comparison.
    suppressed = (
        select(_SUPPRESSIONS.c.id)
        .where(_SUPPRESSIONS.c.email == func.lower(_EMAILS.c.to_email))
        .exists()
        .label("suppressed")
    )
    # On the table, not the mapped class: the rows are made into ClaimedMails by claim_due,
    # without the ORM's loading (its compile state and identity map) on every pass.
    return (
        update(_EMAILS)
        .where(_EMAILS.c.id.in_(select(due.c.id)))
        .values(
            status=EmailStatus.SENDING.value,
            attempts=_EMAILS.c.attempts + 1,
            claim_token=bindparam("claim_token", type_=_EMAILS.c.claim_token.type),
            locked_until=bindparam("lease_until", type_=_EMAILS.c.locked_until.type),
            updated_at=now,
        )
        .returning(*(_EMAILS.c[name] for name in ClaimedMail._fields), suppressed)
    )


def _queued(values: dict[str, object]) -> dict[str, object]:
    """The parameters of a queued mail's INSERT: ``values``, a new id and no tries yet."""
    given = {name: values[name] for name in QUEUED_COLUMNS if name not in _NOT_GIVEN}
    return given | {"id": new_id(), "attempts": 0, "attempts_at_requeue": 0}


_NOT_GIVEN = frozenset({"id", "attempts", "attempts_at_requeue"})


async def claim_due(
    executor: Executor,
    *,
    now: dt.datetime,
    limit: int,
    lease_until: dt.datetime,
    claim_token: uuid.UUID,
) -> list[tuple[ClaimedMail, bool]]:
    """Take up to ``limit`` due mails for this worker, each with whether its address is
    suppressed now: one statement (on an autocommit connection it is the whole claim), where
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
    rows = (await executor.execute(_claim(), parameters)).all()
    claimed = [(ClaimedMail._make(row[:-1]), bool(row[-1])) for row in rows]
    return sorted(claimed, key=lambda pair: pair[0].next_attempt_at)


async def finish_attempt(
    executor: Executor,
    email_id: uuid.UUID,
    claim_token: uuid.UUID,
    values: dict[str, object],
    attempt: dict[str, object],
) -> bool:
    """Record one try (``attempt``) and the end of its claim (``values``) in one statement,
    which on an autocommit connection is the whole transaction: four round trips before.
    False when the claim had lapsed and another worker has it (the try is recorded
    anyway, as it was made)."""
    changed = tuple(sorted(values))
    parameters: dict[str, object] = {"finished_id": email_id, "claim": claim_token}
    parameters |= {f"attempt_{name}": attempt.get(name) for name in ATTEMPT_COLUMNS}
    parameters["attempt_id"] = new_id()
    parameters |= {f"set_{name}": values[name] for name in changed}
    kept, _ = (await executor.execute(_finish(changed), parameters)).one()
    return bool(kept)


async def queue_once(
    executor: Executor, values: dict[str, object], channel: str
) -> tuple[uuid.UUID, str] | None:
    """Insert a mail unless its idempotency key is already there, as ``suppressed`` if its
    address is on the suppression list now, with a NOTIFY on ``channel`` when it is queued to
    be sent: its id and status, or None if the key was there.

    ``values``: every one of :data:`QUEUED_COLUMNS` but the id and the two counters."""
    parameters = {f"mail_{name}": value for name, value in _queued(values).items()}
    parameters |= {
        "suppressed_email": normalize_email(str(values["to_email"])),
        "channel": channel,
    }
    row = (await executor.execute(_QUEUE_ONCE, parameters)).first()
    return (row.id, row.status) if row is not None else None


class PendingEmailRepository(SQLAlchemyAsyncRepository[PendingEmail]):
    model_type = PendingEmail

    async def queue_once(
        self, values: dict[str, object], channel: str
    ) -> tuple[uuid.UUID, str] | None:
        """:func:`queue_once` in this repository's session."""
        return await queue_once(self.session, values, channel)

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
    ) -> list[tuple[ClaimedMail, bool]]:
        """:func:`claim_due` in this repository's session."""
        return await claim_due(
            self.session, now=now, limit=limit, lease_until=lease_until, claim_token=claim_token
        )

    async def finish_attempt(
        self,
        email_id: uuid.UUID,
        claim_token: uuid.UUID,
        values: dict[str, object],
        attempt: dict[str, object],
    ) -> bool:
        """:func:`finish_attempt` in this repository's session."""
        return await finish_attempt(self.session, email_id, claim_token, values, attempt)

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
