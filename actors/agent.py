"""The agent role actors: one class, one actor per role of docs/design.md#agent-roles
(``python_coder``, ...).

SIMPLE and BREAKGLASS requests get one streamed model turn without tools; SEQUENTIAL requests
run the agentic loop (``actors.agent_loop``). The answer goes to the gateway as a Reply; a
SEQUENTIAL run's TurnResult goes on to the evaluator. A role backed by a hosted agent
(``Topology.hosted_agent``) gets each answer from the agent instead (``answer_call``), relayed
the same way.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from actors.agent_role import AgentRole
from actors.agent_run import AgentRun
from actors.answer import cap_answer
from actors.attachments import attachment_reader, user_content
from actors.conversation import Conversation
from actors.memory import Speaker
from actors.modeled import ModelActor
from actors.prompts import render
from actors.router import models_for
from actors.run_control import RunControl, artifact_store
from actors.run_task import Decision, RunTask
from core.errors import ModelError, NotDueError, PermanentError
from modelcall import content_text, strip_report
from protocol import (
    AGENT_ROLES,
    FEEDBACK_DOWN,
    FEEDBACK_UP,
    ActorId,
    Control,
    ControlAction,
    Flow,
    Progress,
    Reply,
    ReplyTo,
    RunAnswer,
    TurnRequest,
    Usage,
)
from runtime import MessageContext, Services, handler

if TYPE_CHECKING:
    from core.config import ModelSpec
    from modelcall import ModelReply

STREAM_INTERVAL_S = 1.0
"""Least time between two streamed Progress updates of one answer, in seconds: the Discord
gateway edits its status message at most once a second (``GatewaySettings.edit_interval_s``),
so updates in between were never shown there."""


class ProgressStream:
    """Publishes the growing answer as ``Progress(stage="stream")`` at most once every
    ``STREAM_INTERVAL_S``."""

    def __init__(self, ctx: MessageContext, reply_to: ReplyTo, flow: Flow, model: str) -> None:
        self._ctx, self._reply_to, self._flow, self._model = ctx, reply_to, flow, model
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
        reply_to = self._reply_to
        await self._ctx.reply(reply_to.origin, reply_to.build(
            Progress, stage="stream", flow=self._flow, text=self._latest, model=self._model))


class AgentActor(ModelActor):
    """Serves one agent role; ``agent_class`` makes the class for a given role."""

    def __init__(self, services: Services, actor_id: ActorId) -> None:
        super().__init__(services, actor_id)
        topology = services.topology
        self.conversation = Conversation(
            services.sessions, services.users, history_window=topology.history_window,
            low_confidence=topology.feedback.low_confidence, log=self.log)
        self.runs = RunControl.of(services)
        self.hosted = topology.hosted_agent(actor_id.role)
        """The hosted agent that backs this role, chosen once: it answers instead of the
        tier's models (``answer_call``)."""
        reviews = actor_id.role == "code_reviewer" and topology.peer_review
        self.agent_role = AgentRole(
            replica=actor_id, topology=topology, answer=self.answer_call,
            memory=self.conversation, runs=self.runs, artifacts=artifact_store(services),
            workspace_root=services.settings.workspace_root,
            peer_opinion=self.peer_opinion if reviews else None, hosted=self.hosted is not None)

    @handler
    async def on_turn_request(self, work: TurnRequest, ctx: MessageContext) -> None:
        if work.request.flow is Flow.SEQUENTIAL:
            await AgentRun(self.agent_role, ctx, RunTask.of_request(work)).run()
        else:
            await self._single_turn(work, ctx)

    @handler
    async def on_run_answer(self, answer: RunAnswer, ctx: MessageContext) -> None:
        """The person answered a paused run's question: resume the run from its checkpoint
        (nothing happens when that run is no longer paused)."""
        checkpoint = await self.runs.checkpoint_of(answer.reply_to.session, answer.request_id,
                                                   self.actor_id.role)
        if checkpoint is None:
            await ctx.emit("resume_skipped", detail=f"no paused run {answer.request_id}")
            return
        await AgentRun(self.agent_role, ctx, RunTask.of_answer(answer, checkpoint)).run()

    @handler
    async def on_control(self, control: Control, ctx: MessageContext) -> None:
        """👍 / 👎 on a commit message: merge the run's branch into main, or delete it, under
        the session's run lock (``RunControl.merge`` / ``discard``); a decision on an approval
        a run waits on, or its deadline: resume the run (``decide``).

        Raises:
            PermanentError: any other control.
            NotDueError: an approval's deadline that has not passed (it comes back then).
            TransientError: a run held the session's lock for ``lock_wait_s``.
        """
        if control.action in _DECISIONS:
            await self.decide(control, ctx)
            return
        match control.action:
            case ControlAction.MERGE:
                text = await self.runs.merge(control, self.actor_id)
            case ControlAction.DISCARD:
                text = await self.runs.discard(control, self.actor_id)
            case _:
                msg = f"{self.actor_id.role} does not handle {control.action} controls"
                raise PermanentError(msg)
        await ctx.emit(str(control.action), detail=f"{control.branch}: {text}"[:500])
        # Merging the work is a 👍 on the run's answer, deleting it a 👎
        # (docs/design.md#feedback-and-confidence): the
        # reflector moves the session's confidence and marks the run's case.
        await ctx.send("reflector", Control(
            session=control.session, action=ControlAction.FEEDBACK,
            value=FEEDBACK_UP if control.action is ControlAction.MERGE else FEEDBACK_DOWN,
            user_id=control.user_id, message_id=control.message_id, role=self.actor_id.role,
            request_id=control.request_id))
        if control.origin:
            reply_to = ReplyTo.of(control)
            await ctx.reply(reply_to.origin, reply_to.build(
                Reply, text=text, flow=Flow.SEQUENTIAL, role=self.actor_id.role))

    async def decide(self, control: Control, ctx: MessageContext) -> None:
        """Resume the run that waits on approval ``control.approval_id`` with the decision
        (docs/design.md#approvals). Who may decide is the gateway's or the API's check; here the
        approval id, known only to those shown the request, must match the waiting run. A
        decision on an approval no longer waited on changes nothing (the person who made it
        is told).

        Raises:
            NotDueError: an ``approval_timeout`` before the approval's ``expires_at``.
            TransientError: a run held the session's lock for ``lock_wait_s``.
        """
        checkpoint = await self.runs.awaiting(control.session, self.actor_id.role,
                                              control.approval_id)
        if checkpoint is None or checkpoint.approval is None:
            await ctx.emit("approval_skipped", detail=(
                f"{control.action} of approval {control.approval_id}: not waited on"))
            if control.origin and control.action is not ControlAction.APPROVAL_TIMEOUT:
                reply_to = ReplyTo.of(control)
                await ctx.reply(reply_to.origin, reply_to.build(
                    Reply, text="⌛ That approval was already decided or has expired; "
                                "nothing was changed.",
                    flow=Flow.SEQUENTIAL, role=self.actor_id.role))
            return
        if control.action is ControlAction.APPROVAL_TIMEOUT:
            due_in = checkpoint.approval.expires_at - time.time()
            if due_in > 0:
                msg = f"approval {control.approval_id} expires in {due_in:.0f} s"
                raise NotDueError(msg, due_in_s=due_in)
        decision = Decision.of(control, self.topology.tools.approval_timeout_s)
        await ctx.emit("approval_decided", detail=(
            f"approval {decision.approval_id}: "
            + ("approved" if decision.approved else f"denied: {decision.reason}")))
        await AgentRun(self.agent_role, ctx, RunTask.of_decision(decision, checkpoint)).run()

    async def answer_call(self, ctx: MessageContext, models: Sequence[ModelSpec],
                          messages: list[dict[str, Any]], *,
                          tools: list[dict[str, Any]] | None = None,
                          on_text: Callable[[str], Awaitable[None]] | None = None,
                          purpose: str = "", max_tokens: int = 0) -> ModelReply:
        """This role's answer to ``messages``: from the hosted agent that backs the role
        (``Topology.hosted_agent``; it gets the person's last message, keeps the conversation
        itself and runs its own tools, so ``tools`` and ``max_tokens`` are not its), else
        from ``models`` in fallback order (``ModelActor.call_model``).

        Raises:
            ModelError: as ``call_model`` / ``call_hosted_agent`` raise.
        """
        if self.hosted is not None:
            said = next((content_text(m.get("content")) for m in reversed(messages)
                         if m.get("role") == "user"), "")
            reply: ModelReply = await self.call_hosted_agent(ctx, self.hosted, said,
                                                             on_text=on_text, purpose=purpose)
            return reply
        answer: ModelReply = await self.call_model(ctx, models, messages, tools=tools,
                                                   on_text=on_text, purpose=purpose,
                                                   max_tokens=max_tokens)
        return answer

    async def _single_turn(self, work: TurnRequest, ctx: MessageContext) -> None:

        request, reply_to = work.request, work.reply_to
        flow = request.flow
        speaker = Speaker.of(reply_to, request.user_id, request.bot)
        models = models_for(self.topology, work.tier, role=self.actor_id.role,
                            overrides=request.models)
        system = render(self.actor_id.role, plan="", memory="")
        content = await user_content(request.text, request.attachments,
                                     attachment_reader(self.agent_role.artifacts,
                                                       reply_to.session))
        messages = [{"role": "system", "content": system},
                    *await self.conversation.context_messages(speaker),
                    {"role": "user", "content": content}]
        label = self.hosted.name if self.hosted is not None else models[0].name
        stream = ProgressStream(ctx, reply_to, flow, label)
        reply = await self.answer_call(ctx, models, messages, on_text=stream.update,
                                       purpose=f"{flow} answer", max_tokens=request.max_tokens)
        answer = strip_report(reply.text)
        if reply.finish_reason == "length":
            answer += TOKEN_LIMIT_NOTE
        usage = work.usage + reply.usage
        peer_opinion = self.agent_role.peer_opinion
        if peer_opinion is not None:
            opinion = await peer_opinion(ctx, request.text, request.max_tokens, work.tier,
                                         reply.usage.model, answer)
            if opinion is not None:
                answer = f"{answer}\n\n{opinion[0]}"
                usage = usage + opinion[1]
        answer = cap_answer(answer, request.max_answer_chars)
        await ctx.reply(reply_to.origin, reply_to.build(
            Reply, text=answer, flow=flow, usage=usage, role=self.actor_id.role))
        await self.conversation.remember(speaker, request.text, answer,
                                         request_id=reply_to.in_reply_to)

    async def peer_opinion(self, ctx: MessageContext, request: str, max_tokens: int, tier: int,
                           answered_by: str, review: str) -> tuple[str, Usage] | None:
        """A second opinion on a review from a randomly chosen other model of the same tier;
        None when the tier has no other model or the peer fails (the review stands on its own).

        Args:
            request: the person's request; ``max_tokens`` the bot's cap (0: none).
            tier: the review's tier; ``answered_by`` the model that reviewed.
        """

        peers = [m for m in models_for(self.topology, tier, role=self.actor_id.role)
                 if m.name != answered_by]
        if not peers:
            return None
        peer = random.choice(peers)
        try:
            reply = await self.call_model(ctx, peer, [
                {"role": "system", "content": _PEER_PROMPT},
                {"role": "user", "content": f"Request:\n{request}\n\nReview by "
                                            f"{answered_by}:\n{review}"},
            ], purpose="peer review", max_tokens=max_tokens)
        except ModelError as exc:
            await ctx.emit("peer_review_failed", model=peer.name, detail=str(exc)[:500])
            return None
        text = strip_report(reply.text).strip()
        return (f"🔁 Second opinion ({peer.name}):\n{text}", reply.usage) if text else None


_DECISIONS = frozenset({ControlAction.APPROVE, ControlAction.DENY,
                        ControlAction.APPROVAL_TIMEOUT})

TOKEN_LIMIT_NOTE = "\n\n… (the answer reached its token limit)"
"""Appended when the model stopped at ``max_tokens`` (finish reason ``length``)."""

_PEER_PROMPT = (
    "You are Switchboard's code reviewer peer.\n"
    "Another model reviewed the code in the request below. Give a short second opinion: what "
    "you agree with, what it missed or got wrong. A few bullet points, no repetition."
)

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
