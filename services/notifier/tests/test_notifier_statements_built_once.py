"""A mail's statements are built once (issue 12): the queueing, the claim, the end of the claim
and the delivery report are each one object, reused for every mail
with its own parameters. Built per call, each was coerced, walked for its cache key and run
through the ORM's bulk-DML path every time: most of the notifier's and the worker's own CPU
per mail, outside the send itself."""

from __future__ import annotations

import json

import pytest
from ember_devkit.testing.statements import each_built_once, statement_objects_sent
from litestar import Litestar
from litestar.testing import AsyncTestClient
from notifier.worker import EmailWorker
from notifier_testkit import emails_to, queued_confirmation, unique_address
from sqlalchemy.ext.asyncio import AsyncEngine
from test_notifier_webhooks import PATH, signed_headers

pytestmark = pytest.mark.usefixtures("fresh")

KINDS = {"queue", "claim", "finish", "report"}


def kind_of(statement: str) -> str | None:
    if statement.startswith("WITH flags AS (SELECT EXISTS (SELECT notifier.suppressions.id"):
        return "queue"
    if statement.startswith("WITH due AS"):
        return "claim"
    if statement.startswith("WITH finished AS"):
        return "finish"
    if statement.startswith("WITH recorded AS (INSERT INTO notifier.webhook_events"):
        return "report"
    return None


async def test_a_mails_statements_are_built_once_for_every_mail(
    engine: AsyncEngine, worker: EmailWorker, client: AsyncTestClient[Litestar]
) -> None:
    first, second = unique_address("first"), unique_address("second")
    app_engine = client.app.state.db_engine
    with (
        statement_objects_sent(engine, kind_of) as sent,
        statement_objects_sent(app_engine, kind_of) as reported,
    ):
        for to in (first, second):
            await queued_confirmation(engine, to)
            assert await worker.run_once(limit=1) == 1
            (mail,) = await emails_to(engine, to)
            assert mail.status == "sent"
            assert mail.provider_message_id
            body = json.dumps(
                {"type": "email.delivered", "data": {"email_id": mail.provider_message_id}}
            ).encode()
            answer = await client.post(PATH, content=body, headers=signed_headers(body))
            assert answer.status_code == 200, answer.text

    assert each_built_once(sent | reported, KINDS, times=2), {k: len(v) for k, v in sent.items()}
    for to in (first, second):
        (mail,) = await emails_to(engine, to)
        assert mail.delivery_status == "delivered"
        assert mail.attempts == 1
