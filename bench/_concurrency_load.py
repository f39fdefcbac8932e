"""Closed-loop conversations for the ``concurrency`` scenario: N people, each in their own
session, each sending the next message as soon as the previous one is answered.

Conversation ``i`` starts ``i / N`` of one model latency after the level begins, so arrivals
are spread evenly instead of coming in waves of N; each is its own person (``user_id``), as
2,000 concurrent conversations are, so no two of them write the same per-user memory key.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from bench._load import TROUBLE_KINDS
from gateway.bridge import Bridge
from protocol import ChatMessage, ExecutionEvent, Outbound, Progress, Reply, Subjects

_log = logging.getLogger(__name__)
_event_decoder = msgspec.json.Decoder(ExecutionEvent)
STEPS = ("sent", "classifier_start", "classifier_acked", "researcher_start", "call_start",
         "call_end", "answered")
"""Wall-clock marks of one request: the bench's send, the classifier's delivery start and its
ack (its ``handled`` event: ``at`` minus ``duration_ms``, and ``at``), the researcher's
delivery start (its ``handled`` event), the model call's start and end (``model_call``), the
bench's receipt of the Reply."""
SEGMENTS = (
    ("send → classifier", "sent", "classifier_start"),
    ("classifier → acked", "classifier_start", "classifier_acked"),
    ("classifier → researcher", "classifier_start", "researcher_start"),
    ("researcher → model call", "researcher_start", "call_start"),
    ("model call", "call_start", "call_end"),
    ("call end → Reply received", "call_end", "answered"),
)
_EVENT_MARKS = {("classifier", "handled"): ("classifier_start", "classifier_acked"),
                ("researcher", "handled"): ("researcher_start", ""),
                ("researcher", "model_call"): ("call_start", "call_end")}
TEXT = "hello"
"""A SIMPLE request: the classifier's keyword rules send it to the researcher."""


@dataclass
class LevelResult:
    """What one level saw. Times in seconds (``time.perf_counter``), latencies in seconds.

    Attributes:
        conversations: conversations run at once.
        sent: requests JetStream stored.
        done: (sent at, answered at, request key) of every first Reply.
        duplicates: Replies beyond the first for the same request.
        errors: Replies with ``error`` set, by error code.
        empty: Replies with no text (the router decided not to answer).
        roles: first Replies by the role that answered.
        lost: requests unanswered ``timeout_s`` after their send.
        progress: Progress messages received.
        trouble: execution events of ``bench._load.TROUBLE_KINDS``, by ``actor/kind``.
        trouble_details: the same events by ``actor/kind: detail`` (detail cut to 160
            characters).
        send_failed: sends that raised (each ends its conversation).
        marks: per answered request key, wall-clock seconds of its steps (``STEPS``), from
            the execution events of the classifier and the researcher.
    """

    conversations: int
    sent: int = 0
    done: list[tuple[float, float, str]] = field(default_factory=list)
    duplicates: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    empty: int = 0
    roles: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    progress: int = 0
    trouble: Counter[str] = field(default_factory=Counter)
    trouble_details: Counter[str] = field(default_factory=Counter)
    send_failed: int = 0
    marks: dict[str, dict[str, float]] = field(default_factory=dict)

    def finished_between(self, start: float, end: float) -> list[tuple[float, float]]:
        """The (sent, answered) pairs answered in ``[start, end)``."""
        return [(sent, answered) for sent, answered, _ in self.done if start <= answered < end]

    def segments_between(self, start: float, end: float) -> dict[str, list[float]]:
        """Milliseconds of each ``SEGMENTS`` step of the requests answered in
        ``[start, end)`` whose events were all seen."""
        out: dict[str, list[float]] = {name: [] for name, _, _ in SEGMENTS}
        for _, answered, key in self.done:
            marks = self.marks.get(key, {})
            if start <= answered < end and all(step in marks for step in STEPS):
                for name, first, last in SEGMENTS:
                    out[name].append((marks[last] - marks[first]) * 1000)
        return out


