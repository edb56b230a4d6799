"""The worker sends through the real ``resend`` SDK to the Resend stand-in over HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from ember_shared.events.contracts import UserRegistered
from ember_shared.ids import new_id
from ember_shared.sealing import private_key, unseal
from notifier.emails.rendering import fill_sealed_link
from notifier.emails.sender import ResendSender, SendResult
from notifier.events import queue_welcome
from notifier.models import PendingEmail
from notifier.settings import NotifierSettings
from notifier.worker import EmailWorker, backoff_seconds
from notifier_testkit import (
    Standin,
    attempts_of,
    email_by_id,
    emails_to,
    envelope,
    handle,
    queued_confirmation,
    unique_address,
    until,
)
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

pytestmark = pytest.mark.usefixtures("fresh")


async def drain(worker: EmailWorker, within: float = 10.0) -> None:
    """Run passes until no mail is waiting (queued, failed or sending), waiting out backoffs."""

    async def settled() -> bool:
        if await worker.run_once():
            return False
        async with AsyncSession(worker.engine) as session:
            waiting = await session.scalar(
                select(func.count())
                .select_from(PendingEmail)
                .where(PendingEmail.status.in_(["queued", "failed", "sending"]))
            )
        return waiting == 0

    await until(settled, within=within)


async def test_a_queued_mail_is_sent_once_with_its_idempotency_key(
    engine: AsyncEngine, worker: EmailWorker, resend_standin: Standin
) -> None:
    to = unique_address()
    email = await queued_confirmation(engine, to)

    assert await worker.run_once() == 1

    sent = await email_by_id(engine, email.id)
    assert sent.status == "sent"
    assert sent.attempts == 1
    assert sent.sent_at is not None
    assert sent.last_error is None
    (received,) = resend_standin.emails(to)
    assert received["id"] == sent.provider_message_id
    assert received["subject"] == email.subject
    # The stored bodies, with the guest's order link (sealed at rest) filled in.
    assert email.sealed_link
    html, text = fill_sealed_link(
        email.html, email.text, unseal(email.sealed_link, private_key(local=True))
    )
    assert received["html"] == html
    assert received["text"] == text
    assert received["from"] == worker.settings.from_email
    assert received["headers"]["X-Entity-Ref-ID"] == str(email.id)
    (attempt,) = await attempts_of(engine, email.id)
    assert attempt.outcome == "sent"
    assert attempt.status_code == 200
    assert attempt.provider_message_id == sent.provider_message_id
    # Nothing left to do.
    assert await worker.run_once() == 0


async def test_a_send_whose_answer_was_lost_does_not_arrive_twice(
    engine: AsyncEngine, worker: EmailWorker, resend_standin: Standin
) -> None:
    to = unique_address()
    email = await queued_confirmation(engine, to)
    # Resend takes the mail, but the answer never reaches us (a 500 on the way back).
    resend_standin.fail(1, 500, after_accept=True)

    await worker.run_once()
    failed = await email_by_id(engine, email.id)
    assert failed.status == "failed"
    assert len(resend_standin.emails(to)) == 1

    await drain(worker)

    sent = await email_by_id(engine, email.id)
    assert sent.status == "sent"
    assert sent.attempts == 2
    (received,) = resend_standin.emails(to)  # still one mail in the inbox
    assert received["id"] == sent.provider_message_id


async def test_injected_500s_are_retried_with_backoff_then_sent(
    engine: AsyncEngine, make_worker: Callable[..., EmailWorker], resend_standin: Standin
) -> None:
    worker = make_worker(backoff_base_ms=400, backoff_cap_ms=800)
    to = unique_address()
    email = await queued_confirmation(engine, to)
    resend_standin.fail(2, 500)

    await worker.run_once()
    first = await email_by_id(engine, email.id)
    assert first.status == "failed"
    assert "application_error" in (first.last_error or "")
    # Backoff after the first failure: between half and all of the base (400 ms).
    wait = (first.next_attempt_at - first.updated_at).total_seconds()
    assert 0.2 <= wait <= 0.4
    # Not due yet: a pass right now leaves it alone.
    assert await worker.run_once() == 0

    await drain(worker)

    sent = await email_by_id(engine, email.id)
    assert sent.status == "sent"
    assert sent.attempts == 3
    outcomes = [(a.attempt, a.outcome, a.status_code) for a in await attempts_of(engine, email.id)]
    assert outcomes == [(1, "retryable_error", 500), (2, "retryable_error", 500), (3, "sent", 200)]
    assert len(resend_standin.emails(to)) == 1


async def test_rate_limits_are_retried_honouring_retry_after(
    engine: AsyncEngine, make_worker: Callable[..., EmailWorker], resend_standin: Standin
) -> None:
    worker = make_worker(backoff_cap_ms=5000)
    to = unique_address()
    email = await queued_confirmation(engine, to)
    resend_standin.fail(1, 429, retry_after=2)

    await worker.run_once()

    row = await email_by_id(engine, email.id)
    assert row.status == "failed"
    assert "rate_limit_exceeded" in (row.last_error or "")
    # The backoff alone would be 40-80 ms; Resend asked for 2 s.
    assert 2.0 <= (row.next_attempt_at - row.updated_at).total_seconds() <= 2.1
    (attempt,) = await attempts_of(engine, email.id)
    assert attempt.status_code == 429
    assert attempt.outcome == "retryable_error"


async def test_a_mail_that_keeps_failing_is_dead_after_max_attempts(
    engine: AsyncEngine, worker: EmailWorker, resend_standin: Standin
) -> None:
    to = unique_address()
    email = await queued_confirmation(engine, to)
    resend_standin.fail(100, 503)

    await drain(worker)

    dead = await email_by_id(engine, email.id)
    assert dead.status == "dead"
    assert dead.attempts == worker.settings.max_attempts == 3
    assert [a.status_code for a in await attempts_of(engine, email.id)] == [503, 503, 503]
    assert resend_standin.emails(to) == []
    # Dead mail is not picked up again.
    resend_standin.fail(0)
    assert await worker.run_once() == 0


async def test_a_validation_error_is_permanent_and_dead_at_once(
    engine: AsyncEngine, make_worker: Callable[..., EmailWorker], resend_standin: Standin
) -> None:
    # Resend refuses a malformed sender with 422 validation_error: no retry can fix that mail.
    worker = make_worker(from_email="not an address")
    to = unique_address()
    email = await queued_confirmation(engine, to)

    await worker.run_once()

    dead = await email_by_id(engine, email.id)
    assert dead.status == "dead"
    assert dead.attempts == 1
    assert "validation_error" in (dead.last_error or "")
    (attempt,) = await attempts_of(engine, email.id)
    assert attempt.outcome == "permanent_error"
    assert attempt.status_code == 422
    assert resend_standin.emails(to) == []


async def test_an_unreachable_provider_is_retried(
    engine: AsyncEngine, make_worker: Callable[..., EmailWorker]
) -> None:
    # Nothing listens on port 9 of localhost: connection refused, no HTTP status at all.
    worker = make_worker(resend_api_url="http://127.0.0.1:9")
    email = await queued_confirmation(engine, unique_address())

    await worker.run_once()

    row = await email_by_id(engine, email.id)
    assert row.status == "failed"
    (attempt,) = await attempts_of(engine, email.id)
    assert attempt.outcome == "retryable_error"
    assert attempt.status_code is None


async def test_two_workers_never_send_the_same_mail(
    engine: AsyncEngine, make_worker: Callable[..., EmailWorker], resend_standin: Standin
) -> None:
    addresses = [unique_address("pair") for _ in range(12)]
    for to in addresses:
        await queued_confirmation(engine, to)
    first, second = make_worker(batch_size=3), make_worker(batch_size=3)

    async def work(worker: EmailWorker) -> int:
        handled = 0
        for _ in range(10):
            handled += await worker.run_once()
        return handled

    counts = await asyncio.gather(work(first), work(second))

    assert sum(counts) == 12
    for to in addresses:
        assert len(resend_standin.emails(to)) == 1
        (row,) = await emails_to(engine, to)
        assert row.status == "sent"
        assert row.attempts == 1


async def test_a_claim_left_by_a_dead_worker_is_taken_again_after_its_lease(
    engine: AsyncEngine, worker: EmailWorker, resend_standin: Standin
) -> None:
    to = unique_address()
    email = await queued_confirmation(engine, to)
    # A worker claimed it and died mid-send: "sending", with a lease that has run out.
    async with AsyncSession(engine) as session, session.begin():
        await session.execute(
            update(PendingEmail)
            .where(PendingEmail.id == email.id)
            .values(
                status="sending",
                attempts=1,
                claim_token=uuid.uuid4(),
                locked_until=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
            )
        )

    assert await worker.run_once() == 1

    row = await email_by_id(engine, email.id)
    assert row.status == "sent"
    assert row.attempts == 2
    assert len(resend_standin.emails(to)) == 1


async def test_a_live_claim_is_left_alone(engine: AsyncEngine, worker: EmailWorker) -> None:
    email = await queued_confirmation(engine, unique_address())
    async with AsyncSession(engine) as session, session.begin():
        await session.execute(
            update(PendingEmail)
            .where(PendingEmail.id == email.id)
            .values(
                status="sending",
                claim_token=uuid.uuid4(),
                locked_until=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1),
            )
        )

    assert await worker.run_once() == 0


async def test_an_address_suppressed_after_queueing_is_not_sent(
    engine: AsyncEngine, worker: EmailWorker, resend_standin: Standin
) -> None:
    from notifier.models import Suppression

    to = unique_address()
    email = await queued_confirmation(engine, to)
    async with AsyncSession(engine) as session, session.begin():
        session.add(Suppression(email=to, reason="complaint", source="test"))

    await worker.run_once()

    row = await email_by_id(engine, email.id)
    assert row.status == "suppressed"
    assert resend_standin.emails(to) == []
    assert [a.outcome for a in await attempts_of(engine, email.id)] == ["suppressed"]


async def test_the_worker_loop_wakes_promptly_and_stops_on_request(
    engine: AsyncEngine, worker: EmailWorker, resend_standin: Standin, tmp_path: Path
) -> None:
    stop = asyncio.Event()
    heartbeat = tmp_path / "heartbeat"
    loop = asyncio.create_task(worker.run(stop, heartbeat))
    try:
        await asyncio.sleep(0.1)
        # Touched on every pass (the Kubernetes liveness probe reads its age).
        first = heartbeat.stat().st_mtime_ns

        async def beat_again() -> bool:
            return heartbeat.stat().st_mtime_ns > first

        await until(beat_again, within=2.0)
        to = unique_address()
        data = UserRegistered(user_id=new_id(), email=to, name="Loop")
        await handle(engine, queue_welcome, envelope(data), data)

        async def delivered() -> bool:
            return len(resend_standin.emails(to)) == 1

        # The poll interval is 20 ms here: the mail goes out well within a second.
        await until(delivered, within=2.0)
    finally:
        stop.set()
        await asyncio.wait_for(loop, timeout=5)


async def test_a_queued_mail_wakes_a_resting_worker(
    engine: AsyncEngine, make_worker: Callable[..., EmailWorker], resend_standin: Standin
) -> None:
    """Between passes the worker rests a whole poll interval (a minute here), unless a mail is
    queued: its NOTIFY, sent when the queueing transaction commits, wakes the worker at once."""
    worker = make_worker(poll_interval_ms=60_000)
    passes: list[int] = []
    one_pass = worker.run_once

    async def counted(**kwargs: Any) -> int:
        handled = await one_pass(**kwargs)
        passes.append(handled)
        return handled

    worker.run_once = counted  # type: ignore[method-assign]
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run(stop))
    try:

        async def resting() -> bool:
            return bool(passes)

        await until(resting, within=10.0)  # the first pass found nothing: a minute's rest
        to = unique_address()
        data = UserRegistered(user_id=new_id(), email=to, name="Woken")
        await handle(engine, queue_welcome, envelope(data), data)

        async def delivered() -> bool:
            return len(resend_standin.emails(to)) == 1

        await until(delivered, within=10.0)

        async def second_pass_done() -> bool:
            return len(passes) >= 2

        await until(second_pass_done, within=10.0)
        assert passes == [0, 1]  # woken once for the one mail, never polled
    finally:
        stop.set()
        await asyncio.wait_for(loop, timeout=5)


class HeldSender:
    """Sends through the real one, but holds the mails to ``held`` until released."""

    def __init__(self, real: ResendSender, held: str) -> None:
        self.real = real
        self.held = held
        self.release = asyncio.Event()
        self.started: list[str] = []

    async def send(self, email: PendingEmail) -> SendResult:
        self.started.append(email.to_email)
        if email.to_email == self.held:
            await self.release.wait()
        return await self.real.send(email)


async def test_a_mail_queued_during_a_slow_send_is_sent_without_waiting_for_it(
    engine: AsyncEngine, base_settings: NotifierSettings, resend_standin: Standin
) -> None:
    """The loop claims again while a pass's sends are in hand: a confirmation queued while
    another mail's send hangs (a slow provider answer) goes out beside it, not after it."""
    slow, quick = unique_address(), unique_address()
    sender = HeldSender(ResendSender(base_settings), held=slow)
    worker = EmailWorker(replace(base_settings, poll_interval_ms=60_000), engine, sender)
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run(stop))
    try:
        await queued_confirmation(engine, slow)

        async def slow_send_started() -> bool:
            return slow in sender.started

        await until(slow_send_started, within=10.0)
        await queued_confirmation(engine, quick)

        async def quick_delivered() -> bool:
            return len(resend_standin.emails(quick)) == 1

        await until(quick_delivered, within=10.0)
        assert resend_standin.emails(slow) == []  # still held: the quick one did not wait

        async def only_the_slow_one_in_hand() -> bool:
            return worker.sending == 1

        await until(only_the_slow_one_in_hand, within=10.0)
        sender.release.set()

        async def slow_delivered() -> bool:
            return len(resend_standin.emails(slow)) == 1

        await until(slow_delivered, within=10.0)
    finally:
        sender.release.set()
        stop.set()
        await asyncio.wait_for(loop, timeout=5)
    assert (await emails_to(engine, slow))[0].status == "sent"
    assert (await emails_to(engine, quick))[0].status == "sent"


