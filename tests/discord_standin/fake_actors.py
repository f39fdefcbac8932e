"""The actors' side of NATS, played by a test: collects what the gateway publishes
(ChatMessages for the classifier, Controls wherever ``Bridge.control`` routes them) and
publishes Progress / Reply / ConsolidatedOptions to a bot's outbox.

    from discord_standin.fake_actors import actors  # noqa: F401 - fixture
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
import pytest_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg

from protocol import (
    ChatMessage,
    Control,
    Outbound,
    Progress,
    Reply,
    ReplyTo,
    Subjects,
    control_decoder,
    encoder,
    task_decoder,
)

TIMEOUT_S = 20.0
SUBJECTS = Subjects("sb")


class FakeActors:
    """Collects ChatMessages and Controls; publishes outbound messages."""

    def __init__(self, nc: Client, subjects: Subjects = SUBJECTS) -> None:
        self.nc = nc
        self.subjects = subjects
        self.inbox: asyncio.Queue[ChatMessage] = asyncio.Queue()
        self.controls: asyncio.Queue[tuple[str, Control]] = asyncio.Queue()

    async def start(self) -> None:
        async def received(msg: Msg) -> None:
            message = task_decoder.decode(msg.data)
            if isinstance(message, ChatMessage):
                await self.inbox.put(message)
            elif isinstance(message, Control):
                await self.controls.put((msg.subject, message))

        async def control(msg: Msg) -> None:
            await self.controls.put((msg.subject, control_decoder.decode(msg.data)))

        await self.nc.subscribe(f"{self.subjects.prefix}.task.*", cb=received)
        await self.nc.subscribe(self.subjects.control_all, cb=control)
        await self.nc.flush(timeout=5)

    async def next(self, timeout_s: float = TIMEOUT_S) -> ChatMessage:
        async with asyncio.timeout(timeout_s):
            return await self.inbox.get()

    async def next_control(self, timeout_s: float = TIMEOUT_S) -> tuple[str, Control]:
        """The next control and the subject it was published on."""
        async with asyncio.timeout(timeout_s):
            return await self.controls.get()

    async def publish(self, message: Outbound) -> None:
        await self.nc.publish(self.subjects.outbox(message.origin), encoder.encode(message))
        await self.nc.flush(timeout=5)

    async def reply(self, request: ChatMessage, text: str, **fields: object) -> None:
        await self.publish(ReplyTo.of(request).build(Reply, text=text, **fields))

    async def progress(self, request: ChatMessage, stage: str, **fields: object) -> None:
        await self.publish(ReplyTo.of(request).build(Progress, stage=stage, **fields))


@pytest_asyncio.fixture
async def actors(nats_url: str) -> AsyncIterator[FakeActors]:
    nc = await nats.connect(nats_url, connect_timeout=5, allow_reconnect=False)
    fake = FakeActors(nc)
    await fake.start()
    try:
        yield fake
    finally:
        await nc.close()
