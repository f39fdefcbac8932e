"""When a request goes out (SPEC.md §7, issue 3 item 2): a burst of messages from one person in
one conversation within ``debounce_s`` becomes one request, and a conversation has at most one
request in flight — a later one waits in a queue (the person is told) and goes out when the
answer to the earlier one arrives."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import discord
import msgspec

from protocol import ChatMessage

_log = logging.getLogger(__name__)


@dataclass(eq=False)
class Pending:
    """A request not yet sent.

    Attributes:
        request: the protocol message (texts of a burst joined by newlines).
        anchor: the message answers reply to (the first of a burst).
        attachments: every attachment of the burst, to store before sending.
    """

    request: ChatMessage
    anchor: discord.Message
    attachments: list[discord.Attachment] = field(default_factory=list)

    def merge(self, later: Pending) -> None:
        """Fold a later message of the same burst into this request (addressed to the bot
        when any of them is)."""
        text = "\n".join(t for t in (self.request.text, later.request.text) if t)
        self.request = msgspec.structs.replace(
            self.request, text=text,
            attachments=self.request.attachments + later.request.attachments,
            addressed=self.request.addressed or later.request.addressed)
        self.attachments.extend(later.attachments)


Dispatch = Callable[[Pending], Awaitable[bool]]
"""Sends a request; False when it was refused (limits, attachments, not running)."""
Notify = Callable[[Pending], Awaitable[None]]
"""Tells the person their request is queued."""


@dataclass(eq=False)
class _Burst:
    pending: Pending
    timer: asyncio.Task[None] | None = None


class Intake:
    """Debounces bursts and queues requests per conversation.

    Args:
        dispatch: sends one request.
        notify_queued: tells the person a request is queued.
        debounce_s: bursts closer than this are merged (0: no debounce).
        stale_s: an unanswered request stops holding its conversation after this long.
    """

    def __init__(self, dispatch: Dispatch, notify_queued: Notify, *, debounce_s: float,
                 stale_s: float) -> None:
        self.dispatch = dispatch
        self.notify_queued = notify_queued
        self.debounce_s = debounce_s
        self.stale_s = stale_s
        self._bursts: dict[tuple[str, str], _Burst] = {}
        self._active: dict[str, tuple[str, float]] = {}
        """Session → (request message id, when it went out)."""
        self._queued: dict[str, deque[Pending]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ debounce

    async def submit(self, pending: Pending, *, debounce: bool = True) -> None:
        """Take a person's message; it goes out after the quiet period of its burst."""
        if not debounce or self.debounce_s <= 0:
            await self._admit(pending)
            return
        # A burst is one person in one channel: in a guild channel each message would start
        # its own session (its own thread), so the burst is keyed by channel, not session.
        key = (pending.request.channel_id or pending.request.session, pending.request.user_id)
        burst = self._bursts.get(key)
        if burst is None:
            burst = self._bursts[key] = _Burst(pending)
        else:
            burst.pending.merge(pending)
            if burst.timer is not None:
                burst.timer.cancel()
        burst.timer = self._spawn(self._flush_later(key, burst), f"debounce:{key[0]}")

    async def _flush_later(self, key: tuple[str, str], burst: _Burst) -> None:
        await asyncio.sleep(self.debounce_s)  # the quiet period itself, not a wait-for
        if self._bursts.get(key) is burst:
            del self._bursts[key]
            await self._admit(burst.pending)

    # ------------------------------------------------------------------ one at a time

    def busy(self, session: str) -> bool:
        """Whether a request of ``session`` is in flight (and not stale)."""
        entry = self._active.get(session)
        if entry is not None and time.monotonic() - entry[1] > self.stale_s:
            _log.warning("session %s: request %s unanswered for %.0f s; not waiting for it",
                         session, entry[0], self.stale_s)
            del self._active[session]
            return False
        return entry is not None

    async def _admit(self, pending: Pending) -> None:
        session = pending.request.session
        if self.busy(session):
            self._queued.setdefault(session, deque()).append(pending)
            _log.info("session %s: request %s queued", session, pending.request.message_id)
            await self.notify_queued(pending)
            return
        await self._send(pending)

    async def _send(self, pending: Pending) -> None:
        session, request_id = pending.request.session, pending.request.message_id
        self._active[session] = (request_id, time.monotonic())
        try:
            sent = await self.dispatch(pending)
        except Exception:
            _log.exception("session %s: dispatching %s failed", session, request_id)
            sent = False
        if not sent:
            self.finish(request_id)

    def hold(self, session: str, request_id: str) -> None:
        """Let request ``request_id`` also hold ``session`` (the thread opened for it)."""
        if session not in self._active:
            self._active[session] = (request_id, time.monotonic())

    def finish(self, request_id: str) -> None:
        """The request is answered: free its conversations and send what waited in them."""
        for session, (held, _) in list(self._active.items()):
            if held != request_id:
                continue
            del self._active[session]
            queue = self._queued.get(session)
            if queue:
                following = queue.popleft()
                if not queue:
                    del self._queued[session]
                self._active[session] = (following.request.message_id, time.monotonic())
                self._spawn(self._resend(following), f"queued:{session}")

    async def _resend(self, pending: Pending) -> None:
        self._active.pop(pending.request.session, None)
        await self._send(pending)

    def queued(self, session: str) -> int:
        """How many requests wait in ``session``."""
        return len(self._queued.get(session, ()))

    # ------------------------------------------------------------------ lifecycle

    def _spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Cancel pending bursts and queued sends (bounded: they are cancelled, not awaited
        to completion)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        self._bursts.clear()
        self._queued.clear()