async def test_a_stopped_loop_finishes_the_sends_in_hand(
    engine: AsyncEngine, base_settings: NotifierSettings, resend_standin: Standin
) -> None:
    to = unique_address()
    sender = HeldSender(ResendSender(base_settings), held=to)
    worker = EmailWorker(base_settings, engine, sender)
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run(stop))
    await queued_confirmation(engine, to)

    async def started() -> bool:
        return to in sender.started

    await until(started, within=10.0)
    stop.set()
    sender.release.set()
    await asyncio.wait_for(loop, timeout=10)
    # Not left "sending" until its lease lapses.
    assert (await emails_to(engine, to))[0].status == "sent"
    assert len(resend_standin.emails(to)) == 1


async def test_sends_share_one_connection_to_resend(base_settings: NotifierSettings) -> None:
    """The SDK's own transport opened a client (TLS context, connection) for every mail."""
    connections = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                break
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            body = b'{"id": "%s"}' % uuid.uuid4().hex.encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sender = ResendSender(replace(base_settings, resend_api_url=f"http://127.0.0.1:{port}"))
    try:
        for n in range(3):
            result = await sender.send(
                PendingEmail(
                    id=new_id(),
                    to_email=f"kept-{n}@example.com",
                    subject="Kept",
                    html="<p>kept</p>",
                    text="kept",
                    template="welcome",
                    idempotency_key=f"kept-{uuid.uuid4()}",
                )
            )
            assert result.ok, result.error
        assert connections == 1
    finally:
        await sender.aclose()
        server.close()


