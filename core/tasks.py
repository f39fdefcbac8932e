"""Ending a background task for sure, within a bound.

``task.cancel()`` followed by ``await task`` can wait for ever on Python 3.11: when a
cancellation and the result of the awaited operation arrive together, ``asyncio.wait_for``
returns the result and the cancellation is lost (CPython gh-86296, fixed in 3.12 by
reimplementing ``wait_for`` on ``asyncio.timeout``). nats-py waits with ``wait_for`` in
``fetch``, ``next_msg``, ``request`` and its KV watchers, so a loop over any of them can go on
after its cancellation, and a stop that awaits it hangs (``Bridge.stop`` did, under load, in
``tests/test_faults.py``). ``cancel_and_wait`` cancels again while the task runs and gives up
after a bound, so a stop always ends.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

_log = logging.getLogger(__name__)

RECANCEL_S = 0.25
"""How often a task that is still running is cancelled again (seconds)."""


async def cancel_and_wait(task: asyncio.Task[Any], *, timeout_s: float, what: str) -> bool:
    """Cancel ``task`` and wait up to ``timeout_s`` seconds for it to end, cancelling it again
    every ``RECANCEL_S`` seconds while it runs (see the module docstring).

    An exception the task ended with is logged, not raised (its owner is stopping). If the
    caller is cancelled meanwhile, that cancellation propagates and ``task`` is left as it is.

    Args:
        task: the task to end (already done is fine).
        timeout_s: the longest wait, in seconds.
        what: the task, for the log (``"outbox sb-gateway-discord pull loop"``).

    Returns:
        Whether the task ended within ``timeout_s``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            _log.warning("%s did not end within %.1f s of its cancellation", what, timeout_s)
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(RECANCEL_S, remaining))
    if not task.cancelled() and task.exception() is not None:
        _log.warning("%s had failed: %r", what, task.exception())
    return True
