"""Token verification when its dependencies blip: identity's JWKS just after a restart or a key
rotation, and Redis (revocation hints) going away."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from ember_devkit.embedded import EmbeddedRedis
from ember_devkit.testing.apps import serve
from ember_devkit.testing.tokens import KeyPair, TokenFactory
from ember_shared.auth import REVOKED_SESSION_KEY, TokenVerifier
from ember_shared.redis_conn import redis_from_url
from ember_shared.settings import AuthSettings
from jwt.algorithms import OKPAlgorithm
from litestar import Litestar, get
from redis.asyncio import Redis


class SlowJwks:
    """Identity's JWKS endpoint, slow to answer (as just after its own restart), counting calls."""

    def __init__(self, *kids: str) -> None:
        self.pairs: dict[str, KeyPair] = {}
        self.published: list[str] = []
        self.calls = 0
        for kid in kids:
            self.add(kid)

    def add(self, kid: str, *, publish: bool = True) -> None:
        self.pairs[kid] = KeyPair.generate()
        if publish:
            self.published.append(kid)

    def app(self) -> Litestar:
        @get("/.well-known/jwks.json", sync_to_thread=False)
        async def jwks() -> dict[str, Any]:
            self.calls += 1
            await asyncio.sleep(0.3)
            keys = []
            for kid in self.published:
                public = load_pem_public_key(self.pairs[kid].public_pem.encode())
                keys.append({**OKPAlgorithm.to_jwk(public, as_dict=True), "kid": kid})
            return {"keys": keys}

        return Litestar([jwks])

    def token(self, kid: str, settings: AuthSettings, sid: str | None = None) -> str:
        claims = jwt.decode(
            TokenFactory(self.pairs[kid], settings).mint(session_id=sid),
            options={"verify_signature": False},
        )
        return jwt.encode(claims, self.pairs[kid].private_pem, "EdDSA", headers={"kid": kid})


def _settings(url: str) -> AuthSettings:
    return AuthSettings(jwks_url=f"{url}/.well-known/jwks.json", public_key_pem="")


async def _verify_all(verifier: TokenVerifier, tokens: list[str]) -> list[str]:
    async def one(token: str) -> str:
        try:
            await verifier.verify(token)
        except jwt.PyJWTError as exc:
            return type(exc).__name__
        return "ok"

    return list(await asyncio.gather(*(one(t) for t in tokens)))


async def test_a_burst_after_a_restart_waits_for_the_one_key_fetch() -> None:
    identity = SlowJwks("k1")
    with serve(identity.app()) as url:
        settings = _settings(url)
        verifier = TokenVerifier(settings)  # a process that just started: no keys yet
        tokens = [identity.token("k1", settings) for _ in range(24)]
        assert await _verify_all(verifier, tokens) == ["ok"] * 24
        assert identity.calls == 1


async def test_a_rotated_key_is_fetched_once_and_forged_key_ids_are_rate_limited() -> None:
    identity = SlowJwks("k1")
    with serve(identity.app()) as url:
        settings = _settings(url)
        verifier = TokenVerifier(settings)
        assert await _verify_all(verifier, [identity.token("k1", settings)]) == ["ok"]
        verifier.keys.fetched_at = time.monotonic() - 60  # a while later, identity rotates
        identity.add("k2")
        tokens = [identity.token("k2", settings) for _ in range(24)]
        tokens += [identity.token("k1", settings) for _ in range(8)]
        assert await _verify_all(verifier, tokens) == ["ok"] * 32
        assert identity.calls == 2

        # A key id identity never published: refused, and no call to identity per request.
        identity.add("forged", publish=False)
        forged = [identity.token("forged", settings) for _ in range(40)]
        assert set(await _verify_all(verifier, forged)) == {"InvalidKeyError"}
        assert identity.calls == 2


@pytest.fixture
async def restartable_redis(tmp_path: Path) -> Any:
    server = EmbeddedRedis(tmp_path / "redis", persist=False)
    server.start()
    yield server
    server.stop()


async def test_revocations_seen_still_hold_while_redis_is_down(restartable_redis: Any) -> None:
    keys = KeyPair.generate()
    settings = AuthSettings(public_key_pem=keys.public_pem)
    factory = TokenFactory(keys, settings)
    redis: Redis = redis_from_url(restartable_redis.url)
    verifier = TokenVerifier(settings, redis)
    try:
        revoked, kept, later = (uuid.uuid4().hex for _ in range(3))
        await redis.set(REVOKED_SESSION_KEY.format(sid=revoked), b"1", ex=60)
        with pytest.raises(jwt.InvalidTokenError, match="revoked"):
            await verifier.verify(factory.mint(session_id=revoked))

        restartable_redis.stop()
        principal = await verifier.verify(factory.mint(session_id=kept))
        assert principal.session_id == kept
        with pytest.raises(jwt.InvalidTokenError, match="revoked"):
            await verifier.verify(factory.mint(session_id=revoked))

        restartable_redis.start()  # empty: identity writes its hints again as it revokes
        await redis.set(REVOKED_SESSION_KEY.format(sid=later), b"1", ex=60)
        deadline = time.monotonic() + 5
        while True:
            try:
                await verifier.verify(factory.mint(session_id=later))
            except jwt.InvalidTokenError:
                break
            assert time.monotonic() < deadline, "Redis is back but its revocation is ignored"
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
