"""The notifier worker: drains the email outbox through Resend. ``python -m notifier.worker``.

Each pass claims a batch of due mails (``FOR UPDATE SKIP LOCKED``, so any number of workers can
run), commits the claim, sends each mail with its idempotency key outside any transaction, and
records the attempt and the outcome:

* accepted -> ``sent`` (with Resend's message id);
* 429, 5xx, no answer -> ``failed`` and tried again after a capped exponential backoff with
  jitter (or Resend's ``Retry-After``), until ``NOTIFIER_MAX_ATTEMPTS`` -> ``dead``;
* any other 4xx (the mail itself is wrong) -> ``dead`` at once;
* the address was suppressed meanwhile -> ``suppressed``, not sent.

A worker that dies mid-send leaves its claim to lapse after ``NOTIFIER_SENDING_LEASE_S``; the
mail is then claimed again and resent under the same idempotency key, so it arrives once.

Between passes the worker waits ``NOTIFIER_POLL_INTERVAL_MS``, unless a mail is queued first: the
notifier announces each one with ``NOTIFY notifier_mail_queued`` in its own transaction, and the
worker LISTENs on a connection of its own (polling alone still delivers if that connection is
down), so a confirmation leaves as soon as its order does.

The loop does not wait for a pass's sends before it claims again: up to ``NOTIFIER_BATCH_SIZE``
mails are in hand at once, and a mail queued while others are being sent is claimed and sent
beside them (``NOTIFIER_CONCURRENCY`` at a time). Waiting for the whole batch held each new
confirmation behind the slowest send of the one before: at 16 buyers, 0.3-0.9 s.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import signal
import uuid
from pathlib import Path
from typing import Protocol

import structlog
import uvloop
from ember_shared.db import make_engine
from ember_shared.logging import configure_logging
from ember_shared.pg_listen import NotifyListener
from ember_shared.settings import service_settings
from ember_shared.tracing import instrument_engine, setup_tracing, span_from
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier.emails.repositories import ClaimedMail, claim_due, finish_attempt
from notifier.emails.sender import Mail, ResendSender, SendResult
from notifier.emails.services import MAIL_QUEUED, mail_key, opened
from notifier.models import AttemptOutcome, EmailStatus
from notifier.settings import NotifierSettings, load_settings

log = structlog.get_logger("notifier.worker")

#: A file the worker touches before every pass (deploy/kubernetes probes its age); unset: none.
HEARTBEAT_ENV = "NOTIFIER_WORKER_HEARTBEAT_FILE"


class Sender(Protocol):
    async def send(self, email: Mail) -> SendResult: ...


def backoff_seconds(
    attempts: int, settings: NotifierSettings, rng: random.Random | None = None
) -> float:
    """Delay before try ``attempts + 1``: base * 2^(attempts-1), capped, with "equal jitter"
    (half fixed, half random) so that mail failed together does not retry together."""
    ceiling = min(
        settings.backoff_cap_ms, settings.backoff_base_ms * (1 << max(0, min(attempts - 1, 40)))
    )
    half = ceiling / 2
    jitter: float = (rng or random).uniform(0, half)
    return (half + jitter) / 1000


class EmailWorker:
    def __init__(
        self,
        settings: NotifierSettings,
        engine: AsyncEngine,
        sender: Sender | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.sender: Sender = sender or ResendSender(settings)
        # The claim and the outcome are one statement each, so each is its own transaction:
        # without BEGIN and COMMIT around it (three round trips less each, per mail), on a
        # pooled connection of its own (an ORM session around each cost ~10 % of the worker's
        # CPU per mail, for two Core statements).
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.name = name or f"worker-{uuid.uuid4().hex[:8]}"
        self._limit = asyncio.Semaphore(settings.concurrency)
        self.mail_key = mail_key()
        #: Set by a NOTIFY of a queued mail: the wait between passes ends at once.
        self._queued = asyncio.Event()
        self._listener = NotifyListener(engine, MAIL_QUEUED, self._queued.set, retry_s=5.0)
        self._sending: set[asyncio.Task[None]] = set()
        #: Set when a send in hand finishes: a loop with no room left claims again then.
        self._slot_freed = asyncio.Event()

    async def run_once(self, *, limit: int | None = None, wait: bool = True) -> int:
        """Claim up to ``limit`` (the batch size) due mails and send them; how many it claimed.

        With ``wait=False`` the sends go on in the background (the loop's way: see
        :meth:`sending`); otherwise this returns once each claimed mail has its outcome."""
        claim_token = uuid.uuid4()
        now = dt.datetime.now(dt.UTC)
        async with self._autocommit.connect() as connection:
            claimed = await claim_due(
                connection,
                now=now,
                limit=self.settings.batch_size if limit is None else limit,
                lease_until=now + dt.timedelta(seconds=self.settings.sending_lease_s),
                claim_token=claim_token,
            )
        if not claimed:
            return 0
        deliveries = [self._deliver(email, claim_token, suppressed=flag) for email, flag in claimed]
        if wait:
            await asyncio.gather(*deliveries)
            return len(claimed)
        for delivery in deliveries:
            task = asyncio.create_task(delivery)
            self._sending.add(task)
            task.add_done_callback(self._sent)
        return len(claimed)

    @property
    def sending(self) -> int:
        """Mails claimed by the loop whose send has not finished yet."""
        return len(self._sending)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            # Postgres lost while recording the outcome: the claim lapses after its lease and
            # the mail is sent again under the same idempotency key (it arrives once).
            log.warning("email_outcome_not_recorded", error=f"{type(exc).__name__}: {exc}")

    async def _deliver(
        self, email: ClaimedMail, claim_token: uuid.UUID, *, suppressed: bool
    ) -> None:
        started = dt.datetime.now(dt.UTC)
        if suppressed:
            await self._finish(
                email,
                claim_token,
                started,
                SendResult(ok=False, error="The address is on the suppression list."),
                suppressed=True,
            )
            return
        to_send = opened(email, self.mail_key)
        if to_send is None:
            await self._finish(
                email,
                claim_token,
                started,
                SendResult(ok=False, error="The mail's sealed link does not open with our key."),
            )
            return
        async with self._limit:
            with span_from(
                email.traceparent or "",
                "send mail",
                kind=SpanKind.INTERNAL,
                attributes={
                    "ember.mail.template": email.template,
                    "ember.mail.attempt": email.attempts,
                },
            ):
                try:
                    result = await self.sender.send(to_send)
                except Exception as exc:
                    # A bug or an SDK surprise must cost one attempt, not the worker.
                    log.exception("email_send_crashed", email_id=str(email.id))
                    result = SendResult(
                        ok=False, error=f"{type(exc).__name__}: {exc}", retryable=True
                    )
        await self._finish(email, claim_token, started, result)

    async def _finish(
        self,
        email: ClaimedMail,
        claim_token: uuid.UUID,
        started: dt.datetime,
        result: SendResult,
        *,
        suppressed: bool = False,
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        values: dict[str, object] = {"updated_at": now}
        if suppressed:
            outcome = AttemptOutcome.SUPPRESSED
            values |= {"status": EmailStatus.SUPPRESSED.value, "last_error": result.error}
        elif result.ok:
            outcome = AttemptOutcome.SENT
            values |= {
                "status": EmailStatus.SENT.value,
                "provider_message_id": result.message_id,
                "sent_at": now,
                "last_error": None,
                # Sent: the live link has done its work and must not rest even sealed.
                "sealed_link": None,
            }
        elif (
            result.retryable
            and email.attempts - email.attempts_at_requeue < self.settings.max_attempts
        ):
            outcome = AttemptOutcome.RETRYABLE_ERROR
            delay = backoff_seconds(email.attempts - email.attempts_at_requeue, self.settings)
            if result.retry_after_s is not None:
                delay = min(max(delay, result.retry_after_s), self.settings.backoff_cap_ms / 1000)
            values |= {
                "status": EmailStatus.FAILED.value,
                "last_error": result.error,
                "next_attempt_at": now + dt.timedelta(seconds=delay),
            }
        else:
            outcome = (
                AttemptOutcome.RETRYABLE_ERROR
                if result.retryable
                else AttemptOutcome.PERMANENT_ERROR
            )
            values |= {"status": EmailStatus.DEAD.value, "last_error": result.error}
        async with self._autocommit.connect() as connection:
            kept = await finish_attempt(
                connection,
                email.id,
                claim_token,
                values,
                {
                    "email_id": email.id,
                    "attempt": email.attempts,
                    "started_at": started,
                    "duration_ms": result.duration_ms,
                    "outcome": outcome.value,
                    "status_code": result.status_code,
                    "error": result.error,
                    "provider_message_id": result.message_id,
                },
            )
        log.info(
            "email_attempt",
            email_id=str(email.id),
            template=email.template,
            attempt=email.attempts,
            outcome=outcome.value,
            status=values.get("status"),
            status_code=result.status_code,
            error=result.error,
            claim_kept=kept,
        )

    async def run(self, stop: asyncio.Event, heartbeat: Path | None = None) -> None:
        """Send until ``stop`` is set, then let the sends in hand finish.

        Each pass claims what there is room for (``NOTIFIER_BATCH_SIZE`` less the mails still
        being sent) and does not wait for those sends: a pass that filled the room is followed
        as soon as a send finishes, one that found less rests until a mail is queued.

        ``heartbeat`` is touched before every pass: the worker serves no HTTP, so a liveness
        probe (Kubernetes) tells a stuck worker from a busy one by the file's age."""
        pause = self.settings.poll_interval_ms / 1000
        failures = 0
        log.info("worker_started", worker=self.name, api_url=self.settings.resend_api_url)
        try:
            while not stop.is_set():
                if heartbeat is not None:
                    await asyncio.to_thread(heartbeat.touch)
                await self._listener.ensure()
                self._queued.clear()
                self._slot_freed.clear()
                room = self.settings.batch_size - len(self._sending)
                handled = 0
                if room > 0:
                    try:
                        handled = await self.run_once(limit=room, wait=False)
                        failures = 0
                    except Exception as exc:
                        # Postgres away: keep the process, back off (capped), carry on when it
                        # returns.
                        failures += 1
                        log.warning("worker_pass_failed", error=str(exc), failures=failures)
                full = len(self._sending) >= self.settings.batch_size
                if handled and handled >= room and not full:
                    continue  # the room was filled and some sends finished meanwhile
                wait = pause if failures == 0 else min(30.0, pause * 2**failures)
                await self._rest(stop, wait, woken=failures == 0, full=full)
        finally:
            if self._sending:
                # A claim dropped here would hold its mail back for the whole lease.
                await asyncio.gather(*list(self._sending), return_exceptions=True)
            await self._listener.close()
            closing = getattr(self.sender, "aclose", None)
            if closing is not None:
                await closing()
        log.info("worker_stopped", worker=self.name)

    async def _rest(
        self, stop: asyncio.Event, seconds: float, *, woken: bool, full: bool = False
    ) -> None:
        """Wait ``seconds``, or less: a stop request, or (when not backing off) a mail queued,
        or (when the room for sends in hand is full) one of those sends finishing."""
        waits = [asyncio.ensure_future(stop.wait())]
        if woken:
            waits.append(asyncio.ensure_future(self._queued.wait()))
        if full:
            waits.append(asyncio.ensure_future(self._slot_freed.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()


async def serve() -> None:
    service = service_settings("notifier")
    configure_logging("notifier-worker", service.app.log_level, service.app.log_format)
    setup_tracing("notifier-worker")
    settings = load_settings(service=service)
    engine = make_engine(service)
    instrument_engine(engine)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    heartbeat = os.environ.get(HEARTBEAT_ENV)
    try:
        await EmailWorker(settings, engine).run(stop, Path(heartbeat) if heartbeat else None)
    finally:
        await engine.dispose()


def main() -> None:
    # uvloop, as the services run under uvicorn: on asyncio's own loop the socket writes to
    # Postgres and Resend were a third of the worker's CPU per mail.
    uvloop.run(serve())


if __name__ == "__main__":
    main()