def test_backoff_is_exponential_capped_and_jittered() -> None:
    settings = NotifierSettings(
        resend_api_key="re_x",
        resend_api_url="http://x",
        backoff_base_ms=2000,
        backoff_cap_ms=600_000,
    )
    rng = random.Random(7)
    for attempts, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (6, 64.0), (10, 600.0), (40, 600.0)]:
        samples = [backoff_seconds(attempts, settings, rng) for _ in range(200)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples), attempts
        assert len({round(s, 6) for s in samples}) > 100  # jittered, not one fixed delay


def test_worker_settings_are_validated() -> None:
    from notifier.settings import SettingsError

    good: dict[str, Any] = {"resend_api_key": "re_x", "resend_api_url": "http://x"}
    NotifierSettings(**good).validate(local=True)
    with pytest.raises(SettingsError):
        NotifierSettings(**good, max_attempts=0).validate(local=True)
    with pytest.raises(SettingsError):
        NotifierSettings(**good, backoff_base_ms=5000, backoff_cap_ms=100).validate(local=True)
    with pytest.raises(SettingsError):
        NotifierSettings(**good, webhook_secret="plain").validate(local=True)
    with pytest.raises(SettingsError, match="RESEND_WEBHOOK_SECRET"):
        NotifierSettings(**good).validate(local=False)


