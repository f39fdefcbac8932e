"""The thin layer: the ``runtime`` scenario's five durable hops written directly on nats-py's raw
pull API, with no Switchboard code: the floor the runtime is measured against.

Each hop is its own OS process (``python -m bench._thin actor N --url URL``). Per hop:

1. a pull request kept open on the hop's durable consumer (``$JS.API.CONSUMER.MSG.NEXT``,
   batches of up to 32, 5 s expiry) delivers the task; messages pulled-or-processing are capped
   at the in-flight limit and more are asked for when half a batch of credit is free;
2. handled inline in the delivery callback: msgspec-decode the flat ``Task`` (~200 bytes, the
   fields of a ChatMessage), build the next one, encode it;
3. hops 1-4 publish it to the next hop's subject with ``Nats-Msg-Id`` (JetStream de-duplicates a
   redelivered hop's publish) and a reply subject on the hop's own ack inbox: the PubAck comes
   back to one subscription and settles the delivery through a dict entry, no future per
   message; hop 5 puts one KV entry (a publish to ``$KV.<bucket>.<key>``, the same way) and
   publishes the ``Reply`` to the outbox stream's subject (the client reads it with a core
   subscription), both at once, as the runtime's ``ctx.store`` and ``ctx.reply`` do;
4. one execution event per hop: a core publish of a small msgspec event on
   ``<prefix>.event.hop<N>.step.<session>``, stored by the events stream (the session is a
   subject token, as Switchboard's event subjects must have it: ``protocol/README.md``; every
   task of the bench is a new session, so each event is on a subject the stream has not seen,
   which costs the server about 40 µs a task in its per-subject index and garbage collector,
   measured with the runtime's events on one subject instead);
5. ``+ACK`` once every publish of the hop is confirmed (``-NAK`` if one failed or went
   unanswered for 10 s), from the PubAck callback.

Streams (file storage, like Switchboard's): one work-queue stream with a subject per hop, the
events and outbox streams (limits retention) and a KV bucket with direct get. Durable consumers:
explicit ack, ``max_ack_pending`` = 2 × the in-flight limit. Source of the pattern:
docs/measurements.md#nats-py-pull-consumers; pull protocol: ADR-13
(nats-io/nats-architecture-and-design).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass

import msgspec
import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

_log = logging.getLogger(__name__)

HOPS = 5
BATCH = 32
EXPIRES_S = 5.0
PUBLISH_TIMEOUT_S = 10.0
ACK_WAIT_S = 30.0
DUPLICATE_WINDOW_S = 120.0
LIMIT = 256
"""Messages pulled-or-processing per hop (the runtime scenario's ``max_in_flight``)."""


@dataclass(frozen=True)
class Names:
    """Subjects, streams, consumers and the bucket under one prefix (``thin``; the FastStream
    peer uses the same layout under ``ff``)."""

    prefix: str = "thin"

    def task(self, hop: int) -> str:
        return f"{self.prefix}.task.hop{hop}"

    @property
    def tasks_stream(self) -> str:
        return f"{self.prefix.upper()}_TASKS"

    def durable(self, hop: int) -> str:
        return f"{self.prefix}-hop{hop}"

    def event(self, hop: int, kind: str) -> str:
        """``<prefix>.event.hop<N>.<kind>.``: an event's subject without its session."""
        return f"{self.prefix}.event.hop{hop}.{kind}."

    @property
    def events_stream(self) -> str:
        return f"{self.prefix.upper()}_EVENTS"

    def outbox(self, origin: str) -> str:
        return f"{self.prefix}.out.{origin}"

    @property
    def outbox_stream(self) -> str:
        return f"{self.prefix.upper()}_OUTBOX"

    @property
    def bucket(self) -> str:
        return f"{self.prefix.upper()}_RUNS"

    def kv_subject(self, key: str) -> str:
        return f"$KV.{self.bucket}.{key}"


class Task(msgspec.Struct, frozen=True, tag="task"):
    """What travels between hops: a ChatMessage's fields, flat, and where the task is."""

    message_id: str
    session: str
    origin: str
    user_id: str
    text: str
    sent_at: float
    hop: int = 1
    tier: int = 1
    plan: tuple[str, ...] = ()


class Event(msgspec.Struct, frozen=True, tag="event"):
    """One execution event per hop (the fields of Switchboard's ExecutionEvent it fills)."""

    event_id: str
    session: str
    actor: str
    kind: str
    at: float
    pid: int


class Reply(msgspec.Struct, frozen=True, tag="reply"):
    """The answer to the client, on the outbox subject of its origin."""

    session: str
    origin: str
    in_reply_to: str
    text: str


task_decoder = msgspec.json.Decoder(Task)
reply_decoder = msgspec.json.Decoder(Reply)
encoder = msgspec.json.Encoder()


async def provision(js: JetStreamContext, names: Names, *, limit: int = LIMIT) -> None:
    """Create the streams, the hops' durable pull consumers and the KV bucket (the names must
    be new on this server)."""
    file = StorageType.FILE
    await js.add_stream(StreamConfig(
        name=names.tasks_stream, subjects=[names.task(h) for h in range(1, HOPS + 1)],
        retention=RetentionPolicy.WORK_QUEUE, storage=file,
        duplicate_window=DUPLICATE_WINDOW_S))
    await js.add_stream(StreamConfig(
        name=names.events_stream, subjects=[f"{names.prefix}.event.>"],
        retention=RetentionPolicy.LIMITS, storage=file, max_age=7 * 86400.0,
        max_bytes=1 << 30, duplicate_window=DUPLICATE_WINDOW_S))
    await js.add_stream(StreamConfig(
        name=names.outbox_stream, subjects=[f"{names.prefix}.out.>"],
        retention=RetentionPolicy.LIMITS, storage=file, max_age=3600.0,
        duplicate_window=DUPLICATE_WINDOW_S))
    for hop in range(1, HOPS + 1):
        await js.add_consumer(names.tasks_stream, ConsumerConfig(
            durable_name=names.durable(hop), ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL, ack_wait=ACK_WAIT_S,
            max_ack_pending=2 * limit, filter_subject=names.task(hop)))
    await js.create_key_value(KeyValueConfig(bucket=names.bucket, history=1, storage=file,
                                             direct=True))


class _Open:
    """A delivery whose publishes JetStream has not all confirmed yet."""

    __slots__ = ("deadline", "failed", "msg", "pending")

    def __init__(self, msg: Msg, pending: int, deadline: float) -> None:
        self.msg, self.pending, self.deadline, self.failed = msg, pending, deadline, False


class Hop:
    """One hop of the pipeline on a connected client (see the module docstring).

    Args:
        nc: a connected client.
        names: the pipeline's names.
        hop: 1 to ``HOPS``.
        limit: messages pulled-or-processing at once.
        batch: largest pull request, in messages.
        expires_s: lifetime of a pull request, in seconds.
    """

    def __init__(self, nc: Client, names: Names, hop: int, *, limit: int = LIMIT,
                 batch: int = BATCH, expires_s: float = EXPIRES_S) -> None:
        self._nc = nc
        self._names = names
        self._hop = hop
        self._limit = limit
        self._batch = max(1, min(batch, limit))
        self._threshold = max(1, self._batch // 2)
        self._expires_s = expires_s
        self._pull_subject = f"$JS.API.CONSUMER.MSG.NEXT.{names.tasks_stream}.{names.durable(hop)}"
        self._pull_body = json.dumps({"batch": self._batch,
                                      "expires": int(expires_s * 1e9)}).encode()
        self._next = names.task(hop + 1) if hop < HOPS else ""
        self._event_subject = names.event(hop, "step")
        self._actor = f"hop{hop}"
        self._requests: deque[list[float]] = deque()  # [remaining, expires_at]
        self._requested = 0
        self._open = 0
        self._wake = asyncio.Event()
        self._waiting: dict[str, _Open] = {}
        self._tokens = itertools.count(1)
        self._ack_prefix = ""
        self._deliver = ""
        self._event_prefix = uuid.uuid4().hex[:20]
        self._event_ids = itertools.count()
        self._pid = os.getpid()
        self._tasks: list[asyncio.Task[None]] = []
        self.failed = 0

    async def start(self) -> None:
        """Subscribe the delivery and ack inboxes, start pulling."""
        self._deliver = self._nc.new_inbox()
        await self._nc.subscribe(self._deliver, cb=self._on_delivery)
        inbox = self._nc.new_inbox()
        self._ack_prefix = inbox + "."
        await self._nc.subscribe(inbox + ".*", cb=self._on_puback)
        self._tasks = [asyncio.create_task(self._pump(), name=f"pull:{self._actor}"),
                       asyncio.create_task(self._sweep(), name=f"sweep:{self._actor}")]

    async def stop(self) -> None:
        """Stop pulling (what is not acked is redelivered after ``ack_wait``)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _pump(self) -> None:
        while True:
            now = time.monotonic()
            while self._requests and self._requests[0][1] <= now:
                self._requested -= int(self._requests.popleft()[0])
            free = self._limit - self._open - self._requested
            while free >= self._threshold or (free > 0 and not self._requests):
                size = min(self._batch, free)
                body = self._pull_body if size == self._batch else json.dumps(
                    {"batch": size, "expires": int(self._expires_s * 1e9)}).encode()
                # Forgotten here slightly after the server lets it expire.
                self._requests.append([size, time.monotonic() + self._expires_s + 0.5])
                self._requested += size
                await self._nc.publish(self._pull_subject, body, reply=self._deliver)
                free -= size
            self._wake.clear()
            wait = self._requests[0][1] - time.monotonic() if self._requests else 1.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.01, wait)):
                    await self._wake.wait()

    def _release(self) -> None:
        self._open -= 1
        free = self._limit - self._open - self._requested
        if free >= self._threshold or not self._requests:
            self._wake.set()

    async def _on_delivery(self, msg: Msg) -> None:
        if not msg.data:
            headers = msg.headers
            if headers and "Status" in headers:
                self._on_status(headers)
                return
        if self._requests:
            head = self._requests[0]
            head[0] -= 1
            self._requested -= 1
            if head[0] <= 0:
                self._requests.popleft()
        self._open += 1
        task = task_decoder.decode(msg.data)
        hop = self._hop
        msg_id = f"{hop}:{task.message_id}"
        if self._next:
            onward = Task(task.message_id, task.session, task.origin, task.user_id, task.text,
                          task.sent_at, hop + 1, min(hop, 3), ("answer",))
            delivery = _Open(msg, 1, time.monotonic() + PUBLISH_TIMEOUT_S)
            await self._publish(self._next, encoder.encode(onward), delivery, msg_id)
        else:
            delivery = _Open(msg, 2, time.monotonic() + PUBLISH_TIMEOUT_S)
            await self._publish(self._names.kv_subject(f"bench-thin.{task.session}"),
                                task.message_id.encode(), delivery, "")
            reply = Reply(task.session, task.origin, task.message_id, "done")
            await self._publish(self._names.outbox(task.origin), encoder.encode(reply),
                                delivery, msg_id)
        event = Event(f"{self._event_prefix}{next(self._event_ids):012x}", task.session,
                      self._actor, "step", time.time(), self._pid)
        await self._nc.publish(self._event_subject + task.session, encoder.encode(event))

    async def _publish(self, subject: str, payload: bytes, delivery: _Open,
                       msg_id: str) -> None:
        token = str(next(self._tokens))
        self._waiting[token] = delivery
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        await self._nc.publish(subject, payload, reply=self._ack_prefix + token, headers=headers)

    async def _on_puback(self, ack: Msg) -> None:
        delivery = self._waiting.pop(ack.subject[len(self._ack_prefix):], None)
        if delivery is None:
            return  # answered after the sweeper gave up on it
        if not ack.data or b'"error"' in ack.data:  # a status (503: no stream) or an error
            _log.warning("hop %d: publish failed: %s %s", self._hop, ack.headers, ack.data)
            delivery.failed = True
        delivery.pending -= 1
        if delivery.pending == 0:
            await self._settle(delivery.msg, b"-NAK" if delivery.failed else b"+ACK")

    async def _settle(self, msg: Msg, verb: bytes) -> None:
        if verb != b"+ACK":
            self.failed += 1
        with contextlib.suppress(nats.errors.Error):
            await self._nc.publish(msg.reply, verb)
        self._release()

    def _on_status(self, headers: dict[str, str]) -> None:
        status = headers.get("Status")
        if status == "100":
            return
        if self._requests and ("Nats-Pending-Messages" in headers or status in {"404", "408"}):
            self._requested -= int(self._requests.popleft()[0])
        elif status == "409":
            _log.warning("hop %d: pull refused: %s", self._hop, headers.get("Description"))
            self._requests.clear()
            self._requested = 0
        self._wake.set()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            expired = [t for t, d in self._waiting.items() if d.deadline <= now]
            for token in expired:
                delivery = self._waiting.pop(token)
                delivery.failed = True
                delivery.pending -= 1
                if delivery.pending == 0:
                    await self._settle(delivery.msg, b"-NAK")


async def serve(url: str, names: Names, hop: int, *, limit: int = LIMIT,
                stop: asyncio.Event | None = None) -> None:
    """Run hop ``hop`` until ``stop`` is set (SIGTERM / SIGINT when None)."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    nc = await nats.connect(url, name=f"{names.prefix}-hop{hop}", connect_timeout=5)
    try:
        worker = Hop(nc, names, hop, limit=limit)
        await worker.start()
        await stop.wait()
        await worker.stop()
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await nc.drain()


def main(argv: list[str] | None = None) -> int:
    """``python -m bench._thin actor N --url URL [--prefix P] [--limit L]``: one hop."""
    parser = argparse.ArgumentParser(prog="python -m bench._thin")
    parser.add_argument("command", choices=["actor"])
    parser.add_argument("hop", type=int, choices=range(1, HOPS + 1))
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", default="thin")
    parser.add_argument("--limit", type=int, default=LIMIT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    coro = serve(args.url, Names(args.prefix), args.hop, limit=args.limit)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
