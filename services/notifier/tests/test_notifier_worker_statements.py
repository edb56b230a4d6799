"""A mail costs the worker two statements, each its own transaction (issue 12).

The claim reads each claimed address's suppression in the same statement, and the try and the
end of the claim are written by one statement: both without BEGIN and COMMIT around them. Four
statements before, in two transactions (eight round trips per confirmation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from ember_devkit.testing.statements import statements_sent, verb
from notifier.models import Suppression
from notifier.worker import EmailWorker
from notifier_testkit import (
    Standin,
    attempts_of,
    email_by_id,
    queued_confirmation,
    unique_address,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

pytestmark = pytest.mark.usefixtures("fresh")


@contextmanager
def _executions(engine: AsyncEngine, record: Callable[..., None]) -> Iterator[None]:
    """``record`` sees each statement run on ``engine`` (the worker's connections are its)."""
    event.listen(engine.sync_engine, "before_execute", record)
    try:
        yield
    finally:
        event.remove(engine.sync_engine, "before_execute", record)


def how_sent(statement: str, _parameters: Any, connection: Any) -> str:
    dbapi = connection.connection.dbapi_connection
    return f"{verb(statement)} in {'autocommit' if dbapi.autocommit else 'a transaction'}"


async def test_a_mail_is_claimed_and_finished_in_one_statement_each(
    engine: AsyncEngine, worker: EmailWorker, resend_standin: Standin
) -> None:
    to = unique_address()
    email = await queued_confirmation(engine, to)

    with statements_sent(engine, how_sent) as seen:
        assert await worker.run_once() == 1

    assert seen == ["WITH in autocommit", "WITH in autocommit"]
    sent = await email_by_id(engine, email.id)
    assert (sent.status, sent.attempts, sent.claim_token) == ("sent", 1, None)
    (attempt,) = await attempts_of(engine, email.id)
    assert (attempt.outcome, attempt.provider_message_id) == ("sent", sent.provider_message_id)
    assert len(resend_standin.emails(to)) == 1


async def test_the_claim_sees_a_suppression_made_after_queueing_whatever_the_case(
    engine: AsyncEngine, worker: EmailWorker, resend_standin: Standin
) -> None:
    to = unique_address()
    email = await queued_confirmation(engine, to.upper())
    async with AsyncSession(engine) as session, session.begin():
        session.add(Suppression(email=to, reason="complaint", source="test"))

    with statements_sent(engine, how_sent) as seen:
        assert await worker.run_once() == 1

    assert seen == ["WITH in autocommit", "WITH in autocommit"]
    assert (await email_by_id(engine, email.id)).status == "suppressed"
    assert [a.outcome for a in await attempts_of(engine, email.id)] == ["suppressed"]
    assert resend_standin.emails(to) == resend_standin.emails(to.upper()) == []


async def test_every_pass_runs_the_one_claim_built_once(
    engine: AsyncEngine, worker: EmailWorker, resend_standin: Standin
) -> None:
    # Every pass of every worker (each queued mail, each idle poll) claims: building the claim
    # and walking it for its cache key each time was half of an idle worker's CPU.
    claims: list[Any] = []

    def record(_connection: Any, statement: Any, *_: Any) -> None:
        if getattr(statement, "is_update", False):
            claims.append(statement)

    await queued_confirmation(engine, unique_address())
    await queued_confirmation(engine, unique_address())
    with _executions(engine, record):
        assert await worker.run_once(limit=1) == 1
        assert await worker.run_once(limit=1) == 1
        assert await worker.run_once(limit=1) == 0

    assert len(claims) == 3
    assert all(claim is claims[0] for claim in claims)
