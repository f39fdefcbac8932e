"""The planner: reads the session's reflections and insights, plans, hands off to the role."""

from __future__ import annotations

import re

from actors.memory import history_messages, memory_text
from actors.modeled import ModelActor
from actors.runtime import MessageContext, handler
from protocol import Classification, Flow, Progress, TurnRequest

_STEP = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+(.+?)\s*$")
MAX_STEPS = 12


def parse_plan(text: str) -> tuple[str, ...]:
    """Numbered or bulleted lines of ``text`` as plan steps (at most 12); the whole text as
    one step when it has no list."""
    steps = [m.group(1) for line in text.splitlines() if (m := _STEP.match(line))]
    if not steps and text.strip():
        steps = [text.strip()]
    return tuple(steps[:MAX_STEPS])


class Planner(ModelActor):
    """Plans SEQUENTIAL work with the session's Reflexion memory (SPEC.md §4)."""

    role = "planner"

    @handler
    async def on_classification(self, verdict: Classification, ctx: MessageContext) -> None:
        from actors.prompts import render

        request = verdict.request
        await ctx.reply(request.origin, Progress(
            session=request.session, origin=request.origin, in_reply_to=request.message_id,
            stage="planning", flow=Flow.SEQUENTIAL,
        ))
        state = await self.services.sessions.get(request.session)
        memory = memory_text(state)
        history = "\n".join(f"{m['role']}: {m['content'][:300]}"
                            for m in history_messages(state, 6))
        spec = self.topology.model_for_tier(self.spec.tier)
        reply = await self.call_model(ctx, spec, [
            {"role": "system", "content": render("planner", memory=memory, history=history)},
            {"role": "user", "content": request.text},
        ], purpose="plan")
        plan = parse_plan(reply.text)
        await ctx.reply(request.origin, Progress(
            session=request.session, origin=request.origin, in_reply_to=request.message_id,
            stage="planned", flow=Flow.SEQUENTIAL, model=spec.name,
            text="\n".join(f"{i}. {step}" for i, step in enumerate(plan, 1)),
        ))
        await ctx.emit("planned", model=spec.name,
                       detail=f"{len(plan)} steps; memory {'used' if memory else 'empty'}")
        await ctx.send(verdict.role, TurnRequest(
            classification=verdict, plan=plan, memory=memory,
            tier=state.tier or self.topology.actor(verdict.role).tier,
            max_turns=self.topology.max_turns[verdict.complexity], usage=reply.usage,
        ))
