"""The gateway's side of NATS: send a person's message to the actors, receive what comes back.

Every gateway instance has an ``origin`` (one subject token); actors publish Progress, Reply and
ConsolidatedOptions for its requests to ``<prefix>.out.<origin>``, which the outbox stream
stores. A Discord gateway reads them through a durable consumer, so answers published while it
was down are delivered when it comes back.

A terminal chat (``Bridge.start`` without ``durable``) reads them through a JetStream ordered
consumer: an ephemeral push consumer (one replica, in memory, no acks) that starts at the end of
the stream. nats-py recreates it from the stream sequence after the last one delivered when its
idle heartbeats stop (the node that held it was lost) or a sequence gap shows; the bridge does
the same after each reconnect of a connection it opened (a message lost on the way to a dead
node shows no gap to nats-py until a later one comes). So an answer stored while the chat's
node, its consumer's node or its connection was lost is still delivered; a core subscription,
used before, lost it. A durable consumer would do too, at the price
of a replicated consumer (a Raft group on three nodes) per chat; an ordered one is one
in-memory consumer, deleted by ``stop`` or, when its reader is gone, by the server after
``ORDERED_INACTIVE_S``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from opentelemetry import trace

from core.config import Settings
from core.errors import AuthError, BrokerError, TLSError
from core.tasks import cancel_and_wait
from gateway.errors import NotRunningError
from natsauth import refusal
from protocol import (
    HEADER_MSG_ID,
    HEADER_SESSION,
    HEADER_TYPE,
    ChatMessage,
    Control,
    ControlAction,
    Outbound,
    Subjects,
    check_token,
    encoder,
    outbound_decoder,
)
from runtime import setup_tracing, start_root_publish
from runtime.bus import check_running, connect

_log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0
FETCH_TIMEOUT_S = 5.0
"""How long one pull of the durable outbox waits for a message (seconds)."""
STOP_TIMEOUT_S = 10.0
"""How long ``Bridge.stop`` waits for the outbox message being handled, and then for the pull
loop to end (seconds each)."""
HANDLED_WINDOW = 4096
"""Outbox messages a durable bridge remembers having handled, by ``Nats-Msg-Id`` (by stream
sequence for a message published without one): an ack lost in a broker restart makes JetStream
deliver the message again (at-least-once), and the person must not see the answer twice (found
by ``tests/test_faults.py``). The id, not the sequence, names the message: a copy that JetStream
stored again (published after the stream's duplicate window, or after a crash lost the stored
original) has a new sequence and the same id, and a sequence a crashed server reuses belongs
to a new message."""
ORDERED_HEARTBEAT_S = 1.0
"""Idle heartbeat of a non-durable bridge's ordered consumer (seconds): nats-py recreates the
consumer when none came for two to four of them (the node that held it was lost)."""
ORDERED_INACTIVE_S = 5.0
"""The server deletes an ordered consumer nobody has listened to for this long (seconds): one
whose bridge ended without ``stop`` (a chat killed), or was replaced after a reconnect."""
FOLLOW_RETRY_S = 1.0
"""Wait between attempts to create the ordered consumer while JetStream does not answer
(seconds): there is no meta leader for a few seconds after the node that was it is lost."""
FOLLOW_START_TIMEOUT_S = 15.0
"""How long ``Bridge.start`` tries to create the ordered consumer (seconds)."""
DELETE_TIMEOUT_S = 2.0
"""How long ``Bridge.stop`` tries to delete the ordered consumer (seconds)."""
OutboundHandler = Callable[[Outbound], Awaitable[None]]


class Bridge:
    """Connects one gateway instance (``origin``) to the actors over NATS.

    Args:
        nc: a connected client (the bridge does not close it unless it opened it).
        subjects: subject names for the deployment's prefix.
        origin: this gateway's token, e.g. ``discord-main`` or ``term-3f2a``.
    """

    def __init__(self, nc: Client, subjects: Subjects, origin: str) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        self.subjects = subjects
        self.origin = check_token(origin, "origin")
        self._ordered: JetStreamContext.PushSubscription | None = None
        self._on_outbound: OutboundHandler | None = None
        self._next_seq = 0  # the outbox stream sequence the ordered consumer reads next
        self._refollow_task: asyncio.Task[None] | None = None
        self._pull_task: asyncio.Task[None] | None = None
        self._handled: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._handling = asyncio.Lock()
        self._stopping = False
        self._psub: Any = None
        self._owns_connection = False

    async def start(self, on_outbound: OutboundHandler, *, durable: bool = False) -> None:
        """Begin delivering what actors publish to this origin's outbox to ``on_outbound``.

        With ``durable``, a durable consumer named after the origin keeps undelivered messages
        across restarts and a message is acked only after ``on_outbound`` returns (one
        delivered again because its ack was lost is recognised by its ``Nats-Msg-Id`` and
        not handled twice: ``HANDLED_WINDOW``); without it, an ordered consumer delivers
        what is stored from now on, across a lost node or connection (module docstring).

        Raises:
            NotRunningError: Switchboard's streams do not exist on the server, or JetStream
                did not create the ordered consumer within ``FOLLOW_START_TIMEOUT_S`` (the
                message says why).
        """
        await self._check()
        self._stopping = False
        subject = self.subjects.outbox(self.origin)
        if not durable:
            self._on_outbound, self._next_seq = on_outbound, 0
            try:
                async with asyncio.timeout(FOLLOW_START_TIMEOUT_S):
                    self._ordered = await self._follow_retrying()
            except TimeoutError as exc:
                msg = (f"JetStream did not open the outbox within "
                       f"{FOLLOW_START_TIMEOUT_S:.0f} s")
                raise NotRunningError(msg) from exc
            return
        name = f"gateway-{self.origin}"
        config = ConsumerConfig(
            durable_name=name, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW,
            filter_subject=subject, ack_wait=30.0, max_deliver=5,
        )
        try:
            await self.js.add_consumer(self.subjects.outbox_stream, config)
        except nats.js.errors.BadRequestError:
            _log.debug("consumer %s exists", name)
        psub = await self.js.pull_subscribe_bind(name, stream=self.subjects.outbox_stream)
        self._psub = psub
        self._pull_task = asyncio.create_task(self._pull_loop(psub, on_outbound),
                                              name=f"outbox:{self.origin}")

    async def _follow(self) -> JetStreamContext.PushSubscription:
        """Create an ordered consumer of this origin's outbox from ``_next_seq`` (from the
        stream's end when 0) and subscribe to it (nats-py's ordered-consumer settings)."""
        start: dict[str, Any] = (
            {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": self._next_seq}
            if self._next_seq else {"deliver_policy": DeliverPolicy.NEW})
        config = ConsumerConfig(
            filter_subject=self.subjects.outbox(self.origin), deliver_subject=self.nc.new_inbox(),
            ack_policy=AckPolicy.NONE, max_deliver=1, flow_control=True,
            idle_heartbeat=ORDERED_HEARTBEAT_S, inactive_threshold=ORDERED_INACTIVE_S,
            num_replicas=1, mem_storage=True, **start)
        stream = self.subjects.outbox_stream
        info = await self.js.add_consumer(stream, config)
        if not self._next_seq:  # a new consumer delivers what comes after the stream's end
            self._next_seq = (info.delivered.stream_seq if info.delivered else 0) + 1
        return await self.js.subscribe_bind(stream, config, info.name, cb=self._on_ordered,
                                            ordered_consumer=True)

    async def _follow_retrying(self) -> JetStreamContext.PushSubscription:
        """``_follow``, again every ``FOLLOW_RETRY_S`` while JetStream does not answer.

        Raises:
            NotRunningError: no outbox stream, this identity may not create a consumer, or
                the connection is closed.
        """
        create = f"$JS.API.CONSUMER.CREATE.{self.subjects.outbox_stream}"
        while not self.nc.is_closed:
            try:
                return await self._follow()
            except nats.js.errors.NotFoundError as exc:
                msg = "Switchboard is not running on this NATS server (no outbox stream)"
                raise NotRunningError(msg) from exc
            except (TimeoutError, nats.errors.Error) as exc:
                refused = refusal(self.nc, create)
                if refused:
                    raise NotRunningError(str(refused)) from exc
                _log.info("outbox %s: no consumer yet (%s), trying again", self.origin,
                          exc or type(exc).__name__)
            await asyncio.sleep(FOLLOW_RETRY_S)
        msg = "the connection to NATS is closed"
        raise NotRunningError(msg)

    async def _on_ordered(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        async with self._handling:  # not while _refollow replaces the consumer
            if seq < self._next_seq or self._on_outbound is None:
                return  # delivered again by a recreated consumer, or stored before start
            self._next_seq = seq + 1
            await self._deliver(msg, self._on_outbound)

    def _reconnected(self) -> None:
        """After a reconnect, read on from the last message delivered with a new ordered
        consumer (``_refollow``); nothing to do for a durable bridge, whose pulls go on."""
        if self._ordered is None or self._stopping:
            return
        if self._refollow_task is not None:
            self._refollow_task.cancel()
        self._refollow_task = asyncio.create_task(self._refollow(),
                                                  name=f"outbox-refollow:{self.origin}")

    async def _refollow(self) -> None:
        async with self._handling:
            old, self._ordered = self._ordered, None
            if old is not None:
                with contextlib.suppress(nats.errors.Error):
                    await old.unsubscribe()  # its consumer: deleted after ORDERED_INACTIVE_S
        try:
            self._ordered = await self._follow_retrying()
        except NotRunningError as exc:
            _log.error("outbox %s: no longer read after a reconnect: %s", self.origin, exc)
        else:
            _log.info("outbox %s: reading on from stream sequence %d after a reconnect",
                      self.origin, self._next_seq)

    async def _pull_loop(self, psub: object, on_outbound: OutboundHandler) -> None:
        # ``_stopping`` too ends the loop: a cancellation can be lost in nats-py's fetch on
        # Python 3.11, with the message it returns (``core.tasks``); that message must go
        # to the next bridge, not be handled by a stopped one.
        while not self._stopping:
            try:
                msgs = await psub.fetch(1, timeout=FETCH_TIMEOUT_S)  # type: ignore[attr-defined]
            except TimeoutError:
                continue
            except nats.errors.Error as exc:
                _log.warning("outbox %s: fetch failed: %s", self.origin, exc)
                await asyncio.sleep(1.0)
                continue
            for msg in msgs:
                async with self._handling:  # stop() waits for it: handled and acked, or not
                    if self._stopping:  # nak'ed: redelivered at once, to the next bridge
                        with contextlib.suppress(nats.errors.Error):
                            await msg.nak()
                        return
                    await self._handle_once(msg, on_outbound)

    async def _handle_once(self, msg: Msg, on_outbound: OutboundHandler) -> None:
        key = (msg.headers or {}).get(HEADER_MSG_ID) or f"seq:{msg.metadata.sequence.stream}"
        if key in self._handled:
            _log.info("outbox %s: message %s (stream sequence %d) delivered again: already "
                      "handled", self.origin, key, msg.metadata.sequence.stream)
        else:
            await self._deliver(msg, on_outbound)
            self._handled[key] = None
            if len(self._handled) > HANDLED_WINDOW:
                self._handled.popitem(last=False)
        with contextlib.suppress(nats.errors.Error):
            await msg.ack()

    async def _deliver(self, msg: Msg, on_outbound: OutboundHandler) -> None:
        try:
            message = outbound_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            _log.error("outbox %s: dropping unreadable message: %s", self.origin, exc)
            return
        try:
            await on_outbound(message)
        except Exception:
            _log.exception("outbox %s: handling %s failed", self.origin, type(message).__name__)

    async def _check(self) -> None:
        await check_running(self.js, self.subjects)

    async def send(self, message: ChatMessage, *, traceparent: str = "",
                   msg_id: str = "") -> None:
        """Publish ``message`` to the classifier and wait until JetStream has stored it.
        JetStream drops a repeat of its ``msg_id`` (default ``chat:<session>:<message id>``)
        within the stream's duplicate window; a caller sending a message again on purpose
        (a retried API run) gives another.

        The request's trace starts here, or continues ``traceparent`` (a W3C value) when given:
        a caller that chose the trace id knows which execution events are this request's.

        Raises:
            NotRunningError: no stream takes the classifier's subject, or NATS does not answer
                within 5 s.
        """
        headers = {
            HEADER_TYPE: "chat_message",
            HEADER_SESSION: message.session,
            HEADER_MSG_ID: msg_id or f"chat:{message.session}:{message.message_id}",
        }
        subject = self.subjects.task("classifier")
        # The request's trace starts here (or under ``traceparent``): a PRODUCER span whose
        # name holds no origin or session (they are attributes), every actor's a descendant.
        span = start_root_publish(subject, subject, headers, traceparent,
                                  headers[HEADER_MSG_ID])
        span.set_attributes({"switchboard.session": message.session,
                             "switchboard.origin": self.origin})
        try:
            with trace.use_span(span, end_on_exit=True):
                await self.js.publish(subject, encoder.encode(message), headers=headers,
                                      timeout=PUBLISH_TIMEOUT_S)
        except nats.errors.NoRespondersError as exc:
            msg = "Switchboard is not running: no stream takes new messages"
            raise NotRunningError(msg) from exc
        except (TimeoutError, nats.errors.Error) as exc:
            refused = refusal(self.nc, subject)  # the server dropped it: this identity may not
            msg = str(refused) if refused else (
                f"Switchboard did not take the message: {exc or type(exc).__name__}")
            raise NotRunningError(msg) from exc

    async def control(self, control: Control, *, traceparent: str = "") -> None:
        """Publish a person's control (see ``protocol.Control`` for where each action goes) and
        wait until JetStream stored it; with ``traceparent`` (W3C) what it causes belongs to
        that trace (an approval's decision to the run's request).

        Raises:
            NotRunningError: no stream took it within 5 s.
            ValueError: ``merge`` / ``discard`` without a ``role``.
        """
        match control.action:
            case ControlAction.ABORT:
                subject = self.subjects.control(control.session)
            case ControlAction.FEEDBACK | ControlAction.DELETE_SESSION:
                subject = self.subjects.task("reflector")
            case _:
                if not control.role:
                    msg = f"{control.action} needs the role that made the branch"
                    raise ValueError(msg)
                subject = self.subjects.task(control.role)
        headers = {HEADER_TYPE: "control", HEADER_SESSION: control.session}
        if control.message_id:
            headers[HEADER_MSG_ID] = (f"control:{control.action}:{control.session}:"
                                      f"{control.message_id}:{control.user_id}:{control.value}")
        destination = (f"{self.subjects.prefix}.control.{{session}}"
                       if control.action is ControlAction.ABORT else subject)
        span = start_root_publish(destination, subject, headers, traceparent,
                                  headers.get(HEADER_MSG_ID, ""))
        span.set_attributes({"switchboard.session": control.session,
                             "switchboard.control": str(control.action)})
        try:
            with trace.use_span(span, end_on_exit=True):
                await self.js.publish(subject, encoder.encode(control), headers=headers,
                                      timeout=PUBLISH_TIMEOUT_S)
        except (TimeoutError, nats.errors.Error) as exc:
            refused = refusal(self.nc, subject)
            msg = str(refused) if refused else (
                f"Switchboard did not take the control: {exc or type(exc).__name__}")
            raise NotRunningError(msg) from exc

    async def stop(self) -> None:
        """Stop delivering; close the connection when the bridge opened it.

        An outbox message being handled is finished and acked first (up to
        ``STOP_TIMEOUT_S``), so a restarted gateway neither loses nor repeats it; one pulled
        but not yet handled is nak'ed, for the next bridge of this origin."""
        self._stopping = True
        if self._pull_task is not None:
            task = self._pull_task
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S), self._handling:
                    task.cancel()
            except TimeoutError:
                task.cancel()
            await cancel_and_wait(task, timeout_s=STOP_TIMEOUT_S,
                                  what=f"outbox {self.origin} pull loop")
        if self._psub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._psub.unsubscribe()
        if self._refollow_task is not None:
            await cancel_and_wait(self._refollow_task, timeout_s=STOP_TIMEOUT_S,
                                  what=f"outbox {self.origin} refollow")
        if self._ordered is not None:
            await self._unfollow(self._ordered)
            self._ordered = None
        if self._owns_connection:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    async def _unfollow(self, sub: JetStreamContext.PushSubscription) -> None:
        """Unsubscribe and delete the ordered consumer (its current name: nats-py renames it
        when it recreates it). Not connected, or no answer within ``DELETE_TIMEOUT_S``: the
        server deletes it after ``ORDERED_INACTIVE_S``."""
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
        if not self.nc.is_connected:
            return
        with contextlib.suppress(TimeoutError, nats.errors.Error):
            async with asyncio.timeout(DELETE_TIMEOUT_S):
                info = await sub.consumer_info()
                await self.js.delete_consumer(self.subjects.outbox_stream, info.name)


