"""Waiting on a service this test started as a real uvicorn process."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx


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
