"""A non-durable bridge (the terminal chat's) reads its outbox through an ordered consumer, on a
real nats-server: an answer stored while its connection was down is delivered once it is back
(a core subscription lost it), a lost consumer is recreated without
replaying what was stored before the bridge started, and ``stop`` deletes the consumer. The
3-node case (a node killed under 20 chats) is in test_cluster.py."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import nats
import pytest
from discord_standin.fixtures import provision_streams
from nats.js.client import JetStreamContext
from waiting import eventually

from core.config import Settings
from gateway.bridge import Bridge, connect_bridge
from protocol import ChatMessage, Outbound, Reply, ReplyTo, Subjects, encoder
from switchboard.embedded import free_port

pytestmark = pytest.mark.timeout(60)

SUBJECTS = Subjects("sb")
ORIGIN = "term-follow"


class _Proxy:
    """A TCP proxy in front of a NATS server on a free loopback port: ``cut`` drops every
    connection through it and refuses new ones (a lost node, as the client sees it) until
    ``resume``."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 4222)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def resume(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._writers.discard(writer)


@contextlib.asynccontextmanager
async def _proxy(target: str) -> AsyncIterator[_Proxy]:
    proxy = _Proxy(target)
    await proxy.resume()
    try:
        yield proxy
    finally:
        await proxy.cut()


def _reply(n: int) -> Reply:
    chat = ChatMessage(message_id=f"m{n}", session="terminal-ada", origin=ORIGIN, user_id="u",
                       text="q", sent_at=time.time())
    return ReplyTo.of(chat).build(Reply, text=f"answer {n}")


async def _answer(js: JetStreamContext, n: int) -> None:
    await js.publish(SUBJECTS.outbox(ORIGIN), encoder.encode(_reply(n)))


class _Seen:
    """The answers a bridge delivered, in order."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def __call__(self, message: Outbound) -> None:
        assert isinstance(message, Reply)
        self.texts.append(message.text)

    async def until(self, *texts: str, within_s: float = 15) -> None:
        await eventually(lambda: len(self.texts) >= len(texts), within_s=within_s,
                         what=f"answers {texts}")
        await asyncio.sleep(0.3)  # one more, a copy, would arrive now
        assert self.texts == list(texts)


async def _ordered_consumers(js: JetStreamContext) -> list[str]:
    return [info.name for info in await js.consumers_info(SUBJECTS.outbox_stream)]


async def test_an_answer_stored_while_the_connection_was_down_is_delivered(
        nats_url: str) -> None:
    await provision_streams(nats_url)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    seen = _Seen()
    async with _proxy(nats_url) as proxy:
        bridge = await connect_bridge(Settings(), SUBJECTS, ORIGIN, nats_url=proxy.url)
        try:
            await bridge.start(seen)
            await _answer(js, 1)
            await seen.until("answer 1")
            await proxy.cut()
            await eventually(lambda: not bridge.nc.is_connected, within_s=10,
                             what="the bridge to notice its connection is gone")
            await _answer(js, 2)  # stored while the bridge is away
            await proxy.resume()
            await seen.until("answer 1", "answer 2")
            await _answer(js, 3)
            await seen.until("answer 1", "answer 2", "answer 3")
        finally:
            await bridge.stop()
    await nc.close()


async def test_a_lost_consumer_is_recreated_without_replaying_older_answers(
        nats_url: str) -> None:
    """The consumer is deleted on the server, as when the node holding it is lost, before the
    bridge delivered anything: nats-py recreates it from the stream's first sequence when the
    heartbeats stop; the answer stored for this origin before the bridge started is not
    delivered, the one stored while the consumer was gone is."""
    await provision_streams(nats_url)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await _answer(js, 0)  # an earlier chat's, under the same origin
    seen = _Seen()
    bridge = await connect_bridge(Settings(), SUBJECTS, ORIGIN, nats_url=nats_url)
    try:
        await bridge.start(seen)
        (lost,) = await _ordered_consumers(js)
        await js.delete_consumer(SUBJECTS.outbox_stream, lost)
        await _answer(js, 1)
        await seen.until("answer 1")
        assert lost not in await _ordered_consumers(js)
    finally:
        await bridge.stop()
        await nc.close()


async def test_stop_deletes_the_ordered_consumer(nats_url: str) -> None:
    await provision_streams(nats_url)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    bridge = Bridge(nc, SUBJECTS, ORIGIN)  # on a connection it does not own, too
    try:
        await bridge.start(_Seen())
        assert len(await _ordered_consumers(js)) == 1
        await bridge.stop()
        assert await _ordered_consumers(js) == []
        assert nc.is_connected  # not the bridge's to close
    finally:
        await nc.close()
