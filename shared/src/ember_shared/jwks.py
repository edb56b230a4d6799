"""A cached JSON Web Key Set: the public keys that verify a token issuer's signatures.

Serves both sets Ember verifies against: identity's keys for access tokens
(:class:`ember_shared.auth.KeySet`) and a sign-in provider's keys for ID tokens (identity's OIDC
client). The set is fetched when a token names a key id it does not hold (at most once per
``refetch_after_s``, so a forged or garbled kid cannot turn every request into a fetch) or when
it is older than ``max_age_s``. One fetch at a time (single flight): callers that need a key
while a fetch runs wait for that fetch and use its answer, so the burst after a restart or a
key rotation makes one call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import jwt

#: Fetches the key set document; ``None`` when it could not (the cache keeps what it has and
#: waits ``refetch_after_s`` before asking again). An exception instead reaches the callers
#: and does not count as a fetch: the next caller asks again at once.
Fetch = Callable[[], Awaitable[Mapping[str, Any] | None]]


class JwksCache:
    def __init__(
        self,
        fetch: Fetch,
        *,
        refetch_after_s: float,
        empty_retry_s: float | None = None,
        max_age_s: float | None = None,
    ) -> None:
        self._fetch = fetch
        self.refetch_after_s = refetch_after_s
        #: While no key is known at all, ask again after this long instead.
        self.empty_retry_s = refetch_after_s if empty_retry_s is None else empty_retry_s
        self.max_age_s = max_age_s
        self.keys: dict[str, jwt.PyJWK] = {}
        #: When the last fetch finished (monotonic).
        self.fetched_at = 0.0
        self.fetches = 0
        self._inflight: asyncio.Task[None] | None = None

    async def get(self, kid: str | None) -> jwt.PyJWK | None:
        """The key ``kid`` names (the only key, when the token names none); ``None`` when the
        set does not hold it even after a fetch it was due."""
        if not self._holds(kid) or self._expired():
            await self._refresh_if_due()
        if kid is None and len(self.keys) == 1:
            return next(iter(self.keys.values()))
        return self.keys.get(kid) if kid is not None else None

    def _holds(self, kid: str | None) -> bool:
        return kid in self.keys or (kid is None and len(self.keys) == 1)

    def _expired(self) -> bool:
        return self.max_age_s is not None and time.monotonic() - self.fetched_at > self.max_age_s

    async def _refresh_if_due(self) -> None:
        loop = asyncio.get_running_loop()
        task = self._inflight
        if task is None or task.done() or task.get_loop() is not loop:
            pause = self.refetch_after_s if self.keys else self.empty_retry_s
            if self.fetches and time.monotonic() - self.fetched_at < pause:
                return
            task = loop.create_task(self.refresh())
            self._inflight = task
        # Shielded: one waiter's cancelled request must not cancel the fetch the others await.
        await asyncio.shield(task)

    async def refresh(self) -> None:
        self.fetches += 1
        document = await self._fetch()
        self.fetched_at = time.monotonic()
        if document is None:
            return
        keys: dict[str, jwt.PyJWK] = {}
        for entry in document.get("keys", []):
            try:
                keys[str(entry.get("kid", ""))] = jwt.PyJWK.from_dict(entry)
            except (jwt.PyJWTError, ValueError, TypeError, AttributeError):
                continue
        # A set with no usable key is a broken answer, not a rotation to nothing.
        if keys:
            self.keys = keys
