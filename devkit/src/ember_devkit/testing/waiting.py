"""Waiting, in a synchronous test, for something the stack does asynchronously."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T | None], what: str, within: float = 45.0, every: float = 0.2
) -> T:
    """``check()``'s first truthy answer, polling every ``every`` seconds; an AssertionError
    naming ``what`` (and the last answer) after ``within`` seconds."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")