async def connect_bridge(settings: Settings, subjects: Subjects, origin: str, *,
                         nats_url: str, fail_fast: bool = False) -> Bridge:
    """Connect to NATS and return a bridge that owns the connection. A lost connection is
    reconnected (every 0.5 s, to any server of ``nats_url``), and a non-durable bridge then
    reads on from the last outbox message it delivered.

    Args:
        fail_fast: a server that refuses the credentials or the TLS session fails the first
            connection at once, not after the 3 s connect timeout (command-line tools).

    Raises:
        NotRunningError: the server cannot be reached, or refused the credentials or the TLS
            session (the message says which).
    """
    bridge: Bridge | None = None

    async def reconnected() -> None:
        if bridge is not None:
            bridge._reconnected()  # its own factory's hook

    try:
        nc = await connect(nats_url, name=f"gateway/{origin}", settings=settings,
                           reconnect=not fail_fast, timeout_s=3.0, reconnected_cb=reconnected)
    except (AuthError, TLSError) as exc:  # the server is there and refused us: say only why
        raise NotRunningError(str(exc)) from exc
    except BrokerError as exc:
        msg = f"Switchboard is not running: {exc}. Start it with `switchboard up`."
        raise NotRunningError(msg) from exc
    if fail_fast:  # nats-py reads these when a connection is lost: from now on, reconnect
        nc.options["allow_reconnect"] = True
        nc.options["max_reconnect_attempts"] = -1
    setup_tracing("switchboard-gateway", console=settings.trace_console)
    bridge = Bridge(nc, subjects, origin)
    bridge._owns_connection = True  # set by its own factory
    return bridge
