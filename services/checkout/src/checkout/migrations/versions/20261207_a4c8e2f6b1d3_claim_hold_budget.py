"""claim_hold_budget: a checkout's stock-hold budget decided and claimed in one statement

The budget used to be a transaction of its own: the subjects' advisory locks, the claim, the
shipping rates, COMMIT. Every starting checkout from one address or email (a shared NAT, or the
benchmark's buyers) waited on those locks while the holder's transaction waited for its
service's event loop to send the next statement: under load, three turns of a busy loop per
start, all starts in a row. As a function called outside a transaction, the locks are taken and
released inside one statement, and no client round trip is ever made while they are held.

Revision ID: a4c8e2f6b1d3
Revises: 9d2f4b6a8e15
Create Date: 2026-12-07 00:00:00.000000

"""

from collections.abc import Sequence

from alembic import op

revision: str = "a4c8e2f6b1d3"
down_revision: str | Sequence[str] | None = "9d2f4b6a8e15"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# VOLATILE: in READ COMMITTED each statement of the function takes a new snapshot, so the holds
# are read after the locks are had, and see everything the previous holder of a lock committed
# (a single SQL statement would read with the snapshot it started with, before it waited).
# The locks are taken in one order (the subjects' code points, as Python's sorted() put them)
# by every start, so two never wait on each other.
CREATE = """
CREATE OR REPLACE FUNCTION checkout.claim_hold_budget(
    p_claim_id uuid,
    p_cart uuid,
    p_ip varchar,
    p_email varchar,
    p_units integer,
    p_expires_at timestamptz,
    p_now timestamptz,
    p_most_per_client integer,
    p_most_per_email integer,
    p_most_units integer
) RETURNS timestamptz
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    subject text;
    refused_until timestamptz;
BEGIN
    FOR subject IN
        SELECT DISTINCT s COLLATE "C" FROM unnest(ARRAY[coalesce(p_ip, ''), lower(p_email)]) AS s
         WHERE s <> '' ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('checkout-budget:' || subject, 0));
    END LOOP;

    -- The subjects' lapsed claims (of requests that died before settling them).
    DELETE FROM checkout.hold_claims
     WHERE expires_at <= p_now AND (lower(email) = lower(p_email) OR client_ip = p_ip);

    -- The open unexpired checkouts and live claims of the address or the email, but for this
    -- cart's own (its checkout replaces them, one at a time under its cart lock); per subject,
    -- the earliest lapse of the first one that has no room for this start.
    WITH holds AS (
        SELECT s.client_ip, lower(s.email) AS email,
               (SELECT coalesce(sum((l ->> 'quantity')::int), 0)
                  FROM jsonb_array_elements(s.lines) AS l) AS units,
               s.expires_at
          FROM checkout.checkout_sessions AS s
         WHERE s.status = 'open' AND s.expires_at > p_now
           AND (s.cart_id IS NULL OR s.cart_id <> p_cart)
           AND (lower(s.email) = lower(p_email) OR s.client_ip = p_ip)
        UNION ALL
        SELECT c.client_ip, lower(c.email), c.units, c.expires_at
          FROM checkout.hold_claims AS c
         WHERE c.expires_at > p_now AND c.cart_id <> p_cart
           AND (lower(c.email) = lower(p_email) OR c.client_ip = p_ip)
    ), subjects AS (
        SELECT 1 AS rank, count(*) AS open, coalesce(sum(units), 0) AS units,
               min(expires_at) AS first_lapse, p_most_per_client AS most
          FROM holds WHERE coalesce(p_ip, '') <> '' AND client_ip = p_ip
        UNION ALL
        SELECT 2, count(*), coalesce(sum(units), 0), min(expires_at), p_most_per_email
          FROM holds WHERE email = lower(p_email)
    )
    SELECT first_lapse INTO refused_until
      FROM subjects
     WHERE open > 0 AND (open >= most OR units + p_units > p_most_units)
     ORDER BY rank
     LIMIT 1;

    IF refused_until IS NULL THEN
        INSERT INTO checkout.hold_claims (id, cart_id, client_ip, email, units, expires_at)
        VALUES (p_claim_id, p_cart, p_ip, p_email, p_units, p_expires_at);
    END IF;
    RETURN refused_until;
END
$$
"""

DROP = """
DROP FUNCTION IF EXISTS checkout.claim_hold_budget(
    uuid, uuid, varchar, varchar, integer, timestamptz, timestamptz, integer, integer, integer
)
"""


def upgrade() -> None:
    op.execute(CREATE)


def downgrade() -> None:
    op.execute(DROP)