class Conversations:
    """Runs levels of closed-loop conversations through one gateway bridge.

    Args:
        nc: a connected client (not closed here).
        prefix: the deployment's subject prefix.
    """

    def __init__(self, nc: Client, prefix: str = "sb") -> None:
        self.nc = nc
        self.subjects = Subjects(prefix)
        self.token = uuid.uuid4().hex[:8]
        self.bridge = Bridge(nc, self.subjects, f"bench-{self.token}")
        self._pending: dict[str, tuple[float, asyncio.Future[float]]] = {}
        self._requests: dict[str, list[tuple[float, str]]] = {}
        """Session → (wall-clock send, key) of its requests, in order."""
        self._serial = itertools.count()
        self._result = LevelResult(0)
        self._subs: list[object] = []

    async def start(self) -> None:
        """Subscribe to the outbox and to the trouble events."""
        await self.bridge.start(self._on_outbound)
        for kind in TROUBLE_KINDS:
            self._subs.append(await self.nc.subscribe(
                self.subjects.event("*", kind), cb=self._on_trouble))
        for actor, kind in _EVENT_MARKS:
            self._subs.append(await self.nc.subscribe(self.subjects.event(actor, kind),
                                                      cb=self._on_step))

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()  # type: ignore[attr-defined]
        await self.bridge.stop()

    async def _on_outbound(self, message: Outbound) -> None:
        now = time.perf_counter()
        result = self._result
        match message:
            case Progress():
                result.progress += 1
            case Reply():
                entry = self._pending.get(message.in_reply_to)
                if entry is None:
                    return
                if entry[1].done():
                    result.duplicates += 1
                    return
                if message.error is not None:
                    result.errors[str(message.error)] += 1
                elif not message.text:
                    result.empty += 1
                result.roles[message.role or "-"] += 1
                entry[1].set_result(now)

    async def _on_trouble(self, msg: Msg) -> None:
        event = _event_decoder.decode(msg.data)
        if event.session.startswith(f"bench-{self.token}"):
            self._result.trouble[f"{event.actor}/{event.kind}"] += 1
            detail = f"{event.actor}/{event.kind}: {event.detail[:160]}"
            self._result.trouble_details[detail] += 1

    async def _on_step(self, msg: Msg) -> None:
        """Mark a step of the request the event belongs to: the session's latest request sent
        before the step started."""
        event = _event_decoder.decode(msg.data)
        requests = self._requests.get(event.session)
        names = _EVENT_MARKS.get((event.actor, event.kind))
        if not requests or names is None:
            return
        started = event.at - event.duration_ms / 1000
        key = next((k for sent, k in reversed(requests) if sent <= started + 0.005), None)
        if key is None:
            return
        marks = self._result.marks.setdefault(key, {})
        marks.setdefault(names[0], started)
        if names[1]:
            marks.setdefault(names[1], event.at)

    async def run(self, conversations: int, *, duration_s: float, stagger_s: float,
                  timeout_s: float = 60.0) -> LevelResult:
        """Run ``conversations`` closed loops; none sends after ``duration_s`` seconds, and
        the call returns when every request is answered or lost.

        Args:
            conversations: how many at once.
            duration_s: seconds from the level's start after which no request is sent.
            stagger_s: conversation ``i`` starts at ``i / conversations × stagger_s``.
            timeout_s: a request unanswered this long after its send is lost.
        """
        result = self._result = LevelResult(conversations)
        started = time.perf_counter()
        stop_at = started + duration_s
        level = next(self._serial)

        async def one(i: int) -> None:
            await asyncio.sleep(i * stagger_s / max(1, conversations))
            session = f"bench-{self.token}-{level}-c{i}"
            while time.perf_counter() < stop_at:
                if not await self._request(session, f"u{level}-{i}", timeout_s):
                    return

        await asyncio.gather(*(one(i) for i in range(conversations)))
        return result

    async def _request(self, session: str, user: str, timeout_s: float) -> bool:
        """One request of a conversation; False when the send failed."""
        key = f"{self.token}-{next(self._serial)}"
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        sent_at = time.perf_counter()
        self._pending[key] = (sent_at, future)
        wall = time.time()
        self._requests.setdefault(session, []).append((wall, key))
        message = ChatMessage(message_id=key, session=session, origin=self.bridge.origin,
                              user_id=user, user_name=user, text=TEXT, sent_at=wall)
        result = self._result
        try:
            await self.bridge.send(message)
        except Exception:  # counted and logged; the conversation ends
            _log.exception("send of %s failed", key)
            result.send_failed += 1
            return False
        result.sent += 1
        try:
            async with asyncio.timeout(timeout_s):
                answered = await future
        except TimeoutError:
            result.lost += 1
            _log.warning("request %s unanswered after %.0f s", key, timeout_s)
            return True
        marks = result.marks.setdefault(key, {})
        marks.update(sent=wall, answered=wall + answered - sent_at)
        result.done.append((sent_at, answered, key))
        return True
