"""Waiting on a service this test started as a real uvicorn process."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
from ember_devkit.devstack import layout
from ember_devkit.devstack.stack import metrics_environment


def catalog_process(
    database_url: str, tmp_path: Path, workers: int, slot: int, **env: str
) -> tuple[layout.App, dict[str, str]]:
    """A catalog on replica ``slot`` (one no stack of this offset uses: its own port), and the
    environment its uvicorn process runs with (as the dev stack gives it, with ``env`` added)."""
    catalog = next(app for app in layout.services() if app.name == "catalog")
    app = layout.App(catalog.name, catalog.target, catalog.port_name, catalog.ready_path, slot)
    given = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CATALOG_SWEEP_INTERVAL_SECONDS": "0",
        "MEDIA_ROOT": str(tmp_path / "media"),
        **env,
    }
    return app, metrics_environment(given, app.process, workers, tmp_path)


def wait_ready(
    url: str, server: subprocess.Popen[bytes], log: Path, timeout: float = 180.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the service exited ({server.returncode}): {tail(log)}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the service did not answer {url} within {timeout} s: {tail(log)}")


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]
