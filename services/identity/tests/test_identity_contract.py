"""Identity's whole OpenAPI document, fuzzed with schemathesis against the app over real HTTP.

The app runs under uvicorn on a free port (its own thread and loop) with the Google stand-in
beside it, and every request carries a bearer token of a real admin account, so the fuzzing
reaches past every guard. A server error, or an answer that does not match the document
(status, content type, body), fails the run.

Sign-out is fuzzed in a run of its own: it ends the session the token names, after which every
other request would only meet 401s.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ember_devkit.testing.fuzzing import fuzz
from ember_devkit.testing.tokens import TokenFactory
from identity.app import create_app
from identity_helpers import (
    Browser,
    ServedApp,
    make_admin,
    new_email,
    settings_for,
    strong_password,
)
from sqlalchemy.ext.asyncio import AsyncEngine

LOGOUT = "^/api/auth/logout$"


@pytest.fixture(scope="module")
def identity_url(oidc_standin: ServedApp) -> Iterator[str]:
    os.environ["EVENTS_RELAY_LISTEN"] = "false"  # see the make_app fixture
    try:
        served = ServedApp(create_app(settings=settings_for(oidc_standin.url)))
    finally:
        os.environ.pop("EVENTS_RELAY_LISTEN", None)
    yield served.url
    served.stop()


def schemathesis(url: str, token: str, tmp_path: Path, *extra: str) -> str:
    return fuzz(
        f"{url}/api/docs/identity/openapi.json",
        url,
        tmp_path,
        headers=[f"Authorization: Bearer {token}"],
        extra=extra,
    )


async def test_the_whole_identity_contract_holds_under_fuzzing(
    identity_url: str,
    browsers: Callable[..., Browser],
    engine: AsyncEngine,
    tokens: TokenFactory,
    tmp_path: Path,
) -> None:
    registered = await browsers().register(new_email("fuzz-admin"), strong_password())
    admin_id = uuid.UUID(registered.json()["user"]["id"])
    await make_admin(engine, admin_id)
    token = tokens.mint(admin_id, roles=("customer", "admin"), expires_in=3600)

    output = schemathesis(identity_url, token, tmp_path, "--exclude-path-regex", LOGOUT)
    selected = re.search(r"Operations:\s+(\d+) selected / (\d+) total", output)
    assert selected is not None, output[-4000:]
    total = int(selected.group(2))
    assert int(selected.group(1)) == total - 1  # all but sign-out
    assert total >= 28
    assert re.search(rf"Tested:\s+{total - 1}\b", output), output[-4000:]

    logout_token = tokens.mint(admin_id, roles=("customer", "admin"), expires_in=3600)
    output = schemathesis(identity_url, logout_token, tmp_path, "--include-path-regex", LOGOUT)
    assert re.search(r"Tested:\s+1\b", output), output[-4000:]
