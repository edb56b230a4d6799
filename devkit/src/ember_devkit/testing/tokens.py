"""Access tokens for tests, signed like identity signs them, with a key made for the test run."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ember_shared.csrf import session_csrf_token
from ember_shared.settings import AuthSettings

TEST_KEY_ID = "ember-test-key"


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str

    @classmethod
    def generate(cls) -> KeyPair:
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        public = (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        return cls(private, public)


class TokenFactory:
    def __init__(self, keys: KeyPair, settings: AuthSettings | None = None) -> None:
        self.keys = keys
        self.settings = settings or AuthSettings()

    def mint(
        self,
        user_id: uuid.UUID | None = None,
        *,
        roles: tuple[str, ...] = ("customer",),
        email: str | None = None,
        expires_in: int = 300,
        session_id: str | None = None,
        key_pem: str | None = None,
        algorithm: str = "EdDSA",
        **claims: Any,
    ) -> str:
        user_id = user_id or uuid.uuid4()
        now = dt.datetime.now(dt.UTC)
        payload: dict[str, Any] = {
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "sub": str(user_id),
            "email": email or f"{user_id.hex[:10]}@example.com",
            "name": "Test Shopper",
            "roles": list(roles),
            "sid": session_id or uuid.uuid4().hex,
            "iat": int(now.timestamp()),
            "exp": int((now + dt.timedelta(seconds=expires_in)).timestamp()),
        }
        payload.update(claims)
        return jwt.encode(
            payload,
            key_pem or self.keys.private_pem,
            algorithm=algorithm,
            headers={"kid": TEST_KEY_ID},
        )

    def customer(self, **kwargs: Any) -> tuple[str, uuid.UUID]:
        user_id = uuid.uuid4()
        return self.mint(user_id, **kwargs), user_id

    def admin(self, **kwargs: Any) -> tuple[str, uuid.UUID]:
        user_id = uuid.uuid4()
        return self.mint(user_id, roles=("customer", "admin"), **kwargs), user_id

    def csrf(self, token: str) -> str:
        """The CSRF token identity would hand out with ``token``'s session."""
        claims = jwt.decode(token, options={"verify_signature": False})
        return session_csrf_token(self.settings.csrf_key, str(claims["sid"]))

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}
