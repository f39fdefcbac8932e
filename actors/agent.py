"""The agent role actors: one class, one actor per role of SPEC.md §2 (``python_coder``, ...).

SIMPLE and BREAKGLASS requests get one streamed model turn without tools; SEQUENTIAL requests
run the agentic loop (``actors.agent_loop``). The answer goes to the gateway as a Reply; a
SEQUENTIAL run's TurnResult goes on to the evaluator.
"""

from __future__ import annotations

import time
from functools import cache

from actors.agent_loop import AgentLoop
from actors.memory import append_exchange, history_messages
from actors.modeled import ModelActor
from actors.runtime import MessageContext, handler
from protocol import AGENT_ROLES, ChatMessage, Flow, Progress, Reply, TurnRequest

STREAM_INTERVAL_S = 0.5
"""Least time between two streamed Progress updates of one answer."""


class ProgressStream:
    """Publishes the growing answer as ``Progress(stage="stream")`` at most every 0.5 s."""

    def __init__(self, ctx: MessageContext, request: ChatMessage, flow: Flow, model: str) -> None:
        self._ctx, self._request, self._flow, self._model = ctx, request, flow, model
        self._last = 0.0
        self._sent = ""
        self._latest = ""

    async def update(self, text: str) -> None:
        self._latest = text
        if time.monotonic() - self._last >= STREAM_INTERVAL_S:
            await self._publish()

    async def _publish(self) -> None:
        if self._latest == self._sent:
            return
        self._last, self._sent = time.monotonic(), self._latest
        request = self._request
        await self._ctx.reply(request.origin, Progress(
            session=request.session, origin=request.origin, in_reply_to=request.message_id,
            stage="stream", flow=self._flow, text=self._latest, model=self._model,
        ))


class AgentActor(ModelActor):
    """Serves one agent role; ``for_role`` makes the class for a given role."""

    @handler
    async def on_turn_request(self, request: TurnRequest, ctx: MessageContext) -> None:
        if request.classification.flow is Flow.SEQUENTIAL:
            await AgentLoop(self, ctx, request).run()
        else:
            await self._single_turn(request, ctx)

    async def _single_turn(self, request: TurnRequest, ctx: MessageContext) -> None:
        from actors.llm import strip_report
        from actors.prompts import render

        chat = request.classification.request
        flow = request.classification.flow
        spec = self.topology.model_for_tier(request.tier)
        state = await self.services.sessions.get(chat.session)
        system = render(self.actor_id.role, plan="", memory="")
        messages = [{"role": "system", "content": system}, *history_messages(state),
                    {"role": "user", "content": chat.text}]
        stream = ProgressStream(ctx, chat, flow, spec.name)
        reply = await self.call_model(ctx, spec, messages, on_text=stream.update,
                                      purpose=f"{flow} answer")
        answer = strip_report(reply.text)
        await ctx.reply(chat.origin, Reply(
            session=chat.session, origin=chat.origin, in_reply_to=chat.message_id, text=answer,
            flow=flow, usage=request.usage + reply.usage,
        ))
        await self.services.sessions.update(chat.session, lambda s: append_exchange(
            s, chat.text, answer, user_id=chat.user_id, window=self.topology.history_window))


@cache
def agent_class(role: str) -> type[AgentActor]:
    """The actor class of agent ``role`` (one of ``protocol.AGENT_ROLES``).

    Raises:
        ValueError: ``role`` is not an agent role.
    """
    if role not in AGENT_ROLES:
        msg = f"{role!r} is not an agent role; roles: {', '.join(AGENT_ROLES)}"
        raise ValueError(msg)
    name = "".join(part.title() for part in role.split("_")) + "Agent"
    return type(name, (AgentActor,), {"role": role, "__module__": __name__})
