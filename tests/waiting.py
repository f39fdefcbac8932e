"""Waiting on state that cannot be awaited directly (a server's counters), with a deadline."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast, overload

POLL_S = 0.05
T = TypeVar("T")


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], *, within_s: float, what: str
) -> None:
    """Return once ``condition()`` is true; fail the test after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while True:  # polls state owned by another process
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s:.0f} s: {what}")
        await asyncio.sleep(POLL_S)


@overload
async def until(fetch: Callable[[], Awaitable[T]], ok: Callable[[T], object], *,
                within_s: float, what: str) -> T: ...


@overload
async def until(fetch: Callable[[], T], ok: Callable[[T], object], *,
                within_s: float, what: str) -> T: ...


async def until(fetch: Callable[[], T | Awaitable[T]], ok: Callable[[T], object], *,
                within_s: float, what: str) -> T:
    """Fetch a value until ``ok(value)``; return that value (fail after ``within_s`` s)."""
    found: list[T] = []

    async def _check() -> bool:
        fetched = fetch()
        value = cast(T, await fetched) if inspect.isawaitable(fetched) else cast(T, fetched)
        found[:] = [value]
        return bool(ok(value))

    await eventually(_check, within_s=within_s, what=what)
    return found[0]
