"""The planner: reads the session's reflections and insights and the most similar past runs
(the case base), plans, chooses the starting tier (``actors.router.choose_tier``) and hands off
to the role."""

from __future__ import annotations

import re

from actors.memory import history_messages, memory_text
from actors.modeled import CaseModelActor
from actors.prompts import render
from actors.router import case_lines, choose_tier, learned_tier, models_for
from protocol import Classification, Flow, Progress, TurnRequest
from runtime import MessageContext, handler

_STEP = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+(.+?)\s*$")
MAX_STEPS = 12


def parse_plan(text: str) -> tuple[str, ...]:
    """Numbered or bulleted lines of ``text`` as plan steps (at most 12); the whole text as
    one step when it has no list."""
    steps = [m.group(1) for line in text.splitlines() if (m := _STEP.match(line))]
    if not steps and text.strip():
        steps = [text.strip()]
    return tuple(steps[:MAX_STEPS])


class Planner(CaseModelActor):
    """Plans SEQUENTIAL work with the session's Reflexion memory and similar past cases
    (docs/design.md#reflexion-memory)."""

    role = "planner"

    @handler
    async def on_classification(self, verdict: Classification, ctx: MessageContext) -> None:
        reply_to, request = verdict.reply_to, verdict.request
        await ctx.reply(reply_to.origin, reply_to.build(
            Progress, stage="planning", flow=Flow.SEQUENTIAL))
        state = await self.services.sessions.get(reply_to.session)
        memory = memory_text(state)
        history = "\n".join(f"{m['role']}: {m['content'][:300]}"
                            for m in history_messages(state, 6))
        settings = self.topology.cases
        similar = [] if self.cases is None else self.cases.index.similar(
            request.text, k=max(settings.shown, 5), min_similarity=settings.min_similarity,
            exclude=reply_to.in_reply_to, embedding=await self.embed_task(ctx, request.text),
            min_cosine=settings.min_embedding_similarity)
        shown = [s for s in similar if s.case.succeeded][:settings.shown]
        models = models_for(self.topology, self.spec.tier, role=self.actor_id.role,
                            overrides=request.models, tier_min=request.tier_min,
                            tier_max=request.tier_max)
        reply = await self.call_model(ctx, models, [
            {"role": "system", "content": render(
                "planner", memory=memory, history=history,
                cases=case_lines(shown) or "(none)")},
            {"role": "user", "content": request.text},
        ], purpose="plan", max_tokens=request.max_tokens)
        plan = parse_plan(reply.text)
        await ctx.reply(reply_to.origin, reply_to.build(
            Progress, stage="planned", flow=Flow.SEQUENTIAL, model=reply.usage.model,
            text="\n".join(f"{i}. {step}" for i, step in enumerate(plan, 1))))
        await ctx.emit("planned", model=reply.usage.model,
                       detail=f"{len(plan)} steps; memory {'used' if memory else 'empty'}; "
                              f"{len(shown)} similar cases shown"
                              + "".join(f" {s.case.case_id}" for s in shown))
        learned = (learned_tier(similar, session=reply_to.session) if settings.learn_tier
                   else None)
        tier = choose_tier(
            self.topology, role=verdict.role, flow=request.flow, task_type=request.task_type,
            learned=learned, session_tier=state.tier, session_confidence=state.confidence,
            tier_min=request.tier_min, tier_max=request.tier_max)
        await ctx.emit("tier_chosen", source=tier.source,
                       detail=f"tier {tier.tier}: {tier.reason}")
        await ctx.send(verdict.role, TurnRequest.following(
            verdict, plan=plan, memory=memory, tier=tier.tier,
            max_turns=self.topology.max_turns[request.complexity], usage=reply.usage))
