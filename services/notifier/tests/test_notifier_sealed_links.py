"""Live links (sign-up, reset) rest sealed: not in the queued body, not in the admin answers, and
gone once sent; the mail Resend receives carries the working link (issue 10, finding 2)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from ember_shared.events.contracts import PasswordResetRequested, SignUpRequested
from ember_shared.ids import new_id
from ember_shared.sealing import public_key, seal
from ember_shared.testing.tokens import TokenFactory
from litestar import Litestar
from litestar.testing import AsyncTestClient
from notifier.events import queue_password_reset, queue_sign_up_link
from notifier.worker import EmailWorker
from notifier_testkit import Standin, email_by_id, emails_to, envelope, handle, unique_address
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.usefixtures("fresh")


async def test_a_sealed_reset_link_is_opened_only_to_send_and_dropped_after(
    engine: AsyncEngine,
    worker: EmailWorker,
    resend_standin: Standin,
    client: AsyncTestClient[Litestar],
    tokens: TokenFactory,
) -> None:
    to, live = (
        unique_address("reset"),
        f"https://shop.example.com/reset-password?token={new_id().hex}",
    )
    token = live.rsplit("=", 1)[1]
    # Identity seals the link with the notifier's public key before it enters its outbox.
    data = PasswordResetRequested(
        user_id=new_id(),
        email=to,
        reset_url=seal(live, public_key(local=True)),
        expires_at="2030-01-01T12:30:00+00:00",
    )
    await handle(engine, queue_password_reset, envelope(data), data)
    (queued,) = await emails_to(engine, to)
    assert token not in queued.html + queued.text + (queued.sealed_link or "")

    admin, _ = tokens.admin()
    shown = await client.get(f"/api/admin/emails/{queued.id}", headers=tokens.bearer(admin))
    assert shown.status_code == 200
    assert token not in shown.text

    assert await worker.run_once() == 1
    (received,) = resend_standin.emails(to)
    assert live in received["text"]
    assert f'href="{live}"' in received["html"]
    sent = await email_by_id(engine, queued.id)
    assert sent.status == "sent"
    assert sent.sealed_link is None
    assert token not in sent.html + sent.text


async def test_a_clear_link_is_sealed_on_queueing_and_a_foreign_seal_never_sends(
    engine: AsyncEngine, worker: EmailWorker, resend_standin: Standin
) -> None:
    to = unique_address("signup")
    clear = SignUpRequested(
        email=to,
        name="Grace",
        verify_url="https://shop.example.com/verify-email?token=tok_clear_123",
        expires_at="2030-01-02T08:00:00+00:00",
    )
    await handle(engine, queue_sign_up_link, envelope(clear), clear)
    (queued,) = await emails_to(engine, to)
    assert queued.sealed_link
    assert "tok_clear_123" not in queued.sealed_link

    # Sealed for another key (a forger who knows nothing of ours): never opened, never sent.
    other = unique_address("forged")
    forged = SignUpRequested(
        email=other,
        verify_url=seal("https://evil.example/x", X25519PrivateKey.generate().public_key()),
        expires_at="2030-01-02T08:00:00+00:00",
    )
    await handle(engine, queue_sign_up_link, envelope(forged), forged)
    while await worker.run_once():
        pass
    (received,) = resend_standin.emails(to)
    assert "tok_clear_123" in received["text"]
    (dead,) = await emails_to(engine, other)
    assert dead.status == "dead"
    assert resend_standin.emails(other) == []
