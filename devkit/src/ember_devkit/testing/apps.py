"""Running apps in tests: in-process on the test's own loop, or over real HTTP on a free port.

``litestar.testing.AsyncTestClient`` runs an app's lifespan on a portal thread with its own
event loop; the event runtime's tasks would then share one asyncpg pool with requests made from
the test's loop. :func:`running` runs the lifespan in a task on the test's loop instead, and
:func:`asgi_client` talks to the app through ``httpx.ASGITransport``.

:func:`serve` runs an app (a stand-in, another service) under uvicorn in a thread, over real
HTTP, for code that must make real calls to it; :func:`serve_in_loop` runs it on the test's own
loop instead (when the app and the test must share objects bound to that loop).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Literal

import httpx
import uvicorn
from ember_shared.http import SERVER_KEEP_ALIVE_S
from litestar import Litestar

TEST_BASE_URL = "http://testserver.local"


@asynccontextmanager
async def running(app: Litestar, start_within: float = 30) -> AsyncIterator[Litestar]:
    """Start ``app``'s lifespan on the current loop; stop it on exit.

    The lifespan lives in a task of its own because its anyio scopes must be left by the task
    that entered them (a session fixture's teardown may run in another).
    """
    started, stop = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(run())
    waiter = asyncio.create_task(started.wait())
    done, _ = await asyncio.wait(
        {task, waiter}, timeout=start_within, return_when=asyncio.FIRST_COMPLETED
    )
    if task in done:
        waiter.cancel()
        task.result()  # the lifespan failed: raise its error here
    if waiter not in done:
        task.cancel()
        raise TimeoutError("the app did not start")
    try:
        yield app
    finally:
        stop.set()
        await asyncio.wait_for(task, start_within)


def asgi_client(app: Litestar, **kwargs: Any) -> httpx.AsyncClient:
    """An HTTP client that calls ``app`` in-process (keep cookies per client: one per browser)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url=TEST_BASE_URL,
        **kwargs,
    )


def server_config(
    app: Any, port: int, lifespan: Literal["auto", "on", "off"] = "on"
) -> uvicorn.Config:
    """uvicorn as production runs it where it matters between services: idle connections kept
    longer than the callers keep them (uvicorn's own default, 5 s, is exactly httpx's, so a
    caller could reuse a connection the server was closing)."""
    return uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan=lifespan,
        timeout_keep_alive=SERVER_KEEP_ALIVE_S,
    )


@contextmanager
def serve(
    app: Any, *, lifespan: Literal["auto", "on", "off"] = "on", timeout: float = 30
) -> Iterator[str]:
    """Serve ``app`` over real HTTP from a thread on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, port, lifespan))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)
        sock.close()


class InLoopServer(uvicorn.Server):
    """uvicorn on the running loop, leaving pytest's signal handlers alone."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_in_loop(
    app: Any,
    port: int,
    *,
    lifespan: Literal["auto", "on", "off"] = "on",
    start_within: float = 30,
) -> tuple[InLoopServer, asyncio.Task[None]]:
    """Serve ``app`` on ``port`` from a task of the current loop, once it accepts connections.
    Stop it with ``server.should_exit = True`` and await the task."""
    server = InLoopServer(server_config(app, port, lifespan))
    task = asyncio.get_running_loop().create_task(server.serve())
    deadline = time.monotonic() + start_within
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"server on {port} stopped while starting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"server on {port} did not start")
        await asyncio.sleep(0.02)
    return server, task
