"""A durable bridge hands each outbox message to its gateway once, on a real nats-server: a
copy JetStream stored again under a new sequence (its duplicate window had passed) is
recognised by its ``Nats-Msg-Id``; messages published without one are told apart by sequence;
a bridge (and the HTTP API's outbox consumer) stops even when its pull loses the cancellation.
The lost-ack redelivery after a broker restart is in test_faults.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from discord_standin.fixtures import provision_streams
from waiting import eventually

from core.config import Settings
from gateway.bridge import connect_bridge
from protocol import (
    HEADER_MSG_ID,
    ChatMessage,
    Outbound,
    Reply,
    ReplyTo,
    Subjects,
    encoder,
)

SUBJECTS = Subjects("sb")


def _reply(n: int) -> Reply:
    chat = ChatMessage(message_id=f"m{n}", session=f"s{n}", origin="outbox-test", user_id="u",
                       text="q", sent_at=time.time())
    return ReplyTo.of(chat).build(Reply, text=f"answer {n}")


async def test_a_copy_stored_again_is_handled_once(nats_url: str) -> None:
    await provision_streams(nats_url)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    info = await js.stream_info(SUBJECTS.outbox_stream)
    info.config.duplicate_window = 0.2  # so the copy below is stored, as after a crash
    await js.update_stream(info.config)
    bridge = await connect_bridge(Settings(), SUBJECTS, "outbox-test", nats_url=nats_url)
    seen: list[str] = []

    async def on_outbound(message: Outbound) -> None:
        assert isinstance(message, Reply)
        seen.append(message.text)

    await bridge.start(on_outbound, durable=True)
    try:
        subject = SUBJECTS.outbox("outbox-test")
        first = await js.publish(subject, encoder.encode(_reply(1)),
                                 headers={HEADER_MSG_ID: "python_coder:7:out-outbox-test:1"})
        await asyncio.sleep(0.5)
        copy = await js.publish(subject, encoder.encode(_reply(1)),
                                headers={HEADER_MSG_ID: "python_coder:7:out-outbox-test:1"})
        assert copy.seq != first.seq and not copy.duplicate, "JetStream stored the copy"
        for n in (2, 3):  # no id: each is its own message
            await js.publish(subject, encoder.encode(_reply(n)))
        await eventually(lambda: len(seen) >= 3, within_s=10, what="three answers")
        await asyncio.sleep(0.5)  # a fourth would arrive now
        assert seen == ["answer 1", "answer 2", "answer 3"]
    finally:
        await bridge.stop()
        await nc.close()


def _swallow_the_cancellation(psub: Any) -> asyncio.Event:
    """Make ``psub.fetch`` wait until cancelled and then return a message as if the
    cancellation had not happened (what 3.11's ``wait_for`` does when both come together);
    the event is set once the pull loop is waiting in it."""
    fetch = psub.fetch
    pulling = asyncio.Event()

    async def swallowing_fetch(batch: int, timeout: float) -> list[Any]:  # noqa: ASYNC109
        pulling.set()
        try:
            await asyncio.Event().wait()  # the answer has not come yet
        except asyncio.CancelledError:  # it comes together with the cancellation
            return list(await fetch(batch, timeout=timeout))
        raise AssertionError("unreachable")

    psub.fetch = swallowing_fetch
    return pulling


async def test_stop_ends_even_when_the_pull_swallows_its_cancellation(nats_url: str) -> None:
    """On Python 3.11 ``asyncio.wait_for`` (inside nats-py's fetch) returns a message that
    arrives together with the cancellation instead of raising (CPython gh-86296): the pull
    loop went on and ``stop`` waited for it for ever (a hang in test_faults.py under load).
    Here the fetch is made to do exactly that. ``stop`` must end, and the message pulled at
    the stop must go to the next bridge of the origin, once, not to the stopped one."""
    await provision_streams(nats_url)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    old = await connect_bridge(Settings(), SUBJECTS, "swallow-test", nats_url=nats_url)
    seen_old: list[str] = []
    seen_new: list[str] = []

    async def to_old(message: Outbound) -> None:
        assert isinstance(message, Reply)
        seen_old.append(message.text)

    async def to_new(message: Outbound) -> None:
        assert isinstance(message, Reply)
        seen_new.append(message.text)

    await old.start(to_old, durable=True)  # its pull loop has not run yet
    pulling = _swallow_the_cancellation(old._psub)
    new = None
    try:
        await asyncio.wait_for(pulling.wait(), 5)
        await js.publish(SUBJECTS.outbox("swallow-test"), encoder.encode(_reply(1)),
                         headers={HEADER_MSG_ID: "python_coder:1:out-swallow-test:1"})
        async with asyncio.timeout(15):
            await old.stop()
        new = await connect_bridge(Settings(), SUBJECTS, "swallow-test", nats_url=nats_url)
        await new.start(to_new, durable=True)
        await eventually(lambda: bool(seen_new), within_s=10,
                         what="the answer at the next bridge")
        await asyncio.sleep(0.5)  # a second delivery would arrive now
        assert seen_new == ["answer 1"] and seen_old == []
    finally:
        if new is not None:
            await new.stop()
        await nc.close()


async def test_the_api_outbox_consumer_stops_too_and_hands_the_message_on(nats_url: str) -> None:
    """The same lost cancellation in the HTTP API's outbox consumer (``api._outbox``): its
    ``stop`` ends, and the message pulled at the stop goes to the next consumer, once."""
    from api import OutboxConsumer

    await provision_streams(nats_url)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    seen: dict[str, list[str]] = {"old": [], "new": []}

    def handler(name: str) -> Callable[[Outbound], Awaitable[None]]:
        async def handle(message: Outbound) -> None:
            assert isinstance(message, Reply)
            seen[name].append(message.text)
        return handle

    old = OutboxConsumer(js, SUBJECTS, "api-swallow", handler("old"))
    await old.start()
    pulling = _swallow_the_cancellation(old._psub)
    new = None
    try:
        await asyncio.wait_for(pulling.wait(), 5)
        await js.publish(SUBJECTS.outbox("api-swallow"), encoder.encode(_reply(1)))
        async with asyncio.timeout(15):
            await old.stop()
        new = OutboxConsumer(js, SUBJECTS, "api-swallow", handler("new"))
        await new.start()
        await eventually(lambda: bool(seen["new"]), within_s=10,
                         what="the answer at the next consumer")
        await asyncio.sleep(0.5)  # a second delivery would arrive now
        assert seen == {"old": [], "new": ["answer 1"]}
    finally:
        if new is not None:
            await new.stop()
        await nc.close()
