"""``core.tasks.cancel_and_wait``: a stop ends even when a cancellation is lost, as Python
3.11's ``asyncio.wait_for`` loses one that comes together with a result (CPython gh-86296)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from core.tasks import cancel_and_wait


async def _loses_cancellations(lost: int, log: list[str]) -> None:
    """A pull loop whose wait returns normally for the first ``lost`` cancellations (and for
    every one while ``lost`` is negative, until "end" is in ``log``)."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if lost == 0 or "end" in log:
                log.append("cancelled")
                raise
            lost -= 1
            log.append("lost")


async def test_a_lost_cancellation_is_sent_again() -> None:
    log: list[str] = []
    task = asyncio.create_task(_loses_cancellations(2, log))
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        assert await cancel_and_wait(task, timeout_s=5, what="loop")
    assert task.cancelled() and log == ["lost", "lost", "cancelled"]


async def test_a_task_that_never_ends_is_given_up_after_the_bound(
        caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    task = asyncio.create_task(_loses_cancellations(-1, log))
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.WARNING, logger="core.tasks"):
        assert not await cancel_and_wait(task, timeout_s=0.6, what="stubborn loop")
    assert 0.6 <= loop.time() - started < 5 and not task.done()
    assert len(log) >= 2, "cancelled again while it ran"
    assert "stubborn loop did not end within 0.6 s" in caplog.text
    log.append("end")
    assert await cancel_and_wait(task, timeout_s=5, what="stubborn loop")


async def test_a_failure_is_logged_not_raised_and_a_done_task_is_fine(
        caplog: pytest.LogCaptureFixture) -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="core.tasks"):
        assert await cancel_and_wait(task, timeout_s=1, what="failing loop")
    assert "failing loop had failed: " in caplog.text and "boom" in caplog.text  # not repr()'s form
