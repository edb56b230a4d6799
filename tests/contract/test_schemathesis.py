"""Every service's OpenAPI contract, fuzzed through Caddy with schemathesis.

Generic by design: the operations come from each service's own document at run time, so a new
route is covered the moment it is documented. Each operation gets ``EMBER_CONTRACT_EXAMPLES``
(25) generated requests plus schemathesis' example, coverage and stateful cases, sent with an
admin's bearer token so that the fuzzing reaches past the guards. A response fails the run when
it is a server error or does not match the documented schema (status, content type, body).

schemathesis runs as its own CLI (``st run``): its lazy pytest integration does not work with
this pytest, and the CLI's report is the clearer one to read on a failure anyway.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ember_devkit.devstack.layout import SERVICES
from ember_devkit.testing.fuzzing import fuzz
from ember_devkit.testing.stack import RunningStack
from ember_devkit.testing.tokens import TokenFactory

pytestmark = pytest.mark.stack

CHECKS = "not_a_server_error,response_schema_conformance"


@pytest.mark.parametrize("service", SERVICES)
def test_service_contract(
    service: str, stack: RunningStack, tokens: TokenFactory, tmp_path: Path
) -> None:
    # Long-lived: the run must not turn into a run of expired-token 401s.
    token, _ = tokens.admin(expires_in=3600)
    output = fuzz(
        f"{stack.url}/api/docs/{service}/openapi.json",
        stack.url,
        tmp_path,
        headers=[f"Authorization: Bearer {token}"],
        checks=CHECKS,
        extra=[
            # Internal routes are not reachable through the gateway (tests/flows/test_gateway.py).
            "--exclude-path-regex",
            "^/internal",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        timeout=900,
    )
    # A run that tested nothing proves nothing: the probes at least are always there.
    assert "/api/health/" in output or "passed" in output.lower(), output[-4000:]
