"""The checkout session's status machine: statuses only move forward.

::

    open ──▶ payment_pending ──▶ paid ──▶ partially_refunded ──▶ refunded
      │             │              └──────────────────────────────▲
      │             └──▶ payment_failed
      ├──▶ paid
      ├──▶ payment_failed
      └──▶ expired

Webhooks can arrive late, twice or out of order; an event whose move is not on this chart is
recorded and ignored, so nothing ever goes backwards:

- ``paid`` then a late ``completed`` (unpaid): ignored (the delayed payment already settled).
- ``paid`` then ``expired``: ignored. ``expired`` then ``completed``: ignored too, and flagged
  for staff. Stripe never completes an expired session nor expires a completed one, so this
  pair only comes from contradictory deliveries; the first final outcome stands, and as the
  expired session's stock has been given back, a payment for it must be refunded by staff
  rather than sold against stock that may be gone (invariant 6).
- a refund for a session not yet known as paid: not recorded, answered 409 so that Stripe
  delivers it again later, after the payment.
"""

from __future__ import annotations

from checkout.models import CheckoutStatus as S

ALLOWED: dict[S, frozenset[S]] = {
    S.OPEN: frozenset({S.PAYMENT_PENDING, S.PAID, S.PAYMENT_FAILED, S.EXPIRED}),
    S.PAYMENT_PENDING: frozenset({S.PAID, S.PAYMENT_FAILED}),
    S.PAID: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.PARTIALLY_REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.PAYMENT_FAILED: frozenset(),
    S.EXPIRED: frozenset(),
    S.REFUNDED: frozenset(),
}

#: Statuses in which money has been taken.
PAID_STATUSES = frozenset({S.PAID, S.PARTIALLY_REFUNDED, S.REFUNDED})


def may_move(current: str, target: S) -> bool:
    return target in ALLOWED[S(current)]
