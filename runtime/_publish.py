"""JetStream publishes whose acks arrive on one reply inbox and settle through a callback.

``JetStreamContext.publish`` makes a NUID token, a future, a ``wait_for`` timer and a parsed
``PubAck`` per message; here a publish is a counter, a dict entry and a callback, and one
sweeper task fails entries older than their timeout (about 10 µs of CPU less per publish,
profiled in the bench's ``runtime`` scenario; docs/measurements.md: "publish with a dedicated reply
inbox and a callback instead of a future per message"). ``ask`` uses the same inbox for a
request whose answer its caller reads itself (the KV reads and writes of ``runtime._kv``).

A publish ack is a JSON ``PubAck`` (``{"stream": ..., "seq": ...}``) or an ``{"error": ...}``
object; a publish no stream stores is answered by a ``503`` status message (no responders).
Source: ADR-22 "JetStream Publish Retries" and the JetStream wire API reference
(docs.nats.io, "JetStream wire API").
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from core.errors import BrokerError
from natsauth import refusal

_log = logging.getLogger(__name__)

Settled = Callable[[BrokerError | None], None]
"""Called once per publish: None when a stream stored it, else the error."""

SWEEP_INTERVAL_S = 0.5
"""How often unanswered publishes are checked against their timeout, in seconds."""


class _Ack(msgspec.Struct):
    error: dict[str, object] | None = None


_ack_decoder = msgspec.json.Decoder(_Ack)


class Publisher:
    """Publishes to JetStream on ``nc`` and reports each publish's outcome to a callback.

    Args:
        nc: a connected client.
        timeout_s: a publish unanswered after this many seconds fails with ``BrokerError``.
    """

    def __init__(self, nc: Client, *, timeout_s: float = 10.0) -> None:
        self._nc = nc
        self._timeout_s = timeout_s
        self._prefix = ""
        self._counter = itertools.count(1)
        self._waiting: dict[str, tuple[float, str, Settled]] = {}
        self._asked: dict[str, asyncio.Future[Msg]] = {}
        self._sub: Subscription | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._after: Callable[[], Awaitable[None]] | None = None

    @property
    def waiting(self) -> int:
        """Publishes sent and not yet answered."""
        return len(self._waiting)

    def after_settling(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Await ``hook`` after each PubAck's ``settled`` callback, in the same callback, so
        what the callbacks made due (the dispatcher's acks) goes out in the same write as the
        rest of this pass rather than from another task (docs/measurements.md: "ack in batches
        once the forward publish is confirmed")."""
        self._after = hook

    async def start(self) -> None:
        """Subscribe the reply inbox and start the timeout sweeper."""
        inbox = self._nc.new_inbox()
        self._prefix = inbox + "."
        self._sub = await self._nc.subscribe(inbox + ".*", cb=self._on_ack)
        self._sweeper = asyncio.create_task(self._sweep(), name="publish-sweeper")

    async def stop(self) -> None:
        """Fail what is still unanswered and unsubscribe."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        self._fail_all("the actor is stopping")
        asked, self._asked = self._asked, {}
        for future in asked.values():
            if not future.done():
                future.set_exception(BrokerError("the actor is stopping"))
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str] | None,
                      settled: Settled) -> None:
        """Publish; ``settled`` is called once with the outcome (from the reply callback, the
        sweeper, or here when the client refuses the publish).

        Does not wait for the server: it returns once the message is in the client's buffer.
        """
        if self._sub is None:
            msg = "Publisher.start was not called"
            raise RuntimeError(msg)
        token = str(next(self._counter))
        self._waiting[token] = (time.monotonic() + self._timeout_s, subject, settled)
        try:
            await self._nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
        except nats.errors.Error as exc:
            self._waiting.pop(token, None)
            settled(BrokerError(f"publish to {subject} failed: {exc or type(exc).__name__}"))

    async def request(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Publish and wait until a stream stored it.

        Raises:
            BrokerError: no stream stored it within the timeout, or the server refused it.
        """
        future: asyncio.Future[BrokerError | None] = asyncio.get_running_loop().create_future()

        def _done(error: BrokerError | None) -> None:
            if not future.done():
                future.set_result(error)

        await self.publish(subject, payload, headers, _done)
        async with asyncio.timeout(self._timeout_s + 2 * SWEEP_INTERVAL_S):
            error = await future
        if error is not None:
            raise error

    async def ask(self, subject: str, payload: bytes, headers: dict[str, str] | None, *,
                  timeout_s: float) -> Msg:
        """Publish with a reply subject on this publisher's inbox and return the one answer,
        whatever it is (a PubAck, a direct get's message, a status): for a caller that reads
        it itself (``runtime._kv.Bucket``).

        Raises:
            BrokerError: no answer within ``timeout_s`` seconds, or the publish failed.
        """
        if self._sub is None:
            msg = "Publisher.start was not called"
            raise RuntimeError(msg)
        token = str(next(self._counter))
        future: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._asked[token] = future
        try:
            await self._nc.publish(subject, payload, reply=self._prefix + token,
                                   headers=headers)
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError as exc:
            msg = f"{subject} did not answer within {timeout_s:g} s"
            raise BrokerError(msg) from exc
        except nats.errors.Error as exc:
            msg = f"request to {subject} failed: {exc or type(exc).__name__}"
            raise BrokerError(msg) from exc
        finally:
            self._asked.pop(token, None)

    async def _on_ack(self, msg: Msg) -> None:
        token = msg.subject[len(self._prefix):]
        entry = self._waiting.pop(token, None)
        if entry is None:
            asked = self._asked.pop(token, None)
            if asked is not None and not asked.done():
                asked.set_result(msg)
            return  # else answered after its timeout: already reported as failed
        _deadline, subject, settled = entry
        settled(_error_of(msg, subject))
        if self._after is not None:
            await self._after()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now = time.monotonic()
            expired = []
            for token, (deadline, _subject, _cb) in self._waiting.items():
                if deadline > now:
                    break  # entries are in publish order, so deadlines are increasing
                expired.append(token)
            for token in expired:
                _deadline, subject, settled = self._waiting.pop(token)
                # A publish the server refused (permissions) is never answered either.
                settled(refusal(self._nc, subject) or BrokerError(
                    f"publish to {subject} unanswered after {self._timeout_s:.0f} s"))

    def _fail_all(self, reason: str) -> None:
        waiting, self._waiting = self._waiting, {}
        for _deadline, subject, settled in waiting.values():
            settled(BrokerError(f"publish to {subject} not confirmed: {reason}"))


def _error_of(msg: Msg, subject: str) -> BrokerError | None:
    """None when ``msg`` is a PubAck, else the error it reports."""
    status = msg.headers.get("Status") if msg.headers else None
    if status == "503":
        return BrokerError(f"no stream stores {subject}: is Switchboard provisioned on this "
                           f"server?")
    if status is not None and not msg.data:
        return BrokerError(f"publish to {subject} failed: status {status}")
    if b'"error"' not in msg.data:
        return None
    try:
        error = _ack_decoder.decode(msg.data).error
    except msgspec.DecodeError:
        error = {"description": msg.data[:200].decode(errors="replace")}
    return BrokerError(f"publish to {subject} failed: {error}")
