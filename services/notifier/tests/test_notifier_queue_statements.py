"""Queueing a mail sends two statements (issue 12): one per confirmation at the benchmark's rate.

The mail already queued under the idempotency key and the address's suppression are read in
one statement, and the insert wakes the worker in the same statement (a NOTIFY delivered with
the commit): four round trips before.
"""

from __future__ import annotations

from typing import Any

from ember_shared.settings import service_settings
from notifier.events import queue_order_confirmation
from notifier.models import Suppression
from notifier_testkit import emails_to, envelope, order_paid, unique_address
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession


async def queue(engine: AsyncEngine, data: Any, mail_event: Any) -> list[str]:
    """Run the handler as the consumer does; the statements its session executed."""
    sent: list[str] = []
    async with AsyncSession(engine, expire_on_commit=False) as session:

        def record(state: Any) -> None:
            sent.append(str(state.statement).split(None, 1)[0].upper())

        event.listen(session.sync_session, "do_orm_execute", record)
        async with session.begin():
            await queue_order_confirmation(
                mail_event, data, session, service_settings("notifier").app.public_url
            )
    return sent


async def test_a_confirmation_is_queued_in_two_statements_and_once(engine: AsyncEngine) -> None:
    to = unique_address()
    data = order_paid(to)
    mail_event = envelope(data)

    assert await queue(engine, data, mail_event) == ["SELECT", "WITH"]
    # Again (a redelivery the runtime let through): the look finds it, nothing is written.
    assert await queue(engine, data, mail_event) == ["SELECT"]

    (email,) = await emails_to(engine, to)
    assert email.status == "queued"
    assert email.idempotency_key == f"{mail_event.id}:order_confirmation"


async def test_a_suppressed_address_is_still_queued_as_suppressed(engine: AsyncEngine) -> None:
    to = unique_address()
    async with AsyncSession(engine) as session, session.begin():
        session.add(Suppression(email=to, reason="manual", source="test", note=""))
    data = order_paid(to.upper())

    assert await queue(engine, data, envelope(data)) == ["SELECT", "INSERT"]
    (email,) = await emails_to(engine, to.upper())
    assert email.status == "suppressed"
