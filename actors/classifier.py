"""The classifier actor: asks the router whether and how to answer each message, and sends it
on (SPEC.md §1.2-1.3).

The decision itself — rules, case base, model, keyword fallback, tiers — is ``actors.router``;
this actor gathers what the router needs (the session's recent history, the case base, the
router's model call), records the decision as a ``classified`` event whose ``source`` says
what decided, and routes: SEQUENTIAL to the planner, BRANCH to the brainstorm actor, SIMPLE
and BREAKGLASS to the role actor; a refused request gets the rule's message, a message that
needs no answer an empty Reply.
"""

from __future__ import annotations

from typing import Any

from actors.modeled import CaseModelActor
from actors.router import (
    Route,
    choose_tier,
    models_for,
    response_format_for,
    route_message,
)
from actors.runtime import MessageContext, handler
from protocol import (
    ChatMessage,
    Classification,
    ErrorCode,
    Flow,
    Progress,
    Reply,
    SessionState,
    TurnRequest,
)


class Classifier(CaseModelActor):
    """Routes each ChatMessage (see the module docstring)."""

    role = "classifier"

    @handler
    async def on_chat(self, message: ChatMessage, ctx: MessageContext) -> None:
        if await self._resume_paused(message, ctx):
            return
        session = await self.services.sessions.get(message.session)

        async def ask(messages: list[dict[str, Any]]) -> str:
            return await self._ask_model(ctx, message, messages)

        route = await route_message(
            message, self.topology, ask=ask,
            cases=self.cases.index if self.cases is not None else None,
            history=_history(session, self.topology.router.history),
        )
        await ctx.emit("classified", step="chat_message", source=route.source,
                       detail=_describe(route))
        if route.refusal:
            await ctx.reply(message.origin, Reply(
                session=message.session, origin=message.origin,
                in_reply_to=message.message_id, text=f"🚫 {route.refusal}",
                error=ErrorCode.REFUSED,
            ))
            return
        if not route.respond:
            await ctx.reply(message.origin, Reply(
                session=message.session, origin=message.origin,
                in_reply_to=message.message_id, text="",
            ))
            return
        verdict = Classification(
            request=message, respond=True, flow=route.flow, task_type=route.task_type,
            role=route.role, complexity=route.complexity, reason=route.reason,
            decided_by=route.who, tier_min=route.tier_min, tier_max=route.tier_max,
        )
        await ctx.reply(message.origin, Progress(
            session=message.session, origin=message.origin, in_reply_to=message.message_id,
            stage="classified", flow=verdict.flow,
            text=f"{verdict.flow} · {verdict.role} · {verdict.complexity}",
        ))
        match verdict.flow:
            case Flow.SEQUENTIAL:
                await ctx.send("planner", verdict)  # the planner chooses the tier (cases)
            case Flow.BRANCH:
                await ctx.send("brainstorm", verdict)
            case _:
                tier = choose_tier(
                    self.topology, role=verdict.role, flow=verdict.flow,
                    task_type=verdict.task_type, session_tier=session.tier,
                    session_confidence=session.confidence, tier_min=verdict.tier_min,
                    tier_max=verdict.tier_max)
                await ctx.emit("tier_chosen", source=tier.source,
                               detail=f"tier {tier.tier}: {tier.reason}")
                await ctx.send(verdict.role, TurnRequest(classification=verdict,
                                                         tier=tier.tier))

    async def _ask_model(self, ctx: MessageContext, chat: ChatMessage,
                         messages: list[dict[str, Any]]) -> str:
        """The router's model call: the router tier's models (the bot's overrides first),
        structured output where the model supports it."""
        router = self.topology.router
        models = models_for(self.topology, router.tier, role=self.actor_id.role,
                            overrides=chat.models)
        fmt = response_format_for(router.structured_output, models[0].name)
        reply = await self.call_model(ctx, models, messages, purpose="route",
                                      response_format=fmt, timeout_s=router.timeout_s)
        return str(reply.text)

    async def _resume_paused(self, message: ChatMessage, ctx: MessageContext) -> bool:
        """A message in a session whose run paused on a clarifying question is the answer:
        send it to that run (SPEC.md §3) instead of classifying it afresh."""
        from actors.runs import CheckpointStore

        checkpoint = await CheckpointStore(self.services.checkpoints).load(message.session)
        if checkpoint is None or checkpoint.status != "paused":
            return False
        paused = checkpoint.request
        await ctx.emit("classified", step="chat_message", source="resume",
                       detail=f"answer to the paused run of {paused.classification.role}")
        await ctx.reply(message.origin, Progress(
            session=message.session, origin=message.origin, in_reply_to=message.message_id,
            stage="classified", flow=Flow.SEQUENTIAL, text="Resuming with your answer…",
        ))
        await ctx.send(paused.classification.role, TurnRequest(
            classification=paused.classification, plan=paused.plan, memory=paused.memory,
            tier=paused.tier, max_turns=paused.max_turns, answer=message,
        ))
        return True


def _history(state: SessionState, limit: int) -> str:
    """The last ``limit`` messages of the session, one line each, for the router's model."""
    entries = state.history[-limit:] if limit > 0 else []
    return "\n".join(f"{e.role}: {' '.join(e.text.split())[:200]}" for e in entries)


def _describe(route: Route) -> str:
    """The ``classified`` event's detail: the decision and what made it."""
    if route.refusal:
        return f"refused by {route.who}: {route.refusal}"[:500]
    if not route.respond:
        return f"no answer ({route.who}): {route.reason}"[:500]
    bounds = (f" tiers {route.tier_min or 1}-{route.tier_max or 4}"
              if route.tier_min or route.tier_max else "")
    return (f"{route.flow} {route.role} {route.complexity} {route.task_type} by {route.who}"
            f"{bounds}: {route.reason}")[:500]
