"""Identity's internal API: a shopper's saved address, for checkout.

Checkout has already verified the shopper's access token itself; it asks for the address by
(user id, address id) with the service credential, so the shopper's own token is never
forwarded to another service. An address that is not that user's answers 404, like one that
does not exist. The answer is the event contract's :class:`Address` (country upper case): the
shape checkout puts on ``checkout.started`` and ``payment.succeeded`` as it is.
"""

from __future__ import annotations

import uuid

from ember_shared.events.contracts import Address

__all__ = ["Address", "saved_address_path"]


def saved_address_path(user_id: uuid.UUID, address_id: uuid.UUID) -> str:
    return f"/internal/identity/users/{user_id}/addresses/{address_id}"
