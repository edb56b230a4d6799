"""The one JWKS cache (identity's keys for access tokens, a sign-in provider's for ID tokens):
when it asks for the set again, and what a failed answer leaves behind."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ember_shared.jwks import JwksCache
from jwt.algorithms import OKPAlgorithm


def _jwk(kid: str) -> dict[str, Any]:
    public = Ed25519PrivateKey.generate().public_key()
    jwk: dict[str, Any] = OKPAlgorithm.to_jwk(public, as_dict=True)
    return {**jwk, "kid": kid, "alg": "EdDSA", "use": "sig"}


class Source:
    """A key set endpoint that answers what the test says and counts the calls."""

    def __init__(self, *answers: Mapping[str, Any] | Exception | None) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self) -> Mapping[str, Any] | None:
        self.calls += 1
        answer = self.answers[min(self.calls, len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_an_unknown_kid_is_fetched_at_most_once_per_interval() -> None:
    source = Source({"keys": [_jwk("a")]})
    cache = JwksCache(source, refetch_after_s=60)
    assert await cache.get("a") is not None
    assert await cache.get("forged") is None
    assert await cache.get("forged-again") is None
    assert source.calls == 1
    cache.fetched_at = time.monotonic() - 61
    assert await cache.get("forged") is None
    assert source.calls == 2


async def test_a_set_older_than_its_max_age_is_fetched_again_even_for_a_known_kid() -> None:
    source = Source({"keys": [_jwk("a")]}, {"keys": [_jwk("b")]})
    cache = JwksCache(source, refetch_after_s=5, max_age_s=3600)
    assert await cache.get("a") is not None
    cache.fetched_at = time.monotonic() - 3601
    assert await cache.get("a") is None
    assert await cache.get("b") is not None
    assert source.calls == 2


async def test_a_failed_or_empty_answer_keeps_the_keys_and_waits_before_asking_again() -> None:
    source = Source({"keys": [_jwk("a")]}, None, {"keys": []})
    cache = JwksCache(source, refetch_after_s=60)
    assert await cache.get("a") is not None
    for answered in (2, 3):
        cache.fetched_at = time.monotonic() - 61
        assert await cache.get("rotated") is None
        assert source.calls == answered
        assert await cache.get("a") is not None
        assert await cache.get("rotated") is None
        assert source.calls == answered


async def test_a_fetch_that_raises_reaches_the_caller_and_the_next_caller_asks_again() -> None:
    source = Source(RuntimeError("provider down"), {"keys": [_jwk("a")]})
    cache = JwksCache(source, refetch_after_s=60)
    with pytest.raises(RuntimeError, match="provider down"):
        await cache.get("a")
    assert await cache.get("a") is not None
    assert source.calls == 2


async def test_a_token_without_kid_uses_the_only_key_and_no_key_among_several() -> None:
    cache = JwksCache(Source({"keys": [_jwk("a")]}), refetch_after_s=60)
    assert await cache.get(None) is not None
    several = JwksCache(Source({"keys": [_jwk("a"), _jwk("b")]}), refetch_after_s=60)
    assert await several.get(None) is None
