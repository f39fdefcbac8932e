"""Keyed publishes (``MessageContext.send`` / ``reply`` with ``key``): a redelivery that
publishes a run's answer again, after a different number of other publishes, is dropped by
JetStream's de-duplication, so the person is answered once. Against a real nats-server."""

from __future__ import annotations

import contextlib
import json
import types

import nats
import nats.errors

from core.config import load_topology
from protocol import ActorId, Progress, Reply, Subjects
from runtime import MessageContext
from runtime.bus import provision

TOPOLOGY = load_topology()


async def _no_event(kind: str, session: str, **fields: object) -> None:
    """``Actor.emit``: a Reply is also an ``answered`` event, not looked at here."""


def _context(nc: object, js: object, stream_seq: int) -> MessageContext:
    services = types.SimpleNamespace(subjects=Subjects(), nc=nc, js=js, publisher=None)
    actor = types.SimpleNamespace(actor_id=ActorId("python_coder", 0), services=services,
                                  emit=_no_event)
    return MessageContext(actor=actor, session="s1", stream_seq=stream_seq,  # type: ignore[arg-type]
                          deliveries=1)


async def test_a_keyed_answer_published_again_by_a_redelivery_is_stored_once(
        nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await provision(js, TOPOLOGY, ["python_coder"])
        answer = Reply(session="s1", origin="term-x", in_reply_to="m1", text="done")
        progress = Progress(session="s1", origin="term-x", in_reply_to="m1", stage="turn")
        first = _context(nc, js, stream_seq=42)
        await first.reply("term-x", progress)
        await first.reply("term-x", progress)
        await first.reply("term-x", answer, key="answer")
        again = _context(nc, js, stream_seq=42)  # the same task, redelivered
        await again.reply("term-x", answer, key="answer")
        other = _context(nc, js, stream_seq=43)  # another task
        await other.reply("term-x", answer, key="answer")
        await nc.flush()
        info = await js.stream_info(Subjects().outbox_stream)
        # 2 progress (published without waiting for a PubAck, stored in order before the
        # answers that follow on the connection) + the answer of task 42 + task 43's
        assert info.state.messages == 4
    finally:
        await nc.close()


async def test_an_answer_after_more_progress_on_redelivery_is_still_stored_once(
        nats_url: str) -> None:
    """Progress is sent as time passes, so a redelivery may show more of it; the answer's id
    counts confirmed publishes only (a broker restart answered requests twice before)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await provision(js, TOPOLOGY, ["python_coder"])
        answer = Reply(session="s1", origin="term-y", in_reply_to="m1", text="done")
        progress = Progress(session="s1", origin="term-y", in_reply_to="m1", stage="stream")
        first = _context(nc, js, stream_seq=50)
        await first.reply("term-y", progress)
        await first.reply("term-y", answer)
        again = _context(nc, js, stream_seq=50)  # redelivered: the model streamed longer
        for _ in range(3):
            await again.reply("term-y", progress)
        await again.reply("term-y", answer)
        await nc.flush()
        stored = await js.subscribe("sb.out.term-y", ordered_consumer=True)
        kinds = []
        with contextlib.suppress(nats.errors.TimeoutError):
            while True:
                kinds.append(json.loads((await stored.next_msg(timeout=1.0)).data)["type"])
        assert kinds.count("reply") == 1, kinds
        assert kinds.count("progress") == 3, kinds  # the first's p1, the redelivery's p2, p3
    finally:
        await nc.close()
