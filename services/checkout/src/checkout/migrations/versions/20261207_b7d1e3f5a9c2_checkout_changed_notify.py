"""checkout_changed: a checkout's status change is NOTIFYed with its order id

A status read may wait for its checkout to change (``GET /api/checkout/session/{id}?wait=``,
the order page after Stripe's redirect). Each checkout process LISTENs on one connection and
wakes the reads waiting on that order; the NOTIFY is sent at commit, so a woken read sees the
change. A trigger, so that every writer of the status (the webhook, the reconciler, expiry,
refunds) tells the waiting reads without having to remember to.

Revision ID: b7d1e3f5a9c2
Revises: a4c8e2f6b1d3
Create Date: 2026-12-07 06:00:00.000000

"""

from collections.abc import Sequence

from alembic import op

revision: str = "b7d1e3f5a9c2"
down_revision: str | Sequence[str] | None = "a4c8e2f6b1d3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE OR REPLACE FUNCTION checkout.notify_checkout_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('ember_checkout_changed', NEW.order_id::text);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER checkout_changed
        AFTER UPDATE OF status ON checkout.checkout_sessions
        FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
        EXECUTE FUNCTION checkout.notify_checkout_changed()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS checkout_changed ON checkout.checkout_sessions")
    op.execute("DROP FUNCTION IF EXISTS checkout.notify_checkout_changed()")
