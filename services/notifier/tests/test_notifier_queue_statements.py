"""Queueing a mail sends one statement (issue 12): one per confirmation at the benchmark's rate.

The address's suppression is read, the mail inserted unless its idempotency key is there, and
the worker woken (a NOTIFY delivered with the commit) by one statement: four round trips at
first, then two (a look at the key and the suppression, then the insert and the NOTIFY).
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


async def test_a_confirmation_is_queued_in_one_statement_and_once(engine: AsyncEngine) -> None:
    to = unique_address()
    data = order_paid(to)
    mail_event = envelope(data)

    assert await queue(engine, data, mail_event) == ["WITH"]
    # Again (a redelivery the runtime let through): the insert finds the key, nothing is
    # written, and the mail there is read for its answer.
    assert await queue(engine, data, mail_event) == ["WITH", "SELECT"]

    (email,) = await emails_to(engine, to)
    assert email.status == "queued"
    assert email.last_error is None
    assert email.idempotency_key == f"{mail_event.id}:order_confirmation"


async def test_a_suppressed_address_is_still_queued_as_suppressed(engine: AsyncEngine) -> None:
    to = unique_address()
    async with AsyncSession(engine) as session, session.begin():
        session.add(Suppression(email=to, reason="manual", source="test", note=""))
    data = order_paid(to.upper())

    assert await queue(engine, data, envelope(data)) == ["WITH"]
    (email,) = await emails_to(engine, to.upper())
    assert email.status == "suppressed"
    assert email.last_error == "The address is on the suppression list."
