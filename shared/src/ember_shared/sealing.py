"""Mail capabilities sealed for the notifier (RFC 9180 HPKE, ``cryptography``'s implementation).

A sign-up or reset link is a live bearer secret. Its producer seals it with the notifier's public
key before it enters an outbox row or a stream, so only the notifier worker can open it, and only
while it sends the mail; at rest it is ciphertext (tables, streams, dead letters, admin views).

Keys: ``MAIL_SEAL_PRIVATE_KEY`` (the notifier only) and ``MAIL_SEAL_PUBLIC_KEY`` (producers), raw
X25519 keys in URL-safe base64. In local and test mode, with none set, both derive from
``INTERNAL_SERVICE_TOKEN`` so every process of one stack agrees; production must set them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from ember_shared.settings import env_str

PREFIX = "sealed.v1."
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
#: Binds a ciphertext to its use: a sealed link cannot be replayed as anything else.
_INFO = b"ember mail capability v1"
PUBLIC_KEY_VAR = "MAIL_SEAL_PUBLIC_KEY"
PRIVATE_KEY_VAR = "MAIL_SEAL_PRIVATE_KEY"


class SealError(ValueError):
    """A sealed value that cannot be opened with this key (tampered, or sealed for another)."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _local_private_key() -> X25519PrivateKey:
    seed = env_str("INTERNAL_SERVICE_TOKEN") or "ember-local"
    raw = hmac.new(seed.encode(), b"ember-mail-seal-v1", hashlib.sha256).digest()
    return X25519PrivateKey.from_private_bytes(raw)


def private_key(*, local: bool) -> X25519PrivateKey:
    configured = env_str(PRIVATE_KEY_VAR)
    if configured:
        return X25519PrivateKey.from_private_bytes(_unb64(configured))
    if not local:
        raise SealError(f"{PRIVATE_KEY_VAR} must be set")
    return _local_private_key()


def public_key(*, local: bool) -> X25519PublicKey:
    configured = env_str(PUBLIC_KEY_VAR)
    if configured:
        return X25519PublicKey.from_public_bytes(_unb64(configured))
    if not local:
        raise SealError(f"{PUBLIC_KEY_VAR} must be set")
    return _local_private_key().public_key()


def new_key_pair() -> tuple[str, str]:
    """(private, public) for ``.env``: ``python -c "from ember_shared.sealing import *;
    print(new_key_pair())"``."""
    key = X25519PrivateKey.generate()
    return _b64(key.private_bytes_raw()), _b64(key.public_key().public_bytes_raw())


def seal(text: str, key: X25519PublicKey) -> str:
    return PREFIX + _b64(_SUITE.encrypt(text.encode(), key, info=_INFO))


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def unseal(value: str, key: X25519PrivateKey) -> str:
    if not is_sealed(value):
        raise SealError("not a sealed value")
    try:
        return _SUITE.decrypt(_unb64(value[len(PREFIX) :]), key, info=_INFO).decode()
    except Exception as exc:  # bad base64, cryptography's InvalidTag, bad UTF-8
        raise SealError("the sealed value does not open with this key") from exc
