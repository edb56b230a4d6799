"""Live links (sign-up, reset, a guest's order) rest sealed: not in the queued body, not in the admin answers, and
gone once sent; the mail Resend receives carries the working link (issue 10, finding 2)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from ember_devkit.testing.tokens import TokenFactory
from ember_shared.events.contracts import (
    OrderDelivered,
    OrderRefunded,
    OrderShipped,
    PasswordResetRequested,
    SignUpRequested,
)
from ember_shared.ids import new_id
from ember_shared.sealing import public_key, seal
from litestar import Litestar
from litestar.testing import AsyncTestClient
from notifier.events import (
    queue_delivery_notice,
    queue_order_confirmation,
    queue_password_reset,
    queue_refund_notice,
    queue_shipment_notice,
    queue_sign_up_link,
)
from notifier.worker import EmailWorker
from notifier_testkit import (
    Standin,
    email_by_id,
    emails_to,
    envelope,
    guest_order_link,
    handle,
    order_paid,
    unique_address,
)
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


async def test_a_guests_order_link_rests_sealed_in_every_order_mail(
    engine: AsyncEngine,
    worker: EmailWorker,
    resend_standin: Standin,
    client: AsyncTestClient[Litestar],
    tokens: TokenFactory,
) -> None:
    """Confirmation, shipment, delivery and refund: orders seals the guest's link; the stored
    mails, the admin answers and the rows once sent never hold its token, Resend gets it."""
    to = unique_address("guest-order")
    paid = order_paid(to)
    live = guest_order_link(paid.order_id)
    token = live.rsplit("=", 1)[1]
    sealed = paid.sealed_order_url
    plain = f"https://shop.example.com/order/{paid.order_id}"
    common = {"order_id": paid.order_id, "email": to, "order_url": plain}
    shipped = OrderShipped(
        **common, carrier="UPS", tracking_number="1Z999AA1", sealed_order_url=sealed
    )
    arrived = OrderDelivered(
        **common,
        carrier="UPS",
        tracking_number="1Z999AA1",
        delivered_at="2030-01-04T15:20:00Z",
        sealed_order_url=sealed,
    )
    refunded = OrderRefunded(
        **common,
        amount=500,
        amount_refunded=500,
        total=5795,
        currency="USD",
        fully_refunded=False,
        sealed_order_url=sealed,
    )
    await handle(engine, queue_order_confirmation, envelope(paid), paid)
    await handle(engine, queue_shipment_notice, envelope(shipped), shipped)
    await handle(engine, queue_delivery_notice, envelope(arrived), arrived)
    await handle(engine, queue_refund_notice, envelope(refunded), refunded)
    queued = await emails_to(engine, to)
    assert len(queued) == 4
    admin, _ = tokens.admin()
    listed = await client.get("/api/admin/emails", params={"to": to}, headers=tokens.bearer(admin))
    assert listed.status_code == 200
    assert token not in listed.text
    for email in queued:
        assert email.sealed_link
        assert token not in email.html + email.text + email.sealed_link
        shown = await client.get(f"/api/admin/emails/{email.id}", headers=tokens.bearer(admin))
        assert shown.status_code == 200
        assert token not in shown.text

    while await worker.run_once():
        pass
    received = resend_standin.emails(to)
    assert len(received) == 4
    for mail in received:
        assert live in mail["text"], mail["subject"]
        assert f'href="{live}"' in mail["html"]
    for email in queued:
        sent = await email_by_id(engine, email.id)
        assert sent.status == "sent"
        assert sent.sealed_link is None
        assert token not in sent.html + sent.text
