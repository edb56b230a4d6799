"""The worker's claim keeps Postgres' generic plan (issue 12).

Postgres plans a prepared statement for the values it is given until a plan made for any
values (generic) looks no dearer. With the claim's statuses bound, the generic plan could not
tell that the rows asked for are those of the partial index ``ix_pending_emails_due`` and read
the whole table (every mail ever sent), so every claim was planned again (~0.3 ms of Postgres'
CPU per mail on the bench's devstack, pg_stat_statements' ``plans`` = ``calls``).
``plans_made`` (``pg_prepared_statements``) says, per connection, how each was planned.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from ember_devkit.testing.plans import generic_kept, plans_made
from notifier.emails.repositories import PendingEmailRepository
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

pytestmark = pytest.mark.usefixtures("fresh")

RUNS = 8
STATEMENT = "WITH due AS%notifier.pending_emails%"
#: Mails sent long ago: a shop's table is mostly these, and none is due.
SENT = 3000


async def test_the_claim_keeps_the_generic_plan_on_a_table_of_sent_mails(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as connection:
        await connection.execute(
            text(
                "INSERT INTO notifier.pending_emails"
                " (id, idempotency_key, template, to_email, subject, html, text, status)"
                " SELECT gen_random_uuid(), 'sent:' || n, 'order_confirmation',"
                " 'buyer' || n || '@example.com', 'Your order', '<p>Thanks</p>', 'Thanks',"
                " 'sent' FROM generate_series(1, :sent) AS n"
            ),
            {"sent": SENT},
        )
        await connection.execute(text("ANALYZE notifier.pending_emails"))
        repository = PendingEmailRepository(
            session=AsyncSession(bind=connection), auto_commit=False
        )
        # Long ago: no mail is due then (one the consumer queues meanwhile is not taken).
        now = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        before = await plans_made(connection, STATEMENT)
        for _ in range(RUNS):
            claimed = await repository.claim_due(
                now=now, limit=10, lease_until=now, claim_token=uuid.uuid4()
            )
            assert claimed == []
        after = await plans_made(connection, STATEMENT)
        await connection.rollback()
    assert generic_kept(before, after, RUNS), (before, after)
