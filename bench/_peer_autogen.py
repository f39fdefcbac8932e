"""The autogen-core peer (``autogen5``): five ``RoutedAgent``s in one
``SingleThreadedAgentRuntime``, each forwarding the task to the next one's topic; the fifth
resolves the client's future. Runs in a process of its own (``python -m bench._peers
autogen``); imported only where autogen-core is installed (the ``peers`` extra)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from autogen_core import (
    MessageContext,
    RoutedAgent,
    SingleThreadedAgentRuntime,
    TopicId,
    TypeSubscription,
    message_handler,
)

from bench._loop import HOPS, SETTLE_S, Answers, closed_loop, peer_loads, pipeline_figures
from bench._procs import cpu_seconds
from bench._store import Figure

PROCESS = "process (client + 5 agents)"


@dataclass
class AgTask:
    """The task between agents (the thin layer's Task fields)."""

    message_id: str
    session: str
    origin: str
    user_id: str
    text: str
    sent_at: float
    hop: int = 1
    tier: int = 1
    plan: tuple[str, ...] = ()


class HopAgent(RoutedAgent):
    """Hop ``hop``: forward to hop ``hop + 1``'s topic, or report the task finished."""

    def __init__(self, hop: int, finished: Callable[[str], None]) -> None:
        super().__init__(f"hop {hop}")
        self.hop = hop
        self.finished = finished

    @message_handler
    async def on_task(self, message: AgTask, ctx: MessageContext) -> None:
        if self.hop == HOPS:
            self.finished(message.message_id)
            return
        await self.publish_message(
            dataclasses.replace(message, hop=self.hop + 1, tier=min(self.hop, 3),
                                plan=("answer",)),
            TopicId(f"hop{self.hop + 1}", "default"))


class _Client:
    """Publishes tasks to hop 1 and matches the fifth agent's reports."""

    def __init__(self, runtime: SingleThreadedAgentRuntime) -> None:
        self.runtime = runtime
        self.answers = Answers()

    def finished(self, key: str) -> None:
        self.answers.arrived(key, time.perf_counter())

    async def one(self) -> float:
        key = uuid.uuid4().hex
        task = AgTask(message_id=key, session=f"rt-{key[:16]}", origin="bench",
                      user_id="bench", text="hello", sent_at=time.time())
        return await self.answers.latency_ms(
            key, lambda: self.runtime.publish_message(task, TopicId("hop1", "default")))


async def autogen_loads(quick: bool) -> list[Figure]:
    """The closed loop at every load of ``bench._loop.loads``; CPU per step is this whole
    process (client and agents) ÷ 5."""
    runtime = SingleThreadedAgentRuntime()
    client = _Client(runtime)
    for hop in range(1, HOPS + 1):
        # The ignore is needed only where autogen-core (the bench extra) is installed.
        await HopAgent.register(runtime, f"hop{hop}",
                                lambda h=hop: HopAgent(h, client.finished))  # type: ignore[misc, unused-ignore]
        await runtime.add_subscription(TypeSubscription(f"hop{hop}", f"hop{hop}"))
    runtime.start()
    figures: list[Figure] = []
    try:
        for load in peer_loads(quick):
            if load.warmup:
                await closed_loop(client.one, min(load.in_flight, 64), load.warmup,
                                  load.budget_s)
            dup0, cpu0 = client.answers.duplicates, cpu_seconds(os.getpid()) or 0.0
            result = await closed_loop(client.one, load.in_flight, load.requests, load.budget_s)
            await asyncio.sleep(SETTLE_S)
            used = (cpu_seconds(os.getpid()) or 0.0) - cpu0
            result.duplicates = client.answers.duplicates - dup0
            figures += pipeline_figures("autogen5", load, result, redeliveries=None,
                                        cpu_used_s={PROCESS: used / HOPS}, actors=[PROCESS],
                                        params={"runtime": "SingleThreadedAgentRuntime"})
    finally:
        await runtime.stop()
    return figures
