"""When a request goes out (docs/design.md#gateways).

Rules:
- A burst of messages from one person in one conversation within ``debounce_s`` is one
  request.
- A conversation has at most one request in flight; a later one waits in the conversation's
  queue (the person is told) and goes out when the answer to the earlier one arrives.
- At most ``max_in_flight`` requests are in flight across all conversations. A request over
  that bound waits in one first-in-first-out line and the person is told their position in it
  ("busy, number N in line"); each answer lets the head of the line go out.
- At most ``max_waiting`` requests wait (line and conversation queues together), so a flood
  holds bounded memory; a request beyond that is refused and the person told to try again.
  Nothing is dropped without a word.
- A request unanswered for ``stale_s`` stops holding its conversation and its in-flight slot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import discord
import msgspec

from core.tasks import cancel_and_wait
from protocol import ChatMessage

_log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0
"""How long ``close`` waits for each cancelled send to end (seconds)."""


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
"""Tells the person a request waits for the earlier one of its conversation."""
NotifyBusy = Callable[[Pending, int | None], Awaitable[None]]
"""Tells the person a request waits in the line at a position (1: next), or, with ``None``,
that it was refused because too many wait."""


@dataclass(eq=False)
class _Burst:
    pending: Pending
    timer: asyncio.Task[None] | None = None


class Intake:
    """Debounces bursts, queues requests per conversation and bounds what is in flight (the
    rules are in the module's docstring).

    Args:
        dispatch: sends one request.
        notify_queued: tells the person a request waits for its conversation.
        notify_busy: tells the person a request waits in the line, or was refused.
        debounce_s: bursts closer than this are merged (0: no debounce).
        stale_s: an unanswered request stops holding its conversation after this long.
        max_in_flight: requests in flight at once (0: unbounded).
        max_waiting: requests waiting at once, in the line and the conversation queues.
    """

    def __init__(self, dispatch: Dispatch, notify_queued: Notify, notify_busy: NotifyBusy, *,
                 debounce_s: float, stale_s: float, max_in_flight: int = 0,
                 max_waiting: int = 1000) -> None:
        self.dispatch = dispatch
        self.notify_queued = notify_queued
        self.notify_busy = notify_busy
        self.debounce_s = debounce_s
        self.stale_s = stale_s
        self.max_in_flight = max_in_flight
        self.max_waiting = max_waiting
        self._bursts: dict[tuple[str, str], _Burst] = {}
        self._active: dict[str, str] = {}
        """Session → the request holding it (in flight or in the line)."""
        self._holds: dict[str, list[str]] = {}
        """Request → the sessions it holds (its own, and the thread opened for it)."""
        self._queued: dict[str, deque[Pending]] = {}
        self._queued_count = 0
        self._in_flight: dict[str, float] = {}
        """Request message id → when it went out, oldest first."""
        self._line: deque[Pending] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake: asyncio.TimerHandle | None = None

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

    # ------------------------------------------------------------------ admission

    @property
    def waiting(self) -> int:
        """Requests waiting: in the line and in the conversation queues."""
        return len(self._line) + self._queued_count

    @property
    def in_flight(self) -> int:
        """Requests sent and not answered (nor stale)."""
        return len(self._in_flight)

    def busy(self, session: str) -> bool:
        """Whether a request of ``session`` is in flight (and not stale) or waits in line."""
        self._expire()
        return session in self._active

    async def _admit(self, pending: Pending) -> None:
        session, request_id = pending.request.session, pending.request.message_id
        if self.waiting >= self.max_waiting and (self.busy(session) or not self._slot_free()):
            _log.warning("session %s: request %s refused: %d requests waiting", session,
                         request_id, self.waiting)
            await self.notify_busy(pending, None)
            return
        if self.busy(session):
            self._queued.setdefault(session, deque()).append(pending)
            self._queued_count += 1
            _log.info("session %s: request %s queued", session, request_id)
            self._drain()  # only to set the wake-up for a request that never gets answered
            await self.notify_queued(pending)
            return
        self._hold(session, request_id)
        if not self._line and self._slot_free():
            self._in_flight[request_id] = time.monotonic()
            await self._send(pending)
            return
        self._line.append(pending)
        self._drain()
        if self._line and self._line[-1] is pending:
            _log.info("session %s: request %s waits in line at %d (%d in flight)", session,
                      request_id, len(self._line), len(self._in_flight))
            await self.notify_busy(pending, len(self._line))

    def _slot_free(self) -> bool:
        """Whether a request may go out now (stale requests are let go first)."""
        self._expire()
        return not self.max_in_flight or len(self._in_flight) < self.max_in_flight

    def _expire(self) -> None:
        """Let go of the requests unanswered for ``stale_s``, oldest first, as if answered
        (their answers may never come)."""
        now = time.monotonic()
        while self._in_flight:
            request_id, sent_at = next(iter(self._in_flight.items()))
            if now - sent_at <= self.stale_s:
                return
            _log.warning("sessions %s: request %s unanswered for %.0f s; not waiting for it",
                         ", ".join(self._holds.get(request_id, ())), request_id, self.stale_s)
            self._release(request_id)

    def _drain(self) -> None:
        """Send from the head of the line while slots are free; while requests wait, wake up
        as the oldest in-flight request goes stale."""
        self._expire()
        while self._line and self._slot_free():
            pending = self._line.popleft()
            self._in_flight[pending.request.message_id] = time.monotonic()
            self._spawn(self._send(pending), f"send:{pending.request.session}")
        if self.waiting and self._wake is None and self._in_flight:
            oldest = next(iter(self._in_flight.values()))
            delay = max(0.0, oldest + self.stale_s - time.monotonic()) + 0.01
            self._wake = asyncio.get_running_loop().call_later(delay, self._woken)

    def _woken(self) -> None:
        self._wake = None
        self._drain()

    async def _send(self, pending: Pending) -> None:
        session, request_id = pending.request.session, pending.request.message_id
        try:
            sent = await self.dispatch(pending)
        except Exception:
            _log.exception("session %s: dispatching %s failed", session, request_id)
            sent = False
        if not sent:
            self.finish(request_id)

    def _hold(self, session: str, request_id: str) -> None:
        self._active[session] = request_id
        self._holds.setdefault(request_id, []).append(session)

    def hold(self, session: str, request_id: str) -> None:
        """Let request ``request_id``, while in flight, also hold ``session`` (the thread
        opened for it)."""
        if session not in self._active and request_id in self._in_flight:
            self._hold(session, request_id)

    def finish(self, request_id: str) -> None:
        """The request is answered (or was not sent): free its slot and its conversations;
        the next request of each conversation goes to the head of the line, then the line
        moves."""
        self._release(request_id)
        self._drain()

    def _release(self, request_id: str) -> None:
        self._in_flight.pop(request_id, None)
        for session in self._holds.pop(request_id, ()):
            if self._active.get(session) != request_id:
                continue
            del self._active[session]
            queue = self._queued.get(session)
            if queue:
                following = queue.popleft()
                self._queued_count -= 1
                if not queue:
                    del self._queued[session]
                self._hold(session, following.request.message_id)
                self._line.appendleft(following)  # it has waited longer than the line

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
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            await cancel_and_wait(task, timeout_s=STOP_TIMEOUT_S, what="queued send")
        self._bursts.clear()
        self._queued.clear()
        self._queued_count = 0
        self._line.clear()
        self._active.clear()
        self._holds.clear()
        self._in_flight.clear()
