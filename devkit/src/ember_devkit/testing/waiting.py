"""Waiting for something that happens asynchronously (an event consumed, a mail sent): poll a
condition until it holds, from a synchronous test (:func:`eventually`) or an async one
(:func:`eventually_async`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
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


async def eventually_async(
    check: Callable[[], Awaitable[T | None]],
    what: str = "the condition",
    within: float = 45.0,
    every: float = 0.05,
) -> T:
    """``await check()``'s first truthy answer, polling every ``every`` seconds; an
    AssertionError naming ``what`` (and the last answer) after ``within`` seconds."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")
