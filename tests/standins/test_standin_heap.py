"""The stand-ins freeze their start-up heap as every service does (``ember_shared.heap``): they
share the machine with the shop under the write-path benchmark, and their garbage collections
must not walk their start-up's objects again each time (a stand-in must never be what is slow)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from standins.resend import ResendStandinSettings
from standins.resend import create_app as resend_app
from standins.stripe.app import create_app as stripe_app
from standins.stripe.settings import StandinSettings


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """The test process's heap as if nothing had frozen it (services' apps other tests built
    here did), and so again after the test."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def _stripe() -> Litestar:
    return stripe_app(
        StandinSettings(
            public_url="http://127.0.0.1:9",
            webhook_url="off",
            webhook_secret="whsec_heap",
            state_file="memory",
        )
    )


def _resend() -> Litestar:
    return resend_app(ResendStandinSettings(webhook_url="off", state_file=""))


@pytest.mark.usefixtures("unfrozen")
@pytest.mark.parametrize("make", [_stripe, _resend], ids=["stripe", "resend"])
async def test_a_standin_freezes_its_start_up_heap(make: Callable[[], Litestar]) -> None:
    app = make()
    assert gc.get_freeze_count() == 0
    async with AsyncTestClient(app=app):
        assert gc.get_freeze_count() > 0
