"""Short notices to people about their requests ("queued", "busy, number N in line", "too
busy"), posted in order by a few workers.

A flood makes thousands of them in seconds. Posting each at once would hold a task, a message
and a pending REST call per person, and most would time out waiting behind the others in
discord.py's rate limiter: Discord lets a bot make 50 requests a second in all
(https://discord.com/developers/docs/topics/rate-limits#global-rate-limit). Here a notice
waiting costs a few hundred bytes (the channel and a message reference), ``workers`` post at a
time, each post bounded by ``timeout_s`` once it starts, and at most ``capacity`` wait; a notice
beyond that is logged, not posted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass

import discord

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Notice:
    channel: discord.abc.Messageable
    reference: discord.MessageReference
    text: str
    session: str


class Notices:
    """A bounded first-in-first-out queue of replies to people's messages.

    Args:
        workers: notices posted at once.
        capacity: notices waiting at most.
        timeout_s: bound on posting one notice, Discord's rate-limit waits included.
    """

    def __init__(self, *, workers: int = 4, capacity: int = 10_000,
                 timeout_s: float = 15.0) -> None:
        self.workers = workers
        self.capacity = capacity
        self.timeout_s = timeout_s
        self._queue: deque[_Notice] = deque()
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.posted = 0

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def tell(self, message: discord.Message, text: str, session: str) -> bool:
        """Queue a reply ``text`` to ``message``; False (logged) when ``capacity`` wait."""
        if len(self._queue) >= self.capacity:
            _log.warning("session %s: %d notices waiting; not telling the user %r", session,
                         len(self._queue), text)
            return False
        self._queue.append(_Notice(message.channel,
                                   message.to_reference(fail_if_not_exists=False), text,
                                   session))
        self._ready.set()
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._work(), name=f"notices:{n}")
                           for n in range(self.workers)]
        return True

    async def _work(self) -> None:
        while True:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()  # the worker's idle state: no timeout
                continue
            notice = self._queue.popleft()
            try:
                async with asyncio.timeout(self.timeout_s):
                    await notice.channel.send(notice.text, reference=notice.reference,
                                              mention_author=False)
                self.posted += 1
            except (discord.HTTPException, TimeoutError) as exc:
                _log.warning("session %s: could not tell the user %r: %s", notice.session,
                             notice.text, exc)
            except Exception:
                _log.exception("session %s: could not tell the user %r", notice.session,
                               notice.text)

    async def close(self) -> None:
        """Stop posting; notices still waiting are dropped."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._queue.clear()
