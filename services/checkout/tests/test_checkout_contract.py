"""Checkout's OpenAPI document, fuzzed with schemathesis against the running service (internal
routes included, with the service credential): no server error, every answer as documented."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from checkout_testkit import World

MAX_EXAMPLES = os.environ.get("EMBER_CONTRACT_EXAMPLES", "25")
SEED = os.environ.get("EMBER_CONTRACT_SEED", "20261123")


async def test_checkout_contract_holds_under_fuzzing(world: World, tmp_path: Path) -> None:
    product_id = await world.product(price=1500, on_hand=1000)
    shopper = world.customer()
    await shopper.add(product_id, 2)
    token = shopper.token
    assert token is not None
    st = Path(sys.executable).parent / "st"
    process = await asyncio.create_subprocess_exec(
        str(st) if st.exists() else "st",
        "--no-color",
        "run",
        # The full document: the internal routes are fuzzed too (the public one leaves them out).
        f"{world.checkout_url}/internal/docs/openapi.json",
        "--url",
        world.checkout_url,
        "--checks",
        "not_a_server_error,response_schema_conformance,content_type_conformance",
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        SEED,
        "--header",
        f"Authorization: Bearer {token}",
        "--header",
        f"X-Service-Token: {world.env.service_token}",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    output_bytes, _ = await asyncio.wait_for(process.communicate(), timeout=900)
    output = output_bytes.decode(errors="replace")
    assert process.returncode == 0, output[-12000:]
    # Every documented operation was exercised (a run that tested nothing proves nothing).
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    tested = re.search(r"Tested: (\d+)", output)
    assert selected, output[-4000:]
    assert tested, output[-4000:]
    assert int(tested.group(1)) == int(selected.group(2)) >= 7, output[-4000:]
