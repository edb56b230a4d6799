"""Rules of the outbox: queueing a mail (from event handlers) and what staff may do with one.

Nothing here sends mail: only the worker does (invariant 8). Nothing here commits either: the
event handler or the request owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from ember_shared.pagination import window
from ember_shared.problems import Problem, not_found
from ember_shared.sealing import SealError, is_sealed, private_key, seal, unseal
from ember_shared.settings import service_settings
from ember_shared.tracing import current_traceparent
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.emails.rendering import (
    SEALED_CONTEXT_KEY,
    Template,
    fill_sealed_link,
    render,
    safe_link,
)
from notifier.emails.repositories import ClaimedMail, PendingEmailRepository, queue_once
from notifier.models import ADDRESS_PATTERN, MAX_EMAIL_LENGTH, EmailStatus, PendingEmail
from notifier.suppressions.repositories import SuppressionRepository

_ADDRESS = re.compile(ADDRESS_PATTERN)
#: Staff may send these back to the queue.
RETRYABLE_STATUSES = (
    EmailStatus.DEAD.value,
    EmailStatus.FAILED.value,
    EmailStatus.SUPPRESSED.value,
)


def valid_address(address: str) -> bool:
    return len(address) <= MAX_EMAIL_LENGTH and bool(_ADDRESS.match(address))


def mail_key() -> X25519PrivateKey:
    return private_key(local=service_settings("notifier").app.is_local)


def sealed_link(link: str) -> str:
    """A producer's sealed link as it came, or a clear one sealed now: none rests in clear."""
    return link if is_sealed(link) else seal(link, mail_key().public_key())


def opened(email: ClaimedMail, key: X25519PrivateKey) -> ClaimedMail | None:
    """A copy of ``email`` with its live link in the bodies, to hand to Resend (the stored row
    keeps the placeholder); None when the link does not open or is not http(s)."""
    if not email.sealed_link:
        return email
    try:
        link = safe_link(unseal(email.sealed_link, key), "")
    except SealError:
        return None
    if not link:
        return None
    html, text = fill_sealed_link(email.html, email.text, link)
    return email._replace(html=html, text=text)


#: The Postgres NOTIFY channel a queued mail is announced on (the worker LISTENs to it).
MAIL_QUEUED = "notifier_mail_queued"


@dataclass(frozen=True)
class Queued:
    email_id: uuid.UUID | None
    status: str
    #: False when the idempotency key was already there (a redelivered event): nothing added.
    created: bool


async def queue_email(
    session: AsyncSession,
    *,
    template: Template,
    to: str,
    context: dict[str, Any],
    idempotency_key: str,
    source_event_id: uuid.UUID | None = None,
    source_event_type: str | None = None,
) -> Queued:
    """Render a mail and put it in the outbox, once per idempotency key.

    A suppressed address is recorded as ``suppressed`` (never sent); an address that cannot be
    mailed at all is recorded ``dead`` with the reason, so staff see it instead of a silent loss.
    """
    address = to.strip()
    # Rendered (and its link sealed) before the insert knows whether the event's mail is there
    # already: a redelivery the runtime lets through is rare, and a look first cost every mail
    # a round trip.
    context = dict(context)
    live_link = context.pop(SEALED_CONTEXT_KEY, None)
    rendered = render(template, context)
    status, error = EmailStatus.QUEUED.value, None
    if not valid_address(address):
        status, error = (
            EmailStatus.DEAD.value,
            "The recipient address is not a valid email address.",
        )
    values: dict[str, object] = {
        "idempotency_key": idempotency_key,
        "template": template.value,
        "to_email": address[:MAX_EMAIL_LENGTH],
        "subject": rendered.subject,
        "html": rendered.html,
        "text": rendered.text,
        "status": status,
        "last_error": error,
        "source_event_id": source_event_id,
        "source_event_type": source_event_type,
        "sealed_link": sealed_link(live_link) if live_link else None,
        "traceparent": current_traceparent()[:100] or None,
    }
    # A suppressed address is recorded ``suppressed`` by the statement itself; a queued mail
    # wakes a waiting worker with the commit, so it is sent now, not at the worker's next poll.
    # The statement alone, without a repository (each builds its base statement as it is made).
    added = await queue_once(session, values, MAIL_QUEUED)
    if added is None:
        # Already there: a redelivered event, or a concurrent delivery of it won the insert.
        emails = PendingEmailRepository(session=session, auto_commit=False)
        there = await emails.find_by_key(idempotency_key)
        return Queued(there.id if there else None, there.status if there else status, created=False)
    return Queued(added[0], added[1], created=True)


class EmailAdminService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.emails = PendingEmailRepository(session=session, auto_commit=False)
        self.suppressions = SuppressionRepository(session=session, auto_commit=False)

    async def page(
        self, *, status: str | None, to_email: str | None, page: int, page_size: int
    ) -> tuple[Sequence[PendingEmail], int]:
        return await self.emails.page(status=status, to_email=to_email, **window(page, page_size))

    async def get(self, email_id: uuid.UUID) -> PendingEmail:
        email = await self.emails.with_attempts(email_id)
        if email is None:
            raise not_found("email")
        return email

    async def retry(self, email_id: uuid.UUID) -> PendingEmail:
        email = await self.get(email_id)
        if email.status not in RETRYABLE_STATUSES:
            raise Problem(
                409,
                "email-not-retryable",
                f"Only dead, failed or suppressed mail can be retried; this one is {email.status}.",
                status_now=email.status,
            )
        if not valid_address(email.to_email):
            raise Problem(409, "email-invalid-recipient", "The recipient address is not valid.")
        if await self.suppressions.is_suppressed(email.to_email):
            raise Problem(
                409,
                "email-suppressed",
                "The address is on the suppression list: remove it from the list first.",
            )
        now = dt.datetime.now(dt.UTC)
        if not await self.emails.requeue(email_id, RETRYABLE_STATUSES, now):
            raise Problem(409, "email-not-retryable", "The mail changed meanwhile; reload it.")
        return await self.get(email_id)
