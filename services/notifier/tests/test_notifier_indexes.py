"""Each mail's writes maintain no index that another index makes redundant (issue 12).

Every attempt a mail writes wrote ``ix_notifier_delivery_attempts_email_id`` as well as the
unique key (email_id, attempt), which leads with email_id and serves the same reads.
"""

from __future__ import annotations

import uuid

from ember_devkit.testing.plans import redundant_indexes
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def test_no_index_of_notifier_is_redundant(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        assert await redundant_indexes(connection, "notifier") == []


async def test_a_mails_attempts_are_still_read_by_an_index(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(
            line
            for (line,) in await connection.execute(
                text("EXPLAIN SELECT * FROM notifier.delivery_attempts WHERE email_id = :email"),
                {"email": uuid.uuid4()},
            )
        )
        await connection.rollback()
    assert "uq_delivery_attempts_email_id" in plan
