"""Five tiny actors for the ``runtime`` scenario: a 5-hop durable pipeline that uses nothing but
Switchboard's runtime (no model, no prompt, no tool), under the role names of the real pipeline.

classifier (ChatMessage) → planner (Classification) → evaluator (TurnRequest) → reflector
(TurnRequest, tier 2) → consolidator (TurnRequest, tier 3): one KV put and a Reply to the
request's outbox. Every hop decodes (the runtime does) and sends onward with ``ctx.send`` (a
JetStream publish confirmed before the delivery is acked); the runtime emits one ``handled``
execution event per step, as the thin layer publishes one event per hop (``bench/_thin.py``).
"""

from __future__ import annotations

import logging

import msgspec

from protocol import ChatMessage, Classification, Reply, ReplyTo, RequestFacts, TurnRequest
from runtime import Actor, MessageContext, handler

_log = logging.getLogger(__name__)

ROLES = ("classifier", "planner", "evaluator", "reflector", "consolidator")
"""The pipeline's roles, in order (role names of ``topology.yaml``, bench-only classes)."""
KV_PREFIX = "bench-runtime."


class BenchClassifier(Actor):
    """Hop 1: ChatMessage → Classification to the planner."""

    role = "classifier"

    @handler
    async def on_chat(self, message: ChatMessage, ctx: MessageContext) -> None:
        await ctx.send("planner", Classification(reply_to=ReplyTo.of(message),
                                                 request=RequestFacts.of(message)))


class BenchPlanner(Actor):
    """Hop 2: Classification → TurnRequest to the evaluator."""

    role = "planner"

    @handler
    async def on_classification(self, message: Classification, ctx: MessageContext) -> None:
        await ctx.send("evaluator", TurnRequest.following(message, plan=("answer",)))


class BenchEvaluator(Actor):
    """Hop 3: TurnRequest → TurnRequest (tier 2) to the reflector."""

    role = "evaluator"

    @handler
    async def on_turn(self, message: TurnRequest, ctx: MessageContext) -> None:
        await ctx.send("reflector", msgspec.structs.replace(message, tier=2))


class BenchReflector(Actor):
    """Hop 4: TurnRequest → TurnRequest (tier 3) to the consolidator."""

    role = "reflector"

    @handler
    async def on_turn(self, message: TurnRequest, ctx: MessageContext) -> None:
        await ctx.send("consolidator", msgspec.structs.replace(message, tier=3))


class BenchConsolidator(Actor):
    """Hop 5: one KV put (the runs bucket, key ``bench-runtime.<session>``) and a Reply to the
    request's outbox."""

    role = "consolidator"

    @handler
    async def on_turn(self, message: TurnRequest, ctx: MessageContext) -> None:
        reply_to = message.reply_to
        await ctx.store(self.services.subjects.runs_bucket, KV_PREFIX + reply_to.session,
                        reply_to.in_reply_to.encode())
        await ctx.reply(reply_to.origin, reply_to.build(Reply, text="done"))


BENCH_ACTORS: dict[str, type[Actor]] = {
    cls.role: cls
    for cls in (BenchClassifier, BenchPlanner, BenchEvaluator, BenchReflector, BenchConsolidator)
}
