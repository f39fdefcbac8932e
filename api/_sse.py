"""``GET /v1/runs/{run_id}/events``: a run's progress and execution events as Server-Sent Events
(https://html.spec.whatwg.org/multipage/server-sent-events.html), from its start — a client
that connects late first gets what is stored, then the rest — until the run ends; a client
that reconnects with ``Last-Event-ID`` gets what followed that event (``api._sse_frames``).

Three sources feed one stream: the run's record (a KV watch: ``event: run`` on each status
change), the API's outbox (``progress``, ``reply``, ``options``, replayed from the run's
creation by an ordered consumer and kept when ``in_reply_to`` is the run) and the session's
execution events (``<prefix>.event.*.*.<session>``, kept when their trace id is the run's;
``event:`` is the kind: ``classified``, ``model_call``, ``turn``, ...). ``data:`` is JSON. The
stream starts with ``retry:``; it ends with ``event: end`` once the run is finished or paused,
both replays delivered everything stored and the run's work is over (``RunWork``: the
reflection and the workspace sync come after the answer) — or ``drain_s`` after the run
settled, if some of that work never reports. A ``: keep-alive`` comment goes out every
``keepalive_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import replace

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from api._records import ORIGIN, RunRecord
from api._runs import RunService
from api._sse_frames import (
    END_ID,
    EVENTS,
    Cursor,
    Frame,
    RunWork,
    frame,
    outbound_frame,
    retry_field,
    run_event,
)
from api._store import decode_record
from api.errors import UnavailableError
from core.tasks import cancel_and_wait
from protocol import Subjects

_log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0
"""How long the end of a stream waits for its record watcher to stop (seconds)."""

KEEPALIVE_S = 15.0
"""Seconds between two ``: keep-alive`` comments when nothing else is sent."""
MAX_STREAM_S = 3600.0
"""Longest a stream stays open; it then ends with ``event: end`` (``reason: timeout``)."""
DRAIN_S = 60.0
"""Longest a stream waits, once its run settled, for the run's remaining work to report
(seconds); it then ends with ``reason: unfinished``."""
REPLAY_SLACK_S = 2.0
"""Replays start this long before the run was created (clocks of hosts differ)."""
SUBSCRIBE_TIMEOUT_S = 10.0

_encoder = msgspec.json.Encoder()


_WAKE = Frame("", b"")
"""Queued when a replay caught up: the stream checks whether it may end."""


class _Replay:
    """An ordered consumer of ``subject`` from ``start`` (Unix seconds), putting the frames
    ``convert`` makes of ``(data, stream sequence)`` into ``queue``, except those the client
    has (``cursor``); ``caught_up`` once everything stored was delivered (the nats-py KV
    watcher's rule: a message with no more pending, or nothing pending at all)."""

    def __init__(self, js: JetStreamContext, stream: str, subject: str, start: float,
                 convert: Callable[[bytes, int], Frame | None], queue: asyncio.Queue[Frame],
                 cursor: Cursor) -> None:
        self.js, self.stream, self.subject, self.start_at = js, stream, subject, start
        self.convert, self.queue, self.cursor = convert, queue, cursor
        self.caught_up = False
        self._sub: JetStreamContext.PushSubscription | None = None

    async def start(self) -> None:
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=datetime.datetime.fromtimestamp(self.start_at, datetime.UTC))
        self._sub = await self.js.subscribe(self.subject, cb=self._on, ordered_consumer=True,
                                            stream=self.stream, config=config)
        info = await self._sub.consumer_info()
        if not info.num_pending and not self._sub.delivered:
            self._caught_up()

    async def _on(self, msg: Msg) -> None:
        item = self.convert(msg.data, msg.metadata.sequence.stream)
        if item is not None and not self.cursor.sent(item):
            self.queue.put_nowait(item)
        if not msg.metadata.num_pending:
            self._caught_up()

    def _caught_up(self) -> None:
        if not self.caught_up:
            self.caught_up = True
            self.queue.put_nowait(_WAKE)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()


