"""A durable bridge hands each outbox message to its gateway once, on a real nats-server: a
copy JetStream stored again under a new sequence (its duplicate window had passed) is
recognised by its ``Nats-Msg-Id``; messages published without one are told apart by sequence.
The lost-ack redelivery after a broker restart is in test_faults.py."""

from __future__ import annotations

import asyncio
import time

import nats
from discord_standin.fixtures import provision_streams
from waiting import eventually

from actors.config import Settings
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
