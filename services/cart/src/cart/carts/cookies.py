"""The guest cart cookie: ``<cart_id>.<signature>``, signed with HMAC-SHA256.

The signature is what makes a cart id unguessable to anyone but its holder; the cookie's SHA-256
is also kept on the cart row, so a cookie works only for the one guest cart it was made for. A
cookie that is forged, tampered with or malformed is simply no cart: it never raises.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass

from ember_shared.cookies import CART_COOKIE
from litestar.datastructures import Cookie

#: Longest value we even look at: a UUID, a dot and 43 characters of signature, with slack.
MAX_COOKIE_LENGTH = 128
_DOMAIN = b"ember_cart.v1:"


@dataclass(frozen=True)
class CookieSigner:
    key: bytes
    max_age_s: int
    secure: bool

    def _signature(self, cart_id: uuid.UUID) -> str:
        digest = hmac.new(self.key, _DOMAIN + str(cart_id).encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, cart_id: uuid.UUID) -> str:
        return f"{cart_id}.{self._signature(cart_id)}"

    def verify(self, value: str | None) -> uuid.UUID | None:
        """The cart id a genuine cookie names, or ``None`` for anything else."""
        if not value or len(value) > MAX_COOKIE_LENGTH:
            return None
        raw_id, dot, signature = value.partition(".")
        if not dot:
            return None
        try:
            cart_id = uuid.UUID(raw_id)
        except ValueError:
            return None
        # The canonical form is what was signed; a reformatted id is not the cookie we made.
        if str(cart_id) != raw_id:
            return None
        if not hmac.compare_digest(self._signature(cart_id).encode(), signature.encode()):
            return None
        return cart_id

    def set_cookie(self, value: str) -> Cookie:
        return Cookie(
            key=CART_COOKIE,
            value=value,
            path="/",
            max_age=self.max_age_s,
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )

    def clear_cookie(self) -> Cookie:
        return Cookie(
            key=CART_COOKIE,
            value="",
            path="/",
            max_age=0,
            expires=0,
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )


def token_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
