"""Closed-loop load through the gateway boundary: a ``gateway.bridge.Bridge`` sends
ChatMessages and collects the Replies on its origin's outbox.

``in_flight`` workers each send one request, wait for it to finish, then send the next. A
request is finished at its Reply, or, with ``until="reflection"``, at the reflector's
``reflection`` execution event for its session (the last of the SEQUENTIAL flow's five durable
steps; the Reply comes out of the third). Every request has its own session, as people in
different channels do.
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
from typing import Literal

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from gateway.bridge import Bridge
from protocol import ChatMessage, ExecutionEvent, Outbound, Progress, Reply, Subjects

_log = logging.getLogger(__name__)

Until = Literal["reply", "reflection"]
_event_decoder = msgspec.json.Decoder(ExecutionEvent)
TROUBLE_KINDS = ("retry", "dead_letter", "model_error", "failed")
"""Execution event kinds that mean something went wrong (``protocol.ExecutionEvent``)."""
SETTLE_S = 1.0
"""Seconds to keep listening after the last request, to see late duplicates."""


@dataclass
class LoadResult:
    """What one load run saw. Times in seconds, latencies in milliseconds.

    Attributes:
        sent: requests JetStream stored.
        replies: first Replies received (one per request at most).
        finished: requests finished (Reply, or reflection event with ``until="reflection"``).
        wall_s: first send to last finish.
        reply_ms: send → Reply latency of each replied request.
        finish_ms: send → finish latency of each finished request.
        duplicates: Replies (or reflections) beyond the first for the same request.
        error_replies: Replies with ``error`` set, by error code.
        lost: requests unfinished when their timeout passed.
        trouble: execution events of ``TROUBLE_KINDS`` seen, by ``actor/kind``.
        progress: Progress messages received.
    """

    sent: int = 0
    replies: int = 0
    finished: int = 0
    wall_s: float = 0.0
    reply_ms: list[float] = field(default_factory=list)
    finish_ms: list[float] = field(default_factory=list)
    duplicates: int = 0
    error_replies: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    trouble: Counter[str] = field(default_factory=Counter)
    progress: int = 0

    @property
    def tasks_per_s(self) -> float:
        """Finished requests per second of wall time."""
        return self.finished / self.wall_s if self.wall_s > 0 else 0.0


@dataclass
class _Pending:
    sent_at: float
    session: str
    replied: asyncio.Future[float]
    reflected: asyncio.Future[float]


class LoadGenerator:
    """Sends requests through one bridge and matches what comes back.

    Args:
        nc: a connected client (not closed here).
        prefix: the deployment's subject prefix.
    """

    def __init__(self, nc: Client, prefix: str = "sb") -> None:
        self.nc = nc
        self.subjects = Subjects(prefix)
        self.run_token = uuid.uuid4().hex[:8]
        self.bridge = Bridge(nc, self.subjects, f"bench-{self.run_token}")
        self._pending: dict[str, _Pending] = {}
        self._by_session: dict[str, str] = {}
        self._result = LoadResult()
        self._serial = itertools.count()
        self._subs: list[object] = []

    async def start(self) -> None:
        """Subscribe to the outbox and to the reflection and trouble events."""
        await self.bridge.start(self._on_outbound)
        self._subs.append(await self.nc.subscribe(
            self.subjects.event("reflector", "reflection"), cb=self._on_reflection))
        for kind in TROUBLE_KINDS:
            self._subs.append(await self.nc.subscribe(
                self.subjects.event("*", kind), cb=self._on_trouble))

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()  # type: ignore[attr-defined]
        await self.bridge.stop()

    async def _on_outbound(self, message: Outbound) -> None:
        now = time.perf_counter()
        match message:
            case Progress():
                self._result.progress += 1
            case Reply():
                pending = self._pending.get(message.in_reply_to)
                if pending is None:
                    return
                if pending.replied.done():
                    self._result.duplicates += 1
                    return
                if message.error is not None:
                    self._result.error_replies[str(message.error)] += 1
                pending.replied.set_result(now)

    async def _on_reflection(self, msg: Msg) -> None:
        now = time.perf_counter()
        event = _event_decoder.decode(msg.data)
        key = self._by_session.get(event.session)
        pending = self._pending.get(key) if key else None
        if pending is None:
            return
        if pending.reflected.done():
            self._result.duplicates += 1
            return
        pending.reflected.set_result(now)

    async def _on_trouble(self, msg: Msg) -> None:
        event = _event_decoder.decode(msg.data)
        if event.session.startswith(f"bench-{self.run_token}"):
            self._result.trouble[f"{event.actor}/{event.kind}"] += 1

    async def run(self, text: str, *, requests: int, in_flight: int, until: Until = "reply",
                  timeout_s: float = 60.0, budget_s: float = 120.0,
                  settle_s: float = SETTLE_S) -> LoadResult:
        """Send ``requests`` copies of ``text`` with ``in_flight`` workers.

        Args:
            text: what the person says.
            requests: how many requests, at most.
            in_flight: requests outstanding at once.
            until: what finishes a request (see the module docstring).
            timeout_s: a request unfinished this long after its send counts as lost.
            budget_s: no request is sent after this many seconds.
            settle_s: seconds to wait after the last request finished, for a Reply that
                comes twice to be counted (0 for a warm-up, whose counts are not kept).

        Returns:
            The result of this run only (counters start at zero).
        """
        self._result = LoadResult()
        indexes = iter(range(requests))
        started = time.perf_counter()
        stop_sending = started + budget_s
        last_finish = [started]

        async def worker() -> None:
            for _ in indexes:
                if time.perf_counter() > stop_sending:
                    return
                await self._one(text, until, timeout_s, last_finish)

        await asyncio.gather(*(worker() for _ in range(max(1, in_flight))))
        await asyncio.sleep(settle_s)
        result = self._result
        result.wall_s = last_finish[0] - started
        return result

    async def _one(self, text: str, until: Until, timeout_s: float,
                   last_finish: list[float]) -> None:
        serial = next(self._serial)
        key = f"{self.run_token}-{serial}"
        session = f"bench-{key}"
        loop = asyncio.get_running_loop()
        pending = _Pending(time.perf_counter(), session, loop.create_future(),
                           loop.create_future())
        self._pending[key] = pending
        self._by_session[session] = key
        message = ChatMessage(message_id=key, session=session, origin=self.bridge.origin,
                              user_id="bench", user_name="bench", text=text,
                              sent_at=time.time())
        result = self._result
        await self.bridge.send(message)
        result.sent += 1
        done = pending.replied if until == "reply" else pending.reflected
        try:
            async with asyncio.timeout(timeout_s):
                finished_at = await done
        except TimeoutError:
            result.lost += 1
            _log.warning("request %s unfinished after %.0f s (replied: %s)", key, timeout_s,
                         pending.replied.done())
            return
        finally:
            if pending.replied.done():
                result.replies += 1
                result.reply_ms.append((pending.replied.result() - pending.sent_at) * 1000)
        result.finished += 1
        result.finish_ms.append((finished_at - pending.sent_at) * 1000)
        last_finish[0] = max(last_finish[0], finished_at)


async def connect(url: str) -> Client:
    """A plain nats-py connection for the load generator (no reconnects: a broken server
    should fail the run, not hide in it)."""
    return await nats.connect(url, name="bench", allow_reconnect=False, connect_timeout=5)
