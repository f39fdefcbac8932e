"""Short notices to people about their requests: "queued", "busy, number N in line", "too
busy", posted in order by a few workers (``Notices``); a refusal or a failure, replied at once
(``say``).

A flood makes thousands of them in seconds. Posting each at once would hold a task, a message
and a pending REST call per person, and most would time out waiting behind the others in
discord.py's rate limiter: Discord lets a bot make 50 requests a second in all
(https://discord.com/developers/docs/topics/rate-limits#global-rate-limit). Here a notice
waiting costs a few hundred bytes (the channel and a message reference), ``workers`` post at a
time, each post bounded by ``timeout_s`` once it starts, and at most ``capacity`` wait; a notice
beyond that is logged, not posted.

Each channel has its own rate limit too (a bucket per channel, a few messages a second), so
the workers take channels in turn, one notice of a channel at a time: a flood in one busy
channel holds one worker while it waits out that channel's limit, and notices to everyone else
keep going out. Within a channel, notices go out in the order they were made.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

import discord

from core.tasks import cancel_and_wait
from gateway.discord._status import REST_TIMEOUT_S

_log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0
"""How long ``close`` waits for each worker to end (seconds)."""


@dataclass(frozen=True, slots=True)
class _Notice:
    channel: discord.abc.Messageable
    reference: discord.MessageReference
    text: str
    session: str


async def say(message: discord.Message, text: str, session: str, *,
              timeout_s: float = REST_TIMEOUT_S) -> None:
    """Reply ``text`` to ``message`` now, within ``timeout_s`` (``session`` names it in the
    log); a failure is logged, never raised."""
    try:
        async with asyncio.timeout(timeout_s):
            await message.reply(text, mention_author=False)
    except (discord.HTTPException, TimeoutError) as exc:
        _log.warning("session %s: could not tell the user %r: %s", session, text, exc)


class Notices:
    """Bounded per-channel queues of replies to people's messages, served in turn (see the
    module docstring).

    Args:
        workers: notices posted at once (never two of one channel).
        capacity: notices waiting at most, in all channels.
        timeout_s: bound on posting one notice, Discord's rate-limit waits included.
    """

    def __init__(self, *, workers: int = 4, capacity: int = 10_000,
                 timeout_s: float = REST_TIMEOUT_S) -> None:
        self.workers = workers
        self.capacity = capacity
        self.timeout_s = timeout_s
        self._queues: dict[int, deque[_Notice]] = {}
        """Channel id → its notices not yet taken by a worker."""
        self._turns: deque[int] = deque()
        """Channels with notices and no worker on them, in the order they get a turn."""
        self._waiting = 0
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def waiting(self) -> int:
        return self._waiting

    def tell(self, message: discord.Message, text: str, session: str) -> bool:
        """Queue a reply ``text`` to ``message``; False (logged) when ``capacity`` wait."""
        if self._waiting >= self.capacity:
            _log.warning("session %s: %d notices waiting; not telling the user %r", session,
                         self._waiting, text)
            return False
        channel_id = message.channel.id
        queue = self._queues.get(channel_id)
        if queue is None:
            queue = self._queues[channel_id] = deque()
            self._turns.append(channel_id)  # a channel being posted to is queued again after
        queue.append(_Notice(message.channel, message.to_reference(fail_if_not_exists=False),
                             text, session))
        self._waiting += 1
        self._ready.set()
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._work(), name=f"notices:{n}")
                           for n in range(self.workers)]
        return True

    async def _work(self) -> None:
        while True:
            if not self._turns:
                self._ready.clear()
                await self._ready.wait()  # the worker's idle state: no timeout
                continue
            channel_id = self._turns.popleft()
            queue = self._queues[channel_id]
            notice = queue.popleft()
            self._waiting -= 1
            try:
                await self._post(notice)
            finally:
                if queue:
                    self._turns.append(channel_id)  # its next notice, after the others'
                    self._ready.set()
                else:
                    del self._queues[channel_id]

    async def _post(self, notice: _Notice) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                await notice.channel.send(notice.text, reference=notice.reference,
                                          mention_author=False)
        except (discord.HTTPException, TimeoutError) as exc:
            _log.warning("session %s: could not tell the user %r: %s", notice.session,
                         notice.text, exc)
        except Exception:
            _log.exception("session %s: could not tell the user %r", notice.session,
                           notice.text)

    async def close(self) -> None:
        """Stop posting; notices still waiting are dropped."""
        for task in self._tasks:
            await cancel_and_wait(task, timeout_s=STOP_TIMEOUT_S, what="notice worker")
        self._tasks = []
        self._queues.clear()
        self._turns.clear()
        self._waiting = 0
