"""Leaving the rotation before leaving: a replica told to stop first stops being chosen.

A proxy in front of replicas (Caddy's health checks, a Kubernetes Service) keeps sending a
replica requests until it sees it go. If the replica closes at once, a request the proxy sends
on a pooled connection just as the replica closes it fails mid-way; the proxy retries that only
for GETs, so a POST to ``/internal/cart/resolve`` during a rolling restart became a 503. With
``SHUTDOWN_DRAIN_MS`` set, the first SIGTERM starts a drain instead: the liveness probe as a
balancer asks it (``/live?balancer=true``) answers 503 ``draining`` (the proxies take the replica
out within one probe interval) while every other request, a shopper's ``/live`` included, is
still served; when the drain ends, uvicorn's own graceful shutdown runs (it finishes
what is in flight). Kubernetes gets the same from a ``preStop`` pause, so there it stays 0.

More SIGTERMs during the drain change nothing (uvicorn's worker supervisor forwards one to each
worker); SIGINT still stops at once, as a developer's Ctrl-C should.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import structlog
from litestar import Litestar

log = structlog.get_logger("ember.drain")


class Drain:
    def __init__(self, milliseconds: int) -> None:
        self.seconds = max(0, milliseconds) / 1000
        self.draining = False

    @asynccontextmanager
    async def lifespan(self, app: Litestar) -> AsyncIterator[None]:
        app.state.drain = self
        # uvicorn installs its exit handler before the lifespan starts; only the main thread
        # may set handlers (an app served from a test's thread has no signals to take).
        previous = signal.getsignal(signal.SIGTERM)
        if self.seconds <= 0 or not callable(previous):
            yield
            return
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()

        def on_term(signum: int, frame: FrameType | None) -> None:
            if self.draining:
                return
            self.draining = True
            log.info("draining", seconds=self.seconds)
            loop.call_soon_threadsafe(loop.call_later, self.seconds, previous, signum, frame)

        signal.signal(signal.SIGTERM, on_term)
        try:
            yield
        finally:
            if signal.getsignal(signal.SIGTERM) is on_term:
                signal.signal(signal.SIGTERM, previous)


def is_draining(app: Any) -> bool:
    drain = getattr(app.state, "drain", None)
    return bool(drain is not None and drain.draining)
