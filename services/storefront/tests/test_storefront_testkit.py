"""The kit the page and browser suites share keeps working for as long as a slow run lasts."""

from __future__ import annotations

import datetime as dt
import time
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from ember_devkit.testing import tokens as token_module
from ember_devkit.testing.tokens import KeyPair, TokenFactory
from storefront_testkit import Shop


class _Later(dt.datetime):
    """The clock an hour on: as far as a slow CI run (36 minutes seen) gets into its suite."""

    @classmethod
    def now(cls, tz: Any = None) -> _Later:
        later = dt.datetime.fromtimestamp(time.time(), tz) + dt.timedelta(hours=1)
        return cls.fromtimestamp(later.timestamp(), tz)


def test_staff_headers_are_still_valid_an_hour_into_the_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    factory = TokenFactory(KeyPair.generate())
    shop = Shop(SimpleNamespace(url="http://127.0.0.1:9"), factory)  # type: ignore[arg-type]
    try:
        first = shop.admin
        clock = SimpleNamespace(datetime=_Later, timedelta=dt.timedelta, UTC=dt.UTC)
        monkeypatch.setattr(token_module, "dt", clock)
        later = shop.admin
        token = later["Authorization"].removeprefix("Bearer ")
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["exp"] > _Later.now(dt.UTC).timestamp(), "handed out after its lifetime"
        assert (claims["sub"], claims["roles"]) == (str(shop.admin_id), ["customer", "admin"])
        assert first != later
    finally:
        shop.close()