class RunEvents:
    """Streams runs' events (see the module docstring).

    Args:
        js: JetStream context.
        subjects: the deployment's names.
        runs: reads records and the current status.
        keepalive_s: seconds between keep-alive comments.
        max_s: longest stream, in seconds.
        drain_s: longest wait, in seconds, for a settled run's remaining work to report.
    """

    def __init__(self, js: JetStreamContext, subjects: Subjects, runs: RunService, *,
                 keepalive_s: float = KEEPALIVE_S, max_s: float = MAX_STREAM_S,
                 drain_s: float = DRAIN_S) -> None:
        self.js, self.subjects, self.runs = js, subjects, runs
        self.keepalive_s, self.max_s, self.drain_s = keepalive_s, max_s, drain_s

    async def follow(self, record: RunRecord, cursor: Cursor | None = None
                     ) -> AsyncGenerator[bytes, None]:
        """The stream's bytes, frame by frame, until the run ends (or ``max_s``); from the
        start, or after ``cursor`` (a ``Last-Event-ID``). The first chunk, ``retry:``, comes
        once both replays started.

        Raises:
            UnavailableError: the replays could not start (before anything was yielded).
            StoreError: the run's record could not be watched.
        """
        cursor = cursor or Cursor()
        queue: asyncio.Queue[Frame] = asyncio.Queue()
        work = RunWork()

        def _outbox(data: bytes, seq: int) -> Frame | None:
            item = outbound_frame(data, record.run_id, seq)
            if item is not None:
                work.saw_frame(item)
            return item

        def _event(data: bytes, seq: int) -> Frame | None:
            event = run_event(data, record.trace_id)
            if event is None:
                return None
            work.saw(event)
            return Frame(event.kind, data, EVENTS, seq)

        start = record.created_at - REPLAY_SLACK_S
        replays = [
            _Replay(self.js, self.subjects.outbox_stream, self.subjects.outbox(ORIGIN), start,
                    _outbox, queue, cursor),
            _Replay(self.js, self.subjects.events_stream,
                    self.subjects.event(session=record.session), start, _event, queue, cursor),
        ]
        records: asyncio.Queue[RunRecord] = asyncio.Queue()
        watcher = await self.runs.store.watch(record.run_id)
        watching = asyncio.create_task(_watch(watcher, records, queue),
                                       name=f"sse-watch:{record.run_id}")
        try:
            try:
                async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                    for replay in replays:
                        await replay.start()
            except (TimeoutError, nats.errors.Error) as exc:
                msg = f"the run's events cannot be read now: {exc or type(exc).__name__}"
                raise UnavailableError(msg) from exc
            yield retry_field()
            async for chunk in self._frames(record, cursor, queue, records, replays, work):
                yield chunk
        finally:
            await cancel_and_wait(watching, timeout_s=STOP_TIMEOUT_S,
                                  what=f"run {record.run_id} record watcher")
            with contextlib.suppress(nats.errors.Error):
                await watcher.stop()
            for replay in replays:
                await replay.stop()

    async def _frames(self, record: RunRecord, cursor: Cursor, queue: asyncio.Queue[Frame],
                      records: asyncio.Queue[RunRecord], replays: list[_Replay],
                      work: RunWork) -> AsyncIterator[bytes]:
        status = await self.runs.current_status(record)
        if status is not cursor.status:
            cursor = replace(cursor, status=status)
            yield frame("run", _encoder.encode(record.view(status)), str(cursor))
        deadline = time.monotonic() + self.max_s
        drained_by = math.inf
        reason = "ended"
        while True:
            while not records.empty():
                record = records.get_nowait()
                current = await self.runs.current_status(record)
                if current is not status:
                    status = current
                    cursor = replace(cursor, status=status)
                    yield frame("run", _encoder.encode(record.view(status)), str(cursor))
            if record.settled:
                if (all(r.caught_up for r in replays) and queue.empty()
                        and work.done(sent=bool(record.sent_at))):
                    break
                drained_by = min(drained_by, time.monotonic() + self.drain_s)
            now = time.monotonic()
            if now >= drained_by:
                reason = "unfinished"
                break
            if now >= deadline:
                reason = "timeout"
                break
            try:
                async with asyncio.timeout(min(self.keepalive_s, deadline - now,
                                               drained_by - now)):
                    item = await queue.get()
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if item is not _WAKE:
                cursor = cursor.after(item)
                yield frame(item.name, item.data, str(cursor))
        yield frame("end", _encoder.encode(
            {"run_id": record.run_id, "status": status, "reason": reason}), END_ID)


async def _watch(watcher: object, records: asyncio.Queue[RunRecord],
                 wake: asyncio.Queue[Frame]) -> None:
    """Put every new value of the watched record into ``records`` (and wake the stream)."""
    async for entry in watcher:  # type: ignore[attr-defined]
        if entry is None or not entry.value:
            continue
        try:
            records.put_nowait(decode_record(entry.value))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            _log.warning("unreadable run record skipped: %s", exc)
            continue
        wake.put_nowait(_WAKE)
