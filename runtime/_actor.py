"""The base actor: handlers declared by message type, and the context a handler works with."""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import time
import typing
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from core.config import ActorSpec, Settings, Topology
from core.errors import BrokerError
from protocol import (
    HEADER_MSG_ID,
    ActorId,
    ConsolidatedOptions,
    ExecutionEvent,
    Flow,
    Progress,
    Reply,
    Subjects,
    encoder,
    session_token,
)
from runtime._publish import Publisher
from runtime._publish_trace import start_publish
from runtime._sessions import SessionStore
from runtime._tracing import current_span_ids

_log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0


def handler(func: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Mark an ``async def on_x(self, message: SomeMessage, ctx: MessageContext)`` as the
    actor's handler for ``SomeMessage`` (taken from the annotation)."""
    func.__sb_handler__ = True  # type: ignore[attr-defined]
    return func


class Closeable(Protocol):
    """Something the runtime closes when the process stops, and otherwise does not use."""

    async def close(self) -> None:
        """Release what it holds."""
        ...


@dataclass(slots=True)
class Services:
    """What every actor of a process shares: connection, JetStream, session store, the runs
    and checkpoints buckets, the artifact store (None when it could not be opened),
    configuration."""

    nc: Client
    js: JetStreamContext
    sessions: SessionStore
    topology: Topology
    settings: Settings
    subjects: Subjects
    runs: KeyValue
    checkpoints: KeyValue
    users: SessionStore
    """Per-user memory: a SessionState per bot and person (``actors.memory.user_key``)."""
    artifacts: Closeable | None = None
    """The deployment's artifact store (an ``artifacts.ArtifactStore``, opened by the
    composition root); the runtime only closes it, the actors narrow it
    (``actors.run_control.artifact_store``)."""
    publisher: Publisher | None = None
    """JetStream publishes confirmed through a callback (``MessageContext.send``); None makes
    every send wait for its own ack."""


class Confirmations:
    """The publishes of one delivery that JetStream has not confirmed yet (the dispatcher's
    deliveries are Confirmations).

    ``idle`` is called each time the count drops to zero; ``error`` keeps the first failure.
    """

    __slots__ = ("error", "pending")

    def __init__(self) -> None:
        self.pending = 0
        self.error: BrokerError | None = None

    def settled(self, error: BrokerError | None) -> None:
        """One publish is answered (``error`` None: stored)."""
        self.pending -= 1
        if error is not None and self.error is None:
            self.error = error
        if self.pending == 0:
            self.idle()

    def idle(self) -> None:
        """Every publish so far is answered (subclasses act on it)."""


class _EventIds:
    """Event ids unique per process: a random prefix drawn in each process (forked processes
    start with their parent's module state) and a counter; cheaper than ``uuid4`` (a
    ``getrandom`` system call per id)."""

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._counter = itertools.count()

    def next(self, pid: int) -> str:
        if pid != self._pid:
            self._pid, self._prefix = pid, uuid.uuid4().hex[:20]
            self._counter = itertools.count()
        return f"{self._prefix}{next(self._counter):012x}"


_event_ids = _EventIds()


class Actor:
    """Base of every actor role.

    Subclasses set ``role`` (the task subject token) and declare handlers with ``@handler``;
    the runtime rejects a message no handler accepts (it is dead-lettered, never dropped).
    ``on_start`` / ``on_stop`` run before the first message and after the last.
    """

    role: ClassVar[str] = ""
    handlers: ClassVar[dict[type, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[type, str] = {}
        for klass in reversed(cls.__mro__):
            for name, member in vars(klass).items():
                if getattr(member, "__sb_handler__", False):
                    hints = typing.get_type_hints(member)
                    params = [p for p in inspect.signature(member).parameters if p != "self"]
                    if not params or params[0] not in hints:
                        msg = f"{cls.__name__}.{name}: annotate the message parameter's type"
                        raise TypeError(msg)
                    found[hints[params[0]]] = name
        cls.handlers = found

    def __init__(self, services: Services, actor_id: ActorId) -> None:
        self.services = services
        self.actor_id = actor_id
        self.spec: ActorSpec = services.topology.actor(actor_id.role)
        self.log = logging.getLogger(f"actors.{actor_id.role}")
        self._event_subjects: dict[str, str] = {}
        self._pid = os.getpid()  # actors are made in the process that runs them

    @property
    def topology(self) -> Topology:
        return self.services.topology

    async def on_start(self) -> None:
        """Called once before the first message (open resources here)."""

    async def on_stop(self) -> None:
        """Called once after the last message (close resources here)."""

    async def emit(self, kind: str, session: str, **fields: Any) -> None:
        """Publish an ExecutionEvent on ``<prefix>.event.<role>.<kind>.<session>``.

        Events are observability, not work: a core publish that the events stream captures,
        without waiting for a JetStream ack, so an event costs the hot path about 2 µs
        (docs/measurements.md) and a broker outage delays nothing (but can lose events). It has no
        headers: its type and session are in the body, and each header costs the publisher
        about 1.2 µs (``protocol/README.md``). ``trace_id`` defaults to the current span's, and
        ``parent_span_id`` to the current span's id (the delivery's in a handler).
        """
        pid = self._pid
        if "trace_id" not in fields:
            fields["trace_id"], current = current_span_ids()
            fields.setdefault("parent_span_id", current)
        event = ExecutionEvent(
            event_id=_event_ids.next(pid), session=session, actor=self.actor_id.role,
            kind=kind, at=time.time(), pid=pid, **fields,
        )
        prefix = self._event_subjects.get(kind)
        if prefix is None:
            prefix = self._event_subjects[kind] = self.services.subjects.event_prefix(
                self.actor_id.role, kind)
        subject = prefix + session_token(session)
        try:
            await self.services.nc.publish(subject, encoder.encode(event))
        except nats.errors.Error as exc:
            self.log.warning("event %s for %s not published: %s", kind, session, exc)


@dataclass(slots=True)
class MessageContext:
    """One delivery being handled: where it came from and how to send onward.

    Publishes made through the context carry a ``Nats-Msg-Id`` derived from this delivery's
    stream sequence, so a redelivered task that publishes again is de-duplicated by JetStream
    instead of running the next step twice. The n-th confirmed publish of a delivery is
    ``<role>:<seq>:<target>:<n>`` (or ``...:<key>`` with a ``key``); Progress, which is sent as
    time passes (once a second while a model streams), counts apart (``...:p<n>``), so a
    redelivery that shows more or fewer progress updates still gives its answer the id the
    first delivery gave it (found by ``tests/test_faults.py``: a broker restart answered
    three requests twice).

    With ``confirmations`` (the dispatcher's deliveries), ``send`` and ``reply`` return once
    the message is handed to the client, and the delivery is acknowledged only after JetStream
    confirmed every one of them; a publish that fails makes the delivery fail (nak and
    redelivery, the publishes that did succeed de-duplicated by their ids). Without it each
    publish waits for its own ack.
    """

    actor: Actor
    session: str
    stream_seq: int
    deliveries: int
    _sent: int = field(default=0)
    confirmations: Confirmations | None = None
    _progress_sent: int = field(default=0)
    request_id: str = ""
    """The request this delivery works for (``request_of``), put on every event it emits."""
    tasks_sent: int = field(default=0)
    """Task messages ``send`` published (the ``sent`` of the delivery's ``handled`` event)."""

    def _msg_id(self, target: str, key: str, *, progress: bool = False) -> str:
        if key:
            return f"{self.actor.actor_id.role}:{self.stream_seq}:{target}:{key}"
        if progress:
            self._progress_sent += 1
            return f"{self.actor.actor_id.role}:{self.stream_seq}:{target}:p{self._progress_sent}"
        self._sent += 1
        return f"{self.actor.actor_id.role}:{self.stream_seq}:{target}:{self._sent}"

    def _headers(self, target: str, key: str = "", *, progress: bool = False
                 ) -> dict[str, str]:
        """``Nats-Msg-Id``: the header every publish of an actor needs (the type and session
        are in the body; ``protocol/README.md``); ``start_publish`` adds the trace context."""
        return {HEADER_MSG_ID: self._msg_id(target, key, progress=progress)}

    async def send(self, role: str, message: msgspec.Struct, *, key: str = "",
                   deadline: bool = False) -> None:
        """Publish ``message`` to ``role``'s task subject; this delivery is acked only once
        JetStream stored it (see the class docstring).

        Args:
            key: names this publish within the delivery, so that a redelivery publishing it
                again — after a different number of other publishes — gets the same
                ``Nats-Msg-Id`` and JetStream drops the copy (within the streams' 2-minute
                duplicate window). Without it, publishes are numbered in order.
            deadline: the message is a deadline that waits in the stream until it is due
                (its handler raises ``NotDueError`` before): not counted in ``tasks_sent``,
                since the request's work does not wait for it (when it decides something,
                its handler says so in an event of its own: ``approval_decided``).

        Raises:
            BrokerError: no stream stored it within 10 s (only without ``confirmations``; with
                them the delivery fails instead).
        """
        await self._publish(self.actor.services.subjects.task(role), message, role, key)
        if not deadline:
            self.tasks_sent += 1

    async def reply(self, origin: str, message: msgspec.Struct, *, key: str = "") -> None:
        """Publish a Reply / ConsolidatedOptions to the gateway ``origin`` (stored by the
        outbox stream before this delivery is acked, as for ``send``; ``key`` as there).

        A Progress is advisory and superseded by the next one: it is published without
        waiting for JetStream's confirmation (the outbox stream still stores it, in order
        with the Reply that follows on the same connection; a broker outage can lose it). A
        streamed answer sends one a second, and a confirmed publish costs its sender a
        PubAck to receive and match (receiving a message costs about 4 µs of client CPU,
        docs/measurements.md).

        A Reply or ConsolidatedOptions is also an ``answered`` event: the time the answer
        left, its ``flow`` and ``role``, and in ``detail`` the Reply's error code (``silent``:
        an empty Reply, the router chose not to answer), so a request's latency runs from its
        first step to this event.

        Raises:
            BrokerError: the outbox stream did not store it within 10 s (only without
                ``confirmations``; never for a Progress).
        """
        subject = self.actor.services.subjects.outbox(origin)
        destination = self.actor.services.subjects.prefix + ".out.{origin}"
        if isinstance(message, Progress):
            headers = self._headers(f"out-{origin}", key, progress=True)
            span = start_publish(destination, subject, headers, headers[HEADER_MSG_ID])
            try:
                await self.actor.services.nc.publish(subject, encoder.encode(message),
                                                     headers=headers)
            except nats.errors.Error as exc:
                self.actor.log.warning("session %s: progress not published: %s",
                                       self.session, exc)
            finally:
                if span is not None:
                    span.end()
            return
        await self._publish(subject, message, f"out-{origin}", key, destination)
        await self._answered(message)

    async def _answered(self, message: msgspec.Struct) -> None:
        match message:
            case Reply():
                silent = not (message.text or message.files or message.error)
                await self.emit("answered", flow=message.flow.value, role=message.role,
                                detail="silent" if silent else str(message.error or ""))
            case ConsolidatedOptions():
                await self.emit("answered", flow=Flow.BRANCH.value)

    async def _publish(self, subject: str, message: msgspec.Struct, target: str,
                       key: str = "", destination: str = "") -> None:
        """Publish ``message`` with its ids and trace context (a PRODUCER span named after
        ``destination``, the subject or its template, when spans are recorded)."""
        headers = self._headers(target, key)
        span = start_publish(destination or subject, subject, headers, headers[HEADER_MSG_ID])
        try:
            publisher = self.actor.services.publisher
            confirmations = self.confirmations
            if publisher is None or confirmations is None:
                await _js_publish(self.actor.services.js, subject, message, headers)
                return
            confirmations.pending += 1
            await publisher.publish(subject, encoder.encode(message), headers,
                                    confirmations.settled)
        finally:
            if span is not None:
                span.end()

    async def store(self, bucket: str, key: str, value: bytes) -> None:
        """Put ``value`` under ``key`` in the KV bucket named ``bucket``, confirmed before this
        delivery is acked, like ``send``: for state the handler writes and does not read back
        (a compare-and-set needs ``KeyValue.update`` and its revision instead).

        A KV put is a JetStream publish to ``$KV.<bucket>.<key>`` (ADR-8, "JetStream based
        Key-Value Stores", nats-io/nats-architecture-and-design); here it goes through the
        callback publisher, without the future, timer and task that awaiting
        ``KeyValue.put`` in a handler costs (about 45 µs of CPU per put in the bench's
        ``runtime`` scenario). A redelivered task puts the same value again.

        Raises:
            BrokerError: the bucket did not store it within 10 s (only without
                ``confirmations``; with them the delivery fails instead).
        """
        subject = f"$KV.{bucket}.{key}"
        publisher = self.actor.services.publisher
        confirmations = self.confirmations
        if publisher is None or confirmations is None:
            try:
                await self.actor.services.js.publish(subject, value, timeout=PUBLISH_TIMEOUT_S)
            except (TimeoutError, nats.errors.Error) as exc:
                msg = f"KV put of {key} in {bucket} failed: {exc or type(exc).__name__}"
                raise BrokerError(msg) from exc
            return
        confirmations.pending += 1
        await publisher.publish(subject, value, None, confirmations.settled)

    async def emit(self, kind: str, **fields: Any) -> None:
        """Publish an ExecutionEvent for this session and request (``request_id``)."""
        if self.request_id:
            fields.setdefault("request_id", self.request_id)
        await self.actor.emit(kind, self.session, **fields)


async def _js_publish(
    js: JetStreamContext, subject: str, message: msgspec.Struct, headers: dict[str, str]
) -> None:
    try:
        await js.publish(subject, encoder.encode(message), headers=headers,
                         timeout=PUBLISH_TIMEOUT_S)
    except nats.errors.NoRespondersError as exc:
        msg = f"no stream stores {subject}: is Switchboard provisioned on this server?"
        raise BrokerError(msg) from exc
    except (TimeoutError, nats.errors.Error) as exc:
        msg = f"publish to {subject} failed: {exc or type(exc).__name__}"
        raise BrokerError(msg) from exc
