"""The terminal chat shows a streamed answer as one live line on a real pseudo-terminal, and
nothing of it when its output is piped; over a bridge on a real nats-server, with the answer
published as the actors publish it."""

from __future__ import annotations

import io
import os
from typing import TextIO

import nats
from discord_standin.fixtures import provision_streams
from nats.aio.msg import Msg

from core.config import Settings
from gateway.bridge import connect_bridge
from gateway.chat import EXIT_OK, TerminalChat
from protocol import Flow, Progress, Reply, ReplyTo, Subjects, encoder, task_decoder

SUBJECTS = Subjects("sb")
STREAM = ("Hello", "Hello there,", "Hello there, how can I help?")


async def _chat_through(nats_url: str, out: TextIO) -> int:
    """Ask once; a stand-in classifier answers with three stream updates and the Reply."""
    await provision_streams(nats_url)
    nc = await nats.connect(nats_url)

    async def classifier(msg: Msg) -> None:
        reply_to = ReplyTo.of(task_decoder.decode(msg.data))  # type: ignore[arg-type]
        outbox = SUBJECTS.outbox(reply_to.origin)
        for text in STREAM:
            await nc.publish(outbox, encoder.encode(reply_to.build(
                Progress, stage="stream", text=text, flow=Flow.SIMPLE)))
        await nc.publish(outbox, encoder.encode(reply_to.build(Reply, text=STREAM[-1])))

    await nc.subscribe(SUBJECTS.task("classifier"), cb=classifier)
    bridge = await connect_bridge(Settings(), SUBJECTS, "term-test", nats_url=nats_url)
    chat = TerminalChat(bridge, "terminal-test", "ada", out)
    await chat.start()
    try:
        return await chat.ask("hi", timeout_s=10)
    finally:
        await bridge.stop()
        await nc.close()


async def test_a_streamed_answer_is_one_live_line_on_a_terminal(nats_url: str) -> None:
    controller, terminal = os.openpty()
    out = os.fdopen(terminal, "w", encoding="utf-8")
    try:
        assert out.isatty()
        assert await _chat_through(nats_url, out) == EXIT_OK
        out.flush()  # written through to the pseudo-terminal: readable at once
        shown = os.read(controller, 65536).decode()
    finally:
        out.close()
        os.close(controller)
    assert "\r\x1b[2K✍️ Hello there, how can I help?" in shown
    # The live line is erased before the answer is printed on its own line.
    last_preview = shown.rindex("✍️")
    assert "\r\x1b[2KHello there, how can I help?\r\n" in shown[last_preview:]


async def test_piped_output_gets_the_answer_only(nats_url: str) -> None:
    out = io.StringIO()
    assert await _chat_through(nats_url, out) == EXIT_OK
    assert out.getvalue() == "Hello there, how can I help?\n"
