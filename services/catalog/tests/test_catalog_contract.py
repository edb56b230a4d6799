"""The catalog's whole OpenAPI document, fuzzed with schemathesis against the app over HTTP.

The stack-wide run (tests/contract) goes through Caddy and so cannot reach /internal; this one
talks to the catalog directly, with an admin token and the service credential, so every
operation (shopper, admin, internal) is fuzzed past its guard. A server error, or an answer
that does not match the document (status, content type, body), fails it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from catalog.app import create_app
from catalog_testkit import served
from ember_devkit.testing.fuzzing import fuzz
from ember_devkit.testing.plugin import TestEnv
from ember_devkit.testing.tokens import TokenFactory
from litestar import Litestar


@pytest.fixture(scope="module")
def catalog_url(catalog_app: Litestar) -> Iterator[str]:
    # Its own app instance: it runs on the server thread's event loop.
    with served(create_app()) as url:
        yield url


def test_the_whole_catalog_contract_holds_under_fuzzing(
    catalog_url: str, tokens: TokenFactory, ember_env: TestEnv, tmp_path: Path
) -> None:
    token, _ = tokens.admin(expires_in=3600)
    output = fuzz(
        # The full document: the internal routes are fuzzed too (the public one leaves them out).
        f"{catalog_url}/internal/docs/openapi.json",
        catalog_url,
        tmp_path,
        headers=[f"Authorization: Bearer {token}", f"X-Service-Token: {ember_env.service_token}"],
    )
    # Every operation of the document was exercised, none skipped.
    selected = re.search(r"Operations:\s+(\d+) selected / (\d+) total", output)
    assert selected is not None, output[-4000:]
    assert selected.group(1) == selected.group(2)
    assert re.search(rf"Tested:\s+{selected.group(2)}\b", output), output[-4000:]
    assert int(selected.group(2)) >= 30
