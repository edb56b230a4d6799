"""Between two of our processes the caller closes an idle connection first, everywhere one of
our servers runs: a server that closed it just as the caller reused it would fail a request
that did nothing wrong (a CI run saw checkout's call to cart end in an empty
RemoteProtocolError and a 503 to the shopper, with both sides keeping idle connections 5 s)."""

from __future__ import annotations

import json
import re
import shlex

from ember_devkit.devstack import layout
from ember_devkit.devstack.stack import uvicorn_argv
from ember_devkit.testing.apps import serve_in_loop
from ember_devkit.testing.ports import free_port
from ember_shared.http import AiohttpPool, service_client
from ember_shared.settings import repo_root
from litestar import Litestar, get

#: The least time a server keeps an idle connection beyond its callers: a reused connection's
#: request still has to reach the server.
MARGIN_S = 5.0


@get("/ping", sync_to_thread=False)
def ping() -> str:
    return "pong"


async def callers_keep_idle_connections_for() -> float:
    """What a service's client to another service really does: its pool, after one request."""
    server, task = await serve_in_loop(Litestar([ping]), free_port())
    try:
        async with service_client("cart") as client:
            client.base_url = f"http://127.0.0.1:{server.config.port}"
            assert (await client.get("/ping")).text == "pong"
            pool = client._transport._pool  # type: ignore[attr-defined]
            assert isinstance(pool, AiohttpPool)
            assert pool.idle_connections() == 1, "the connection is kept for the next request"
            expiry = pool.keepalive_expiry
            assert isinstance(expiry, float)
            return expiry
    finally:
        server.should_exit = True
        await task


async def test_the_test_harness_servers_keep_idle_connections_longer_than_callers() -> None:
    keeps = await callers_keep_idle_connections_for()
    server, task = await serve_in_loop(Litestar([ping]), free_port())
    try:
        assert server.config.timeout_keep_alive >= keeps + MARGIN_S
    finally:
        server.should_exit = True
        await task


async def test_the_devstack_and_the_image_keep_idle_connections_longer_than_callers() -> None:
    keeps = await callers_keep_idle_connections_for()
    for app in layout.services():
        argv = uvicorn_argv(app, 0, 1)
        server_keeps = int(argv[argv.index("--timeout-keep-alive") + 1])
        assert server_keeps >= keeps + MARGIN_S, app.name

    dockerfile = (repo_root() / "deploy" / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert cmd is not None
    shell = json.loads(cmd.group(1))[-1]
    argv = shlex.split(shell[shell.index("exec uvicorn ") :])
    assert int(argv[argv.index("--timeout-keep-alive") + 1]) >= keeps + MARGIN_S
