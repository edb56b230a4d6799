"""A replica told to stop leaves its proxies' rotation before it stops serving.

A real catalog runs under uvicorn (one worker, and two as ``EMBER_WORKERS=2`` runs it) with
``SHUTDOWN_DRAIN_MS`` as the dev stack gives a replica, and gets SIGTERM on its process group as
the supervisor (and Kubernetes) sends it. From then on its liveness probe as Caddy asks it
(``?balancer=true``, to choose a replica) answers 503 ``draining``, while every other request,
on a pooled connection or a new one, is still answered; only after the drain does it stop. Without the drain the process closed its
connections at once, and a POST that Caddy had just sent on one of them failed (a rolling restart
turned ``/internal/cart/resolve`` into a 503 for a shopper's checkout quote).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from ember_devkit.devstack.stack import (
    REPLICA_DRAIN_MS,
    drain_environment,
    uvicorn_argv,
)
from ember_shared.settings import env_int
from served_processes import catalog_process, tail, wait_ready

DRAIN_MS = 4000
#: Requests are sent for this long after SIGTERM: well inside the drain on a slow machine.
SERVED_FOR_S = 2.5


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stopping_replica_says_draining_and_keeps_serving_until_it_leaves(
    catalog_database: str, tmp_path: Path, workers: int
) -> None:
    offset = env_int("EMBER_TEST_STACK_OFFSET", 0)
    app, env = catalog_process(
        catalog_database, tmp_path, workers, 8, SHUTDOWN_DRAIN_MS=str(DRAIN_MS)
    )
    log = tmp_path / "catalog.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            uvicorn_argv(app, offset, workers),
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = app.url(offset)
    live = f"{base}/api/health/catalog/live"
    probe_url = f"{live}?balancer=true"
    try:
        wait_ready(base + "/api/health/catalog/ready", server, log)
        with httpx.Client(base_url=base, timeout=10) as pooled:
            assert pooled.get("/api/products").status_code == 200
            assert httpx.get(live, timeout=5).json()["status"] == "ok"

            os.killpg(server.pid, signal.SIGTERM)
            signalled = time.monotonic()

            probe = httpx.get(probe_url, timeout=5)
            while probe.status_code == 200 and time.monotonic() - signalled < SERVED_FOR_S:
                probe = httpx.get(probe_url, timeout=5)
            assert probe.status_code == 503, tail(log)
            assert probe.headers["content-type"].startswith("application/problem+json")
            assert probe.json()["type"].endswith("/draining")

            # Only a balancer is told: a shopper's (or a monitor's) liveness check still passes.
            assert httpx.get(live, timeout=5).json()["status"] == "ok"

            served = 0
            while time.monotonic() - signalled < SERVED_FOR_S:
                assert pooled.get("/api/products").status_code == 200, tail(log)
                assert httpx.get(f"{base}/api/products", timeout=5).status_code == 200
                served += 1
            assert served > 0
            assert server.poll() is None, "the replica left before its drain ended"

        # uvicorn re-raises the signal it stopped for once it is done (exit -15 as one worker).
        assert server.wait(timeout=DRAIN_MS / 1000 + 30) in (0, -signal.SIGTERM), tail(log)
        assert "Application shutdown complete" in tail(log)
        assert time.monotonic() - signalled >= DRAIN_MS / 1000
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_the_dev_stack_drains_only_replicated_services() -> None:
    given = {"PATH": "/bin"}
    assert drain_environment(given, 2)["SHUTDOWN_DRAIN_MS"] == str(REPLICA_DRAIN_MS)
    # Caddy probes each replica every second: the drain outlasts two probes.
    assert REPLICA_DRAIN_MS >= 2000
    assert "SHUTDOWN_DRAIN_MS" not in drain_environment(given, 1)
    assert (
        drain_environment({**given, "SHUTDOWN_DRAIN_MS": "9000"}, 3)["SHUTDOWN_DRAIN_MS"] == "9000"
    )
