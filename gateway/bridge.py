"""The gateway's side of NATS: send a person's message to the actors, receive what comes back.

Every gateway instance has an ``origin`` (one subject token); actors publish Progress, Reply and
ConsolidatedOptions for its requests to ``<prefix>.out.<origin>``. A Discord gateway reads them
through a durable consumer, so answers published while it was down are delivered when it comes
back; a terminal chat uses a plain subscription.
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
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from actors.bus import check_running, connect
from actors.config import Settings
from actors.errors import AuthError, BrokerError, TLSError
from actors.runtime import current_traceparent, setup_tracing, span_from_headers
from actors.security import refusal
from actors.tasks import cancel_and_wait
from gateway.errors import NotRunningError
from protocol import (
    HEADER_MSG_ID,
    HEADER_SESSION,
    HEADER_TRACEPARENT,
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
        self._sub: Subscription | None = None
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
        not handled twice: ``HANDLED_WINDOW``); without it, a core subscription sees only
        what arrives while it is connected.

        Raises:
            NotRunningError: Switchboard's streams do not exist on the server.
        """
        await self._check()
        self._stopping = False
        subject = self.subjects.outbox(self.origin)
        if not durable:
            async def _deliver(msg: Msg) -> None:
                await self._deliver(msg, on_outbound)

            self._sub = await self.nc.subscribe(subject, cb=_deliver)
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

    async def _pull_loop(self, psub: object, on_outbound: OutboundHandler) -> None:
        # ``_stopping`` too ends the loop: a cancellation can be lost in nats-py's fetch on
        # Python 3.11, with the message it returns (``actors.tasks``); that message must go
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

    async def send(self, message: ChatMessage, *, traceparent: str = "") -> None:
        """Publish ``message`` to the classifier and wait until JetStream has stored it.

        The request's trace starts here, or continues ``traceparent`` (a W3C value) when given:
        a caller that chose the trace id knows which execution events are this request's.

        Raises:
            NotRunningError: no stream takes the classifier's subject, or NATS does not answer
                within 5 s.
        """
        headers = {
            HEADER_TYPE: "chat_message",
            HEADER_SESSION: message.session,
            HEADER_MSG_ID: f"chat:{message.session}:{message.message_id}",
        }
        subject = self.subjects.task("classifier")
        try:
            # The request's trace starts here; every actor's span is a descendant.
            parent = {HEADER_TRACEPARENT: traceparent} if traceparent else None
            with span_from_headers(f"gateway {self.origin} chat_message", parent) as span:
                span.set_attributes({"switchboard.session": message.session,
                                     "switchboard.origin": self.origin})
                headers[HEADER_TRACEPARENT] = current_traceparent()
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

    async def control(self, control: Control) -> None:
        """Publish a person's control (see ``protocol.Control`` for where each action goes) and
        wait until JetStream stored it.

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
        try:
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
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
        if self._owns_connection:
            with contextlib.suppress(Exception):
                await self.nc.drain()


async def connect_bridge(settings: Settings, subjects: Subjects, origin: str, *,
                         nats_url: str, reconnect: bool = True) -> Bridge:
    """Connect to NATS and return a bridge that owns the connection.

    Raises:
        NotRunningError: the server cannot be reached, or refused the credentials or the TLS
            session (the message says which).
    """
    try:
        nc = await connect(nats_url, name=f"gateway/{origin}", settings=settings,
                           reconnect=reconnect, timeout_s=3.0)
    except (AuthError, TLSError) as exc:  # the server is there and refused us: say only why
        raise NotRunningError(str(exc)) from exc
    except BrokerError as exc:
        msg = f"Switchboard is not running: {exc}. Start it with `switchboard up`."
        raise NotRunningError(msg) from exc
    setup_tracing("switchboard-gateway", console=settings.trace_console)
    bridge = Bridge(nc, subjects, origin)
    bridge._owns_connection = True  # noqa: SLF001 - set by its own factory
    return bridge
