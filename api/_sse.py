"""``GET /v1/runs/{run_id}/events``: a run's progress and execution events as Server-Sent Events
(https://html.spec.whatwg.org/multipage/server-sent-events.html), from its start — a client
that connects late first gets what is stored, then the rest — until the run ends.

Three sources feed one stream: the run's record (a KV watch: ``event: run`` on each status
change), the API's outbox (``progress``, ``reply``, ``options``, replayed from the run's
creation by an ordered consumer and kept when ``in_reply_to`` is the run) and the session's
execution events (``<prefix>.event.*.*.<session>``, kept when their trace id is the run's;
``event:`` is the kind: ``classified``, ``model_call``, ``turn``, ...). ``data:`` is JSON. The
stream ends with ``event: end`` once the run is finished or paused and both replays have
delivered everything stored; a ``: keep-alive`` comment goes out every ``keepalive_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from api._records import ORIGIN, RunRecord
from api._runs import RunService
from api._store import decode_record
from api.errors import UnavailableError
from core.tasks import cancel_and_wait
from protocol import (
    ApprovalRequest,
    ConsolidatedOptions,
    Progress,
    Reply,
    Subjects,
    event_decoder,
    outbound_decoder,
)

_log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0
"""How long the end of a stream waits for its record watcher to stop (seconds)."""

KEEPALIVE_S = 15.0
"""Seconds between two ``: keep-alive`` comments when nothing else is sent."""
MAX_STREAM_S = 3600.0
"""Longest a stream stays open; it then ends with ``event: end`` (``reason: timeout``)."""
REPLAY_SLACK_S = 2.0
"""Replays start this long before the run was created (clocks of hosts differ)."""
SUBSCRIBE_TIMEOUT_S = 10.0

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class _Frame:
    name: str
    data: bytes


_WAKE = _Frame("", b"")
"""Queued when a replay caught up: the stream checks whether it may end."""


def frame(name: str, data: bytes, event_id: int) -> bytes:
    """One Server-Sent Event: ``id``, ``event`` and one ``data`` line (JSON has no newline)."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, name.encode(), data)


def outbound_frame(data: bytes, run_id: str) -> _Frame | None:
    """The frame of an outbox message of run ``run_id`` (None for other runs): the message's
    JSON, a Reply's files as their names only."""
    try:
        message = outbound_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if message.in_reply_to != run_id:
        return None
    match message:
        case Progress():
            return _Frame("progress", data)
        case Reply():
            body = msgspec.to_builtins(msgspec.structs.replace(message, files=()))
            body["files"] = [blob.name for blob in message.files]
            return _Frame("reply", _encoder.encode(body))
        case ConsolidatedOptions():
            return _Frame("options", data)
        case ApprovalRequest():
            return _Frame("approval", data)
    return None


def event_frame(data: bytes, trace_id: str) -> _Frame | None:
    """The frame of an execution event of the run whose trace id is ``trace_id``, else None."""
    try:
        event = event_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return _Frame(event.kind, data) if event.trace_id == trace_id else None


class _Replay:
    """An ordered consumer of ``subject`` from ``start`` (Unix seconds), putting the frames
    ``convert`` makes into ``queue``; ``caught_up`` once everything stored was delivered (the
    nats-py KV watcher's rule: a message with no more pending, or nothing pending at all)."""

    def __init__(self, js: JetStreamContext, stream: str, subject: str, start: float,
                 convert: Callable[[bytes], _Frame | None], queue: asyncio.Queue[_Frame]) -> None:
        self.js, self.stream, self.subject, self.start_at = js, stream, subject, start
        self.convert, self.queue = convert, queue
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
        item = self.convert(msg.data)
        if item is not None:
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
    """

    def __init__(self, js: JetStreamContext, subjects: Subjects, runs: RunService, *,
                 keepalive_s: float = KEEPALIVE_S, max_s: float = MAX_STREAM_S) -> None:
        self.js, self.subjects, self.runs = js, subjects, runs
        self.keepalive_s, self.max_s = keepalive_s, max_s

    async def follow(self, record: RunRecord) -> AsyncGenerator[bytes, None]:
        """The stream's bytes, frame by frame, until the run ends (or ``max_s``).

        Raises:
            UnavailableError: the replays could not start (before anything was yielded).
            StoreError: the run's record could not be watched.
        """
        queue: asyncio.Queue[_Frame] = asyncio.Queue()
        start = record.created_at - REPLAY_SLACK_S
        replays = [
            _Replay(self.js, self.subjects.outbox_stream, self.subjects.outbox(ORIGIN), start,
                    lambda data: outbound_frame(data, record.run_id), queue),
            _Replay(self.js, self.subjects.events_stream,
                    self.subjects.event(session=record.session), start,
                    lambda data: event_frame(data, record.trace_id), queue),
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
            async for chunk in self._frames(record, queue, records, replays):
                yield chunk
        finally:
            await cancel_and_wait(watching, timeout_s=STOP_TIMEOUT_S,
                                  what=f"run {record.run_id} record watcher")
            with contextlib.suppress(nats.errors.Error):
                await watcher.stop()
            for replay in replays:
                await replay.stop()

    async def _frames(self, record: RunRecord, queue: asyncio.Queue[_Frame],
                      records: asyncio.Queue[RunRecord], replays: list[_Replay]
                      ) -> AsyncIterator[bytes]:
        count = 0
        status = await self.runs.current_status(record)
        count += 1
        yield frame("run", _encoder.encode(record.view(status)), count)
        deadline = time.monotonic() + self.max_s
        reason = "ended"
        while True:
            while not records.empty():
                record = records.get_nowait()
                current = await self.runs.current_status(record)
                if current is not status:
                    status = current
                    count += 1
                    yield frame("run", _encoder.encode(record.view(status)), count)
            if record.settled and all(r.caught_up for r in replays) and queue.empty():
                break
            left = deadline - time.monotonic()
            if left <= 0:
                reason = "timeout"
                break
            try:
                async with asyncio.timeout(min(self.keepalive_s, left)):
                    item = await queue.get()
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if item is not _WAKE:
                count += 1
                yield frame(item.name, item.data, count)
        count += 1
        yield frame("end", _encoder.encode(
            {"run_id": record.run_id, "status": status, "reason": reason}), count)


async def _watch(watcher: object, records: asyncio.Queue[RunRecord],
                 wake: asyncio.Queue[_Frame]) -> None:
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
