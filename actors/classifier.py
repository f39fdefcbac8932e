"""The classifier actor: asks the router whether and how to answer each message, and sends it
on (docs/design.md#routing).

The decision itself — rules, case base, model, keyword fallback, tiers — is ``actors.router``;
this actor gathers what the router needs (the session's recent history, the case base, the
router's model call), records the decision as a ``classified`` event whose ``source`` says
what decided, and routes: SEQUENTIAL to the planner, BRANCH to the brainstorm actor, SIMPLE
and BREAKGLASS to the role actor, the answer to a paused run to that run; a refused request
gets the rule's message, a message that needs no answer an empty Reply.
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
from actors.run_control import RunControl
from protocol import (
    ChatMessage,
    Checkpoint,
    Classification,
    ErrorCode,
    Flow,
    Progress,
    Reply,
    ReplyTo,
    RequestFacts,
    RunAnswer,
    SessionState,
    TurnRequest,
)
from runtime import MessageContext, handler


class Classifier(CaseModelActor):
    """Routes each ChatMessage (see the module docstring)."""

    role = "classifier"

    @handler
    async def on_chat(self, message: ChatMessage, ctx: MessageContext) -> None:
        reply_to = ReplyTo.of(message)
        session = await self.services.sessions.get(message.session)
        waiting = await self._paused_run(message.session)
        # Only the person the run asked may answer it (``Checkpoint.request.user_id``).
        paused = waiting if waiting is not None and (
            not waiting.request.user_id or waiting.request.user_id == message.user_id) else None

        async def ask(messages: list[dict[str, Any]], tier: int) -> str:
            return await self._ask_model(ctx, message, messages, tier)

        route = await route_message(
            message, self.topology, ask=ask,
            cases=self.cases.index if self.cases is not None else None,
            history=_history(session, self.topology.router.history),
            paused_role=paused.role if paused is not None else "",
        )
        await ctx.emit("classified", step="chat_message", source=route.source,
                       detail=_describe(route), flow=route.flow.value, role=route.role,
                       user_id=message.user_id)
        if route.refusal:
            await ctx.reply(reply_to.origin, reply_to.build(
                Reply, text=f"🚫 {route.refusal}", error=ErrorCode.REFUSED))
            return
        if not route.respond:
            await ctx.reply(reply_to.origin, reply_to.build(Reply, text=""))
            return
        if paused is not None and route.source == "resume":
            await self._keep_bounds(message.session, session, paused.request.tier_min,
                                    paused.request.tier_max)
            await self._resume(message, reply_to, paused, ctx)
            return
        if waiting is not None and route.flow is Flow.SEQUENTIAL:
            # A new run would replace the paused one's checkpoint: it waits for its answer.
            asker = waiting.request.user_id
            who = f"<@{asker}>" if asker else "its asker"
            await ctx.emit("held", step="chat_message", detail=f"run paused for {who}",
                           user_id=message.user_id)
            await ctx.reply(reply_to.origin, reply_to.build(Reply, text=(
                f"⏸️ The run in this conversation is waiting for {who}'s answer to its "
                "question; a new task here would replace it. Ask again once it has finished, "
                "or in a conversation of your own.")))
            return
        await self._keep_bounds(message.session, session, route.tier_min, route.tier_max)
        await ctx.reply(reply_to.origin, reply_to.build(
            Progress, stage="classified", flow=route.flow,
            text=f"{route.flow} · {route.role} · {route.complexity}"))
        match route.flow:
            case Flow.SEQUENTIAL:  # the planner chooses the tier (cases)
                await ctx.send("planner", verdict(message, reply_to, route))
            case Flow.BRANCH:
                await ctx.send("brainstorm", verdict(message, reply_to, route))
            case _:
                tier = choose_tier(
                    self.topology, role=route.role, flow=route.flow,
                    task_type=route.task_type, session_tier=session.tier,
                    session_confidence=session.confidence, tier_min=route.tier_min,
                    tier_max=route.tier_max)
                await ctx.emit("tier_chosen", source=tier.source,
                               detail=f"tier {tier.tier}: {tier.reason}")
                await ctx.send(route.role, turn_request(message, reply_to, route, tier.tier))

    async def _ask_model(self, ctx: MessageContext, chat: ChatMessage,
                         messages: list[dict[str, Any]], tier: int) -> str:
        """The router's model call: the models of ``tier`` (the router's, within the rules'
        bounds; the bot's overrides first), structured output where the model supports it."""
        router = self.topology.router
        models = models_for(self.topology, tier, role=self.actor_id.role, overrides=chat.models)
        fmt = response_format_for(router.structured_output, models[0].name)
        reply = await self.call_model(ctx, models, messages, purpose="route",
                                      response_format=fmt, timeout_s=router.timeout_s)
        return str(reply.text)

    async def _paused_run(self, session: str) -> Checkpoint | None:
        """The session's run paused on a clarifying question, or None. The router decides
        whether a message of the person it asked is that answer
        (docs/design.md#the-agentic-loop)."""
        return await RunControl.of(self.services).paused(session)

    async def _resume(self, message: ChatMessage, reply_to: ReplyTo, checkpoint: Checkpoint,
                      ctx: MessageContext) -> None:
        """Send ``message`` to the paused run as its answer; the run's checkpoint holds
        everything else the run needs."""
        await ctx.reply(reply_to.origin, reply_to.build(
            Progress, stage="classified", flow=Flow.SEQUENTIAL,
            text="Resuming with your answer…"))
        await ctx.send(checkpoint.role, RunAnswer(
            reply_to=reply_to, request_id=checkpoint.request_id, text=message.text,
            user_id=message.user_id))

    async def _keep_bounds(self, key: str, session: SessionState, tier_min: int,
                           tier_max: int) -> None:
        """Record the rules' tier bounds of the session's latest request, which the 👎
        reflection on its answer keeps to (written only when they change)."""
        if (session.rule_tier_min, session.rule_tier_max) == (tier_min, tier_max):
            return

        def _set(state: SessionState) -> None:
            state.rule_tier_min, state.rule_tier_max = tier_min, tier_max

        await self.services.sessions.update(key, _set)


def facts(chat: ChatMessage, route: Route) -> RequestFacts:
    """The stable part of ``chat``'s request under ``route``, which every later step carries."""
    return RequestFacts.of(chat, flow=route.flow, task_type=route.task_type,
                           complexity=route.complexity, tier_min=route.tier_min,
                           tier_max=route.tier_max)


def verdict(chat: ChatMessage, reply_to: ReplyTo, route: Route) -> Classification:
    """The Classification of ``chat`` for the planner or the brainstorm actor: the route and
    the request's fields the later steps read."""
    return Classification(reply_to=reply_to, request=facts(chat, route), role=route.role)


def turn_request(chat: ChatMessage, reply_to: ReplyTo, route: Route, tier: int) -> TurnRequest:
    """The TurnRequest of a SIMPLE or BREAKGLASS ``chat``: one turn at ``tier``."""
    return TurnRequest(reply_to=reply_to, request=facts(chat, route), tier=tier)


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
