"""Waiting on state that cannot be awaited directly (a server's counters), with a deadline."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

POLL_S = 0.05


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], *, within_s: float, what: str
) -> None:
    """Return once ``condition()`` is true; fail the test after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while True:  # noqa: ASYNC110 - polls state owned by another process
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s:.0f} s: {what}")
        await asyncio.sleep(POLL_S)
