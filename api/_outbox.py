"""The API's outbox consumer: one durable pull consumer (``gateway-api`` on the outbox stream,
subject ``<prefix>.out.api``) shared by every API replica, so any replica records any run's
progress and answer, and answers sent while no API was running are recorded when one starts.

Outcomes are explicit: handled → ack; a bucket or the actors did not answer → nak with a
delay (redelivered, at most ``MAX_DELIVER`` times); unreadable → term.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from api.errors import StoreError, UnavailableError
from core.tasks import cancel_and_wait
from protocol import Outbound, Subjects, outbound_decoder

_log = logging.getLogger(__name__)

ACK_WAIT_S = 30.0
MAX_DELIVER = 10
NAK_DELAY_S = 1.0
FETCH_TIMEOUT_S = 5.0

OutboundHandler = Callable[[Outbound], Awaitable[None]]


def durable_name(origin: str) -> str:
    """The durable consumer of ``origin``'s outbox (the name the Discord gateway's bridge
    gives its own: ``gateway-<origin>``)."""
    return f"gateway-{origin}"


class OutboxConsumer:
    """Pulls ``origin``'s outbox one message at a time and hands each to ``handler``.

    Args:
        js: JetStream context.
        subjects: the deployment's names.
        origin: the outbox origin (``api``).
        handler: records one message; raises ``StoreError`` / ``UnavailableError`` to have it
            redelivered.
    """

    def __init__(self, js: JetStreamContext, subjects: Subjects, origin: str,
                 handler: OutboundHandler) -> None:
        self.js, self.subjects, self.origin, self.handler = js, subjects, origin, handler
        self.durable = durable_name(origin)
        self._task: asyncio.Task[None] | None = None
        self._psub: JetStreamContext.PullSubscription | None = None
        self._stopping = False

    async def start(self) -> None:
        """Create the durable consumer when missing and start pulling.

        Raises:
            UnavailableError: JetStream did not answer within 10 s.
        """
        config = ConsumerConfig(
            durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.NEW, filter_subject=self.subjects.outbox(self.origin),
            ack_wait=ACK_WAIT_S, max_deliver=MAX_DELIVER)
        try:
            async with asyncio.timeout(10.0):
                with contextlib.suppress(nats.js.errors.BadRequestError):  # exists already
                    await self.js.add_consumer(self.subjects.outbox_stream, config)
                psub = await self.js.pull_subscribe_bind(self.durable,
                                                         stream=self.subjects.outbox_stream)
        except (TimeoutError, nats.errors.Error) as exc:
            msg = f"outbox consumer {self.durable} not created: {exc or type(exc).__name__}"
            raise UnavailableError(msg) from exc
        self._psub = psub
        self._stopping = False
        self._task = asyncio.create_task(self._pull(psub), name=f"outbox:{self.origin}")

    async def _pull(self, psub: JetStreamContext.PullSubscription) -> None:
        # ``_stopping`` too ends the loop: a cancellation can be lost in nats-py's fetch on
        # Python 3.11, with the message it returns (``core.tasks``); that message is nak'ed.
        while not self._stopping:
            try:
                msgs = await psub.fetch(1, timeout=FETCH_TIMEOUT_S)
            except TimeoutError:
                continue
            except nats.errors.Error as exc:
                _log.warning("outbox %s: fetch failed: %s", self.origin, exc)
                await asyncio.sleep(NAK_DELAY_S)  # the connection is reconnecting
                continue
            for msg in msgs:
                if self._stopping:  # nak'ed: redelivered at once, to another replica
                    await _settle(msg.nak())
                    return
                await self._handle(msg)

    async def _handle(self, msg: Msg) -> None:
        try:
            message = outbound_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            _log.error("outbox %s: unreadable message terminated: %s", self.origin, exc)
            await _settle(msg.term())
            return
        try:
            await self.handler(message)
        except (StoreError, UnavailableError) as exc:
            _log.warning("outbox %s: %s for %s not recorded, retrying: %s", self.origin,
                         type(message).__name__, message.in_reply_to, exc)
            await _settle(msg.nak(delay=NAK_DELAY_S))
            return
        except Exception:  # a bug must not stop the consumer; logged, kept out
            _log.exception("outbox %s: %s for %s failed", self.origin, type(message).__name__,
                           message.in_reply_to)
            await _settle(msg.term())
            return
        await _settle(msg.ack())

    async def stop(self) -> None:
        """Stop pulling (a message being handled is redelivered after ``ACK_WAIT_S``) and
        unsubscribe, so that draining the connection does not wait for the open pull."""
        self._stopping = True
        if self._task is not None:
            await cancel_and_wait(self._task, timeout_s=FETCH_TIMEOUT_S + 1.0,
                                  what=f"outbox {self.origin} pull loop")
        if self._psub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._psub.unsubscribe()


async def _settle(outcome: Awaitable[None]) -> None:
    """Ack / nak / term; a lost one only means a redelivery, which handlers tolerate."""
    try:
        await outcome
    except nats.errors.Error as exc:
        _log.warning("outbox: ack/nak not delivered: %s", exc)
