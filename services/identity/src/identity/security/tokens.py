"""Signing access tokens (EdDSA over Ed25519) and publishing the public key as JWKS.

Other services verify these tokens locally (:mod:`ember_shared.auth`), so identity is never
asked on each request. A token lives ``ACCESS_TOKEN_TTL`` seconds; its ``sid`` names the session
it was minted for, which is how a revoked session's tokens are refused before they expire.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from ember_shared.settings import data_dir
from jwt.algorithms import OKPAlgorithm

log = structlog.get_logger("identity.tokens")

LOCAL_KEY_FILE = "identity-signing-key.pem"


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_at: dt.datetime
    expires_in: int


def load_private_key(pem: str) -> Ed25519PrivateKey:
    # Keys often arrive through env files with their newlines escaped.
    key = serialization.load_pem_private_key(pem.replace("\\n", "\n").encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError("IDENTITY_SIGNING_KEY_PEM must be an Ed25519 private key (PKCS8 PEM)")
    return key


def local_private_key(folder: Path | None = None) -> Ed25519PrivateKey:
    """Local mode without a configured key: one made once and kept, so sign-ins survive restarts."""
    path = (folder or data_dir() / "keys") / LOCAL_KEY_FILE
    if path.exists():
        return load_private_key(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Written owner-only from the start: the key must never be readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    log.info("signing_key_generated", path=str(path))
    return key


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


class TokenSigner:
    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        *,
        key_id: str,
        issuer: str,
        audience: str,
        ttl_seconds: int,
    ) -> None:
        self.private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds

    def mint(
        self,
        *,
        user_id: uuid.UUID,
        email: str,
        name: str,
        roles: list[str],
        session_id: uuid.UUID,
        email_verified: bool = False,
        now: dt.datetime | None = None,
    ) -> AccessToken:
        issued = now or dt.datetime.now(dt.UTC)
        expires = issued + dt.timedelta(seconds=self.ttl_seconds)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            "email": email,
            "email_verified": email_verified,
            "name": name,
            "roles": roles,
            "sid": str(session_id),
            "iat": int(issued.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(
            claims, self.private_key, algorithm="EdDSA", headers={"kid": self.key_id}
        )
        return AccessToken(token=token, expires_at=expires, expires_in=self.ttl_seconds)

    def jwk(self) -> dict[str, Any]:
        jwk = dict(OKPAlgorithm.to_jwk(self.public_key, as_dict=True))
        jwk.update({"kid": self.key_id, "use": "sig", "alg": "EdDSA"})
        return jwk

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk()]}

    @property
    def public_key_pem(self) -> str:
        return public_pem(self.public_key)
