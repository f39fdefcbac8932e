"""The fault harness: a known set of requests (SIMPLE and SEQUENTIAL, loopback only), a fault
caused in the middle, and the check that every request got exactly one answer."""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from system import RunningSystem

from core.config import Settings, load_topology
from gateway.bridge import connect_bridge
from protocol import ChatMessage, Outbound, Reply

SIMPLE, SEQUENTIAL = 16, 6
ANSWER_TIMEOUT_S = 120.0
SEQUENTIAL_TEXT = "write a python function that reverses a string and test it"


@dataclass
class Answers:
    """What came back: the Replies per request id, and the requests sent (id → session)."""

    replies: dict[str, list[Reply]]
    sessions: dict[str, str]

    @property
    def sent(self) -> set[str]:
        return set(self.sessions)

    def assert_each_answered_once(self) -> None:
        """Every request answered, none twice, none with an error, and every SEQUENTIAL run
        with its files."""
        missing = self.sent - set(self.replies)
        assert not missing, f"{len(missing)} of {len(self.sent)} requests unanswered: " \
            f"{sorted(self.sessions[m] for m in missing)}"
        twice = {f"{self.sessions[k]} ({k})": [(r.role, r.flow.value, r.error, r.text[:60])
                                             for r in v]
                 for k, v in self.replies.items() if len(v) != 1}
        assert not twice, f"answered more than once: {twice}"
        errors = [r.text for v in self.replies.values() for r in v if r.error]
        assert not errors, errors
        runs = [r for v in self.replies.values() for r in v if "-seq-" in r.session]
        assert len(runs) == SEQUENTIAL and all(r.files for r in runs), \
            "every SEQUENTIAL run sent its files"


async def load_through_a_fault(system: RunningSystem, fault: Callable[[], None] | None, *,
                               after_answers: int = 3, restart_gateway: bool = False
                               ) -> Answers:
    """Send ``SIMPLE`` + ``SEQUENTIAL`` requests through a bridge with a durable outbox
    consumer (answers published while its own connection is down are kept for it), call
    ``fault()`` once ``after_answers`` are answered (or, with ``restart_gateway``, stop the
    bridge and start a new one of the same origin 2 s later, as a restarted gateway), then
    wait for every answer."""
    topology = load_topology(settings=Settings(topology=system.topology_path))
    bridge = await connect_bridge(Settings(), topology.subjects, "fault-test",
                                  nats_url=system.nats_url)
    requests = [(f"hello there, number {i}", f"fault-simple-{i}") for i in range(SIMPLE)]
    requests += [(SEQUENTIAL_TEXT, f"fault-seq-{i}") for i in range(SEQUENTIAL)]
    messages = [ChatMessage(message_id=uuid.uuid4().hex, session=session, origin="fault-test",
                            user_id="tester", text=text, sent_at=time.time())
                for text, session in requests]
    # Known before the first is sent, so "every request answered" cannot hold early.
    sessions = {message.message_id: message.session for message in messages}
    replies: dict[str, list[Reply]] = collections.defaultdict(list)
    answered, some = asyncio.Event(), asyncio.Event()

    async def on_outbound(message: Outbound) -> None:
        if isinstance(message, Reply):
            replies[message.in_reply_to].append(message)
            if len(replies) >= after_answers:
                some.set()
            if sessions.keys() <= replies.keys():
                answered.set()

    await bridge.start(on_outbound, durable=True)
    try:
        for message in messages:
            await bridge.send(message)
        async with asyncio.timeout(60):
            await some.wait()
        if fault is not None:
            fault()
        if restart_gateway:
            await bridge.stop()
            await asyncio.sleep(2.0)  # answers published now wait in the durable consumer
            bridge = await connect_bridge(Settings(), topology.subjects, "fault-test",
                                          nats_url=system.nats_url)
            await bridge.start(on_outbound, durable=True)
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                await answered.wait()
        except TimeoutError:
            pass  # assert_each_answered_once says which are missing
        else:
            await asyncio.sleep(2.0)  # a duplicate would arrive now
        return Answers(dict(replies), sessions)
    finally:
        await bridge.stop()