def test_empty_settings_mean_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "RESEND_API_KEY",
        "RESEND_API_URL",
        "NOTIFIER_FROM_EMAIL",
        "RESEND_WEBHOOK_SECRET",
    ):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("EMBER_PORT_OFFSET", "7")
    monkeypatch.delenv("RESEND_STANDIN_URL", raising=False)
    local = NotifierSettings()
    assert local.uses_standin
    assert local.resend_api_url == "http://127.0.0.1:8209"
    assert local.from_email == "Ember Coffee <orders@ember.local>"
    assert local.signing_secret.startswith("whsec_")

    monkeypatch.setenv("RESEND_API_KEY", "re_live_123")
    real = NotifierSettings()
    assert real.resend_api_url == "https://api.resend.com"
    assert not real.uses_standin


def test_the_worker_process_runs_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    # As the services do under uvicorn: asyncio's own loop spent a third of the worker's CPU
    # per mail in its socket writes.
    import uvloop
    from notifier import worker as worker_module

    loops: list[object] = []

    async def serve() -> None:
        loops.append(asyncio.get_running_loop())

    monkeypatch.setattr(worker_module, "serve", serve)
    # The tests' own policy (the plugin's) is uvloop's: the process starts with asyncio's.
    policy = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        worker_module.main()
    finally:
        asyncio.set_event_loop_policy(policy)
    assert len(loops) == 1
    assert isinstance(loops[0], uvloop.Loop)
