"""Checking a Svix signature (Resend signs its webhooks with Svix), per Svix's published spec.

The signed content is ``{svix-id}.{svix-timestamp}.{raw body}``; the signature is the base64 of
its HMAC-SHA256 under the secret (the base64 after ``whsec_``). ``svix-signature`` holds one or
more space-separated ``v1,<signature>`` (several while a secret is being rotated). A timestamp
further than the tolerance from now is refused, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping


class SignatureError(Exception):
    """The webhook is not proven to come from Resend; nothing about it may be believed."""


def secret_bytes(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("the webhook secret is not base64") from exc


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature Svix would send (used by tests)."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int = 300,
    now: float | None = None,
) -> str:
    """The svix id of a correctly signed, fresh webhook; :class:`SignatureError` otherwise."""
    msg_id = headers.get("svix-id", "")
    stamp = headers.get("svix-timestamp", "")
    signatures = headers.get("svix-signature", "")
    if not msg_id or not stamp or not signatures:
        raise SignatureError("svix-id, svix-timestamp and svix-signature are required")
    if len(msg_id) > 100:
        raise SignatureError("svix-id is too long")
    try:
        timestamp = int(stamp)
    except ValueError as exc:
        raise SignatureError("svix-timestamp is not a number") from exc
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise SignatureError("svix-timestamp is outside the tolerance")
    expected = sign(secret, msg_id, timestamp, body).partition(",")[2].encode()
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(expected, value.encode("utf-8", "replace")):
            return msg_id
    raise SignatureError("no signature matches")
