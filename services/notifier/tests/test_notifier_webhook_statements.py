"""A delivery report (one Resend webhook per mail sent) is one statement (issue 12): the svix id
is recorded and the mail marked by one data-modifying CTE, where an insert and an update took
two round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ember_devkit.testing.statements import statements_sent, verb
from ember_shared.events.contracts import UserRegistered
from ember_shared.ids import new_id
from litestar import Litestar
from litestar.testing import AsyncTestClient
from notifier.events import queue_welcome
from notifier.models import WebhookEvent
from notifier.worker import EmailWorker
from notifier_testkit import email_by_id, emails_to, envelope, handle, unique_address
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from test_notifier_webhooks import PATH, signed_headers

pytestmark = pytest.mark.usefixtures("fresh")


def on_webhooks_or_mail(statement: str, _parameters: Any, _connection: Any) -> str | None:
    if "webhook_events" in statement or "pending_emails" in statement:
        return verb(statement)
    return None


def how_sent(statement: str, parameters: Any, connection: Any) -> str | None:
    """The statement's verb and whether it ran in autocommit or in a transaction (BEGIN and
    COMMIT are sent by the driver around it, not as statements of their own)."""
    name = on_webhooks_or_mail(statement, parameters, connection)
    if name is None:
        return None
    dbapi = connection.connection.dbapi_connection
    return f"{name} in {'autocommit' if dbapi.autocommit else 'a transaction'}"


async def test_a_delivery_report_is_recorded_and_applied_in_one_statement_once(
    client: AsyncTestClient[Litestar], engine: AsyncEngine, worker: EmailWorker
) -> None:
    to = unique_address()
    data = UserRegistered(user_id=new_id(), email=to, name="Reported")
    await handle(engine, queue_welcome, envelope(data), data)
    assert await worker.run_once() == 1
    (sent,) = await emails_to(engine, to)
    assert sent.provider_message_id
    body = json.dumps(
        {"type": "email.delivered", "data": {"email_id": sent.provider_message_id}}
    ).encode()
    headers = signed_headers(body)
    app_engine = client.app.state.db_engine

    with statements_sent(app_engine, on_webhooks_or_mail) as seen:
        response = await client.post(PATH, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["duplicate"] is False
    assert seen == ["WITH"]
    marked = await email_by_id(engine, sent.id)
    assert marked.delivery_status == "delivered"
    assert marked.delivery_updated_at is not None

    # The same svix id again: acknowledged, nothing changes (not even the report's time; the
    # stand-in's own report of this mail may have come first, and is kept as well).
    with statements_sent(app_engine, on_webhooks_or_mail) as seen:
        again = await client.post(PATH, content=body, headers=headers)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert seen == ["WITH"]
    assert (await email_by_id(engine, sent.id)).delivery_updated_at == marked.delivery_updated_at
    async with AsyncSession(engine) as session:
        recorded = await session.scalar(
            select(func.count())
            .select_from(WebhookEvent)
            .where(WebhookEvent.svix_id == headers["svix-id"])
        )
    assert recorded == 1


async def test_a_delivery_report_is_its_own_transaction_without_begin_and_commit(
    client: AsyncTestClient[Litestar], engine: AsyncEngine, worker: EmailWorker
) -> None:
    """The report is one statement: in autocommit it is the whole transaction, where the
    request's transaction cost a BEGIN and a COMMIT around it (two round trips per mail)."""
    to = unique_address()
    data = UserRegistered(user_id=new_id(), email=to, name="Autocommitted")
    await handle(engine, queue_welcome, envelope(data), data)
    assert await worker.run_once() == 1
    (sent,) = await emails_to(engine, to)
    body = json.dumps(
        {"type": "email.delivered", "data": {"email_id": sent.provider_message_id}}
    ).encode()
    headers = signed_headers(body)

    with statements_sent(client.app.state.db_engine, how_sent) as seen:
        response = await client.post(PATH, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert seen == ["WITH in autocommit"]
    assert (await email_by_id(engine, sent.id)).delivery_status == "delivered"

    with statements_sent(client.app.state.db_engine, how_sent) as seen:
        again = await client.post(PATH, content=body, headers=headers)
    assert again.json()["duplicate"] is True
    assert seen == ["WITH in autocommit"]
