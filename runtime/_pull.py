"""A thin pull consumer over JetStream's raw pull API, with a bound on messages in flight.

Why not ``PullSubscription.fetch``: ``fetch(n)`` waits for a full batch under light load and
``fetch(1)`` manages about 690 tasks/s (docs/measurements.md). This layer keeps pull requests open
(batches of up to 32, 5 s expiry), counts messages requested-or-processing against the in-flight
limit, and asks for more when half a batch of credit is free: the pattern docs/measurements.md
measured at
7.1k tasks/s with nothing lost or duplicated.

Protocol: a pull is a publish to ``$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>`` with
``{"batch": n, "expires": ns}`` and a reply inbox; the server answers on the inbox with messages
and, when a request ends unfilled, a status message (``408 Request Timeout`` carrying
``Nats-Pending-Messages``, ``409`` for limits and leadership changes, ``100`` heartbeats).
Source: ADR-13 "Pull Subscribe internals" (nats-io/nats-architecture-and-design).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

_log = logging.getLogger(__name__)

MessageHandler = Callable[[Msg, Callable[[], None]], None]
"""Called once per delivered message with a ``done`` callback that it calls exactly once, when
the message is settled (acked, nakked, terminated, or abandoned at shutdown)."""


class _PullRequest:
    __slots__ = ("expires_at", "remaining")

    def __init__(self, remaining: int, expires_at: float) -> None:
        self.remaining = remaining
        self.expires_at = expires_at


class PullConsumer:
    """Delivers a durable consumer's messages to ``handler``, at most ``max_in_flight`` at once.

    ``handler`` is called in the subscription's callback and must settle each message
    (ack / nak / term), then call the ``done`` it was given; it runs its own tasks when a
    message needs waiting for.

    Args:
        nc: a connected client.
        stream: the stream name.
        durable: the durable consumer name (it must exist).
        handler: called once per delivered message (``MessageHandler``).
        max_in_flight: messages requested or being handled at once (>= 1).
        batch: largest pull request, in messages.
        expires_s: lifetime of one pull request, in seconds.
    """

    def __init__(
        self,
        nc: Client,
        stream: str,
        durable: str,
        handler: MessageHandler,
        *,
        max_in_flight: int,
        batch: int = 32,
        expires_s: float = 5.0,
        name: str = "",
    ) -> None:
        self._nc = nc
        self._api = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._handler = handler
        self._max = max(1, max_in_flight)
        self._batch = max(1, min(batch, self._max))
        self._expires_s = expires_s
        self._name = name or durable
        self._requests: collections.deque[_PullRequest] = collections.deque()
        self._open = 0
        self._idle = asyncio.Event()
        self._wake = asyncio.Event()
        self._inbox = ""
        self._sub: Subscription | None = None
        self._pump: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def in_flight(self) -> int:
        """Messages delivered and not yet settled."""
        return self._open

    @property
    def requested(self) -> int:
        """Messages asked for and not yet delivered."""
        return sum(r.remaining for r in self._requests)

    async def start(self) -> None:
        """Subscribe the reply inbox and start pulling."""
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_delivery)
        self._pump = asyncio.create_task(self._run_pump(), name=f"pull:{self._name}")

    def reset_requests(self) -> None:
        """Forget open pull requests (after a reconnect the server no longer has them)."""
        self._requests.clear()
        self._wake.set()

    async def stop(self, *, drain_timeout_s: float = 10.0) -> None:
        """Stop pulling and wait up to ``drain_timeout_s`` seconds for the messages in flight
        to be settled (the handler's owner cancels what is left; JetStream redelivers those
        after ``ack_wait``)."""
        self._stopping = True
        self._wake.set()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        if self._open and drain_timeout_s > 0:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_timeout_s):
                    while self._open:
                        await self._idle.wait()
                        self._idle.clear()

    async def _run_pump(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            while self._requests and self._requests[0].expires_at <= now:
                self._requests.popleft()
            free = self._max - self.in_flight - self.requested
            threshold = max(1, self._batch // 2)
            while free >= threshold or (free > 0 and not self._requests):
                size = min(self._batch, free)
                await self._pull(size)
                free -= size
            self._wake.clear()
            timeout = self._requests[0].expires_at - time.monotonic() if self._requests else 1.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.01, timeout)):
                    await self._wake.wait()

    async def _pull(self, size: int) -> None:
        # The request expires on the server slightly before we forget it here, so a late
        # delivery is never counted against a request already dropped.
        body = json.dumps({"batch": size, "expires": int(self._expires_s * 1e9)}).encode()
        self._requests.append(_PullRequest(size, time.monotonic() + self._expires_s + 0.5))
        await self._nc.publish(self._api, body, reply=self._inbox)

    async def _on_delivery(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is not None and not msg.data:
            self._on_status(status, msg)
            return
        if self._requests:
            head = self._requests[0]
            head.remaining -= 1
            if head.remaining <= 0:
                self._requests.popleft()
        self._open += 1
        try:
            self._handler(msg, self._settled)
        except Exception:
            # A bug in the handler's owner: the message is redelivered after ack_wait.
            _log.exception("%s: delivery handler crashed", self._name)
            self._settled()

    def _settled(self) -> None:
        self._open -= 1
        if self._open <= 0:
            self._idle.set()
        # Wake the pump only when it would pull: half a batch of credit is free, or nothing
        # is requested at all.
        free = self._max - self._open - self.requested
        if free >= max(1, self._batch // 2) or not self._requests:
            self._wake.set()

    def _on_status(self, status: str, msg: Msg) -> None:
        headers = msg.headers or {}
        if status == "100":  # idle heartbeat / flow control
            return
        pending = headers.get("Nats-Pending-Messages")
        if pending is not None and self._requests:
            # A request ended with `pending` messages undelivered: drop the oldest request.
            self._requests.popleft()
        elif status in {"404", "408"} and self._requests:
            self._requests.popleft()
        elif status == "409":
            _log.warning("%s: pull refused: %s", self._name, headers.get("Description", status))
            self._requests.clear()
        self._wake.set()
