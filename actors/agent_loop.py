"""The turns of the agentic loop (docs/design.md#the-agentic-loop): one model call with tools per
turn.

A turn: one model call with the workspace tools → (when a call it asked for is marked
``approval: ask``, the turn stops here until a person decides: ``Outcome.APPROVAL``,
``TurnEngine.decide``; docs/design.md#approvals) → run the tools it asked for → confidence
from the model's report and the evaluator's signals → progress to the person (turn n/max,
confidence, model, files read/written) → the escalation rules (``actors.escalation``). The run
around the turns (lock, checkpoints, abort, pause, git, artifacts) is ``actors.agent_run``.
"""

from __future__ import annotations

import enum
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from actors.escalation import TurnSignals, cause_of, observe, turn_confidence
from actors.tools import TOOL_NAMES, TOOL_SCHEMAS, files_touched, run_tool
from modelcall import parse_report
from protocol import (
    EscalationMemo,
    Flow,
    PendingApproval,
    Progress,
    Refusal,
    StepDigest,
    ToolCall,
    ToolResult,
    ToolUse,
    Usage,
    refusal_kind,
    refusal_tag,
)
from runtime import child_span

if TYPE_CHECKING:
    from actors.agent_role import ModelAnswer
    from actors.router import Level
    from actors.tools._mcp import McpTools
    from artifacts import Workspace
    from core.config import ToolPolicy
    from protocol import ReplyTo
    from runtime import MessageContext


class Outcome(enum.Enum):
    """What a turn decided."""

    CONTINUE = "continue"
    DONE = "done"
    STUCK = "stuck"
    """Escalation was due but the path has no higher model: ask the person."""
    APPROVAL = "approval"
    """A tool call of the turn waits for a person's approval (``LoopState.approval``): none of
    the turn's calls ran."""


@dataclass
class LoopState:
    """Everything the loop needs to go on; a checkpoint stores it."""

    level: int
    messages: list[dict[str, Any]]
    turn: int = 0
    confidence: int = 50
    memo: EscalationMemo = field(default_factory=EscalationMemo)
    trajectory: list[StepDigest] = field(default_factory=list)
    """Each turn as the evaluator and the reflector read it (the model's text is in
    ``messages``)."""
    files_written: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    last_text: str = ""
    stuck_reason: str = ""
    approval: PendingApproval | None = None
    """The turn stopped for an approval (``Outcome.APPROVAL``), until ``TurnEngine.decide``."""


class TurnEngine:
    """Runs single turns for one run.

    Args:
        answer: the role's model answer (``actors.agent_role.ModelAnswer``).
        ctx: the delivery being handled (events, progress).
        workspace: the thread's workspace.
        path: the escalation path: tiers with their models in fallback order.
        reply_to: where the progress goes (the message the run answers).
        max_turns: the run's turn limit.
        max_tokens: the bot's cap on a model call's completion tokens (0: none).
        tools: the policy the workspace tools run under (``Topology.tools``).
        escalates: False for a role backed by a hosted agent: it has no stronger model to
            move to, so escalation asks the person at once.
        mcp: the run's MCP tool servers (``actors.tools._mcp.McpTools``), offered beside the
            workspace tools as ``<server>__<tool>``; None: the role uses none.
    """

    def __init__(self, answer: ModelAnswer, ctx: MessageContext, workspace: Workspace,
                 path: list[Level], reply_to: ReplyTo, max_turns: int,
                 max_tokens: int = 0, *, tools: ToolPolicy, escalates: bool = True,
                 mcp: McpTools | None = None) -> None:
        self.answer, self.ctx, self.workspace = answer, ctx, workspace
        self.path, self.reply_to, self.max_turns = path, reply_to, max_turns
        self.max_tokens, self.tools, self.escalates = max_tokens, tools, escalates
        self.mcp = mcp

    async def turn(self, state: LoopState) -> Outcome:
        """Run turn ``state.turn + 1`` and update ``state``; ``Outcome.APPROVAL`` leaves the
        turn's tool calls in ``state.approval`` until ``decide``."""

        state.turn += 1
        level = self.path[state.level]
        started = time.time()
        schemas = TOOL_SCHEMAS if self.mcp is None else [*TOOL_SCHEMAS, *self.mcp.schemas]
        reply = await self.answer(self.ctx, level.models, state.messages, tools=schemas,
                                  purpose=f"turn {state.turn}", max_tokens=self.max_tokens)
        model = reply.usage.model or level.name
        state.usage = state.usage + reply.usage
        state.last_text = reply.text
        state.messages.append(_assistant_message(reply.text, reply.tool_calls))
        asked = tuple(c.call_id for c in reply.tool_calls if self.asks(c.name))
        if asked:
            state.approval = PendingApproval(
                approval_id=secrets.token_hex(8), calls=reply.tool_calls, asked=asked,
                reply_to=self.reply_to, expires_at=time.time() + self.tools.approval_timeout_s,
                model=model, model_ms=(time.time() - started) * 1000, text=reply.text)
            return Outcome.APPROVAL
        return await self._use_tools(state, reply.tool_calls, model, started, frozenset(), "")

    async def decide(self, state: LoopState, *, approved: bool, reason: str = "") -> Outcome:
        """Finish the turn that stopped for an approval (``state.approval``): run its calls,
        those that asked only when ``approved``; a denied call's result is a ``denied`` tool
        error that says ``reason``."""
        pending = state.approval
        assert pending is not None
        state.approval = None
        state.last_text = pending.text
        denied = frozenset() if approved else frozenset(pending.asked)
        return await self._use_tools(state, pending.calls, pending.model,
                                     time.time() - pending.model_ms / 1000, denied, reason)

    def asks(self, name: str) -> bool:
        """Whether a call of tool ``name`` waits for a person's approval: ``tools.approval``
        for a built-in tool, the server's ``approval`` for an MCP tool."""
        if self.mcp is not None and self.mcp.owns(name):
            return self.mcp.asks(name)
        return self.tools.approval.get(name, "never") == "ask"

    async def _use_tools(self, state: LoopState, calls: tuple[ToolCall, ...], model: str,
                         started: float, denied: frozenset[str], reason: str) -> Outcome:
        """The rest of a turn once the model answered with ``calls``: run them (refusing
        those in ``denied``), the confidence, the trajectory step, progress, escalation."""
        level = self.path[state.level]
        report = parse_report(state.last_text)
        results, read, written = await self._run_tools(calls, state, denied, reason)
        signals = TurnSignals(reported_confidence=report.confidence, status=report.status,
                              tool_calls=calls, tool_results=tuple(results),
                              files_changed=len(written))
        state.confidence = turn_confidence(state.confidence, signals)
        state.trajectory.append(StepDigest(
            turn=state.turn, model=model, tier=level.tier, confidence=state.confidence,
            status=report.status or "", duration_ms=(time.time() - started) * 1000,
            tools=tuple(ToolUse.of(c, r) for c, r in zip(calls, results, strict=False)),
        ))
        await self._progress(state, model, read, written)
        await self.ctx.emit("turn", model=model, detail=(
            f"turn {state.turn}/{self.max_turns} confidence {state.confidence} "
            f"tools {len(results)} status {report.status or '-'}"))
        reason_to_escalate = observe(state.memo, state.confidence, signals)
        if reason_to_escalate is not None:
            # A role backed by a hosted agent has no stronger model to move to: ask the person.
            if not self.escalates or state.level + 1 >= len(self.path):
                state.stuck_reason = reason_to_escalate
                return Outcome.STUCK
            await self._escalate(state, reason_to_escalate)
        if not calls and report.status not in {"continue", "stuck"}:
            return Outcome.DONE
        if not calls:
            state.messages.append({"role": "user", "content": "Continue with the next step."})
        return Outcome.CONTINUE

    async def _run_tools(self, calls: tuple[ToolCall, ...], state: LoopState,
                         denied: frozenset[str], reason: str
                         ) -> tuple[list[ToolResult], list[str], list[str]]:

        results: list[ToolResult] = []
        read: list[str] = []
        written: list[str] = []
        for call in calls:
            with child_span(tool_span_name(call.name), {
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call.name,
                "gen_ai.tool.call.id": call.call_id, "switchboard.session": self.ctx.session,
            }) as span:
                if call.call_id in denied:
                    result = ToolResult(call_id=call.call_id, name=call.name, is_error=True,
                                        content=refusal_tag(f"error: not run: {reason}",
                                                            Refusal.DENIED))
                elif self.mcp is not None and self.mcp.owns(call.name):
                    result = await self.mcp.call(call)
                else:
                    result = await run_tool(self.workspace, call, self.tools)
                span.set_attributes({"switchboard.tool.error": result.is_error})
                elapsed_ms = span.elapsed_ms
            results.append(result)
            state.messages.append({"role": "tool", "tool_call_id": call.call_id,
                                   "content": result.content})
            if not result.is_error:
                touched = files_touched(call)
                read += touched.read
                written += touched.written
            refused = refusal_kind(result)
            await self.ctx.emit("tool_refused" if refused else "tool_call", detail=_tool_detail(
                call, result, str(refused or ("error" if result.is_error else "ok"))),
                duration_ms=elapsed_ms, **span.event_ids())
        for path in written:
            if path not in state.files_written:
                state.files_written.append(path)
        return results, read, written

    async def _progress(self, state: LoopState, model: str, read: list[str],
                        written: list[str]) -> None:
        reply_to = self.reply_to
        await self.ctx.reply(reply_to.origin, reply_to.build(
            Progress, stage="turn", flow=Flow.SEQUENTIAL, turn=state.turn,
            max_turns=self.max_turns, confidence=state.confidence, model=model,
            files_read=tuple(read), files_written=tuple(written)))

    async def _escalate(self, state: LoopState, reason: str) -> None:
        previous = self.path[state.level].name
        state.level += 1
        target = self.path[state.level].name
        await self.ctx.emit("escalation", model=target, source=cause_of(reason),
                            detail=f"turn {state.turn}: {previous} → {target}: {reason}")
        reply_to = self.reply_to
        await self.ctx.reply(reply_to.origin, reply_to.build(
            Progress, stage="escalated", flow=Flow.SEQUENTIAL, turn=state.turn,
            max_turns=self.max_turns, confidence=state.confidence, model=target,
            text=f"Escalating to {target}: {reason}"))


TOOL_EVENT_RESULT_CHARS = 200
"""Characters of a tool's result in its event (the arguments get what is left of 500)."""


def _tool_detail(call: ToolCall, result: ToolResult, outcome: str) -> str:
    """A tool call's event detail: ``<name> <outcome>: <arguments> → <result>``, the result
    on one line and cut to ``TOOL_EVENT_RESULT_CHARS``, the whole at most 500 characters."""
    shown = " ".join(result.content.split())
    if len(shown) > TOOL_EVENT_RESULT_CHARS:
        shown = shown[:TOOL_EVENT_RESULT_CHARS - 1] + "…"
    head = f"{call.name} {outcome}: "
    room = 500 - len(head) - len(shown) - 3
    arguments = call.arguments if len(call.arguments) <= room else call.arguments[:room - 1] + "…"
    return f"{head}{arguments} → {shown}"


def _assistant_message(text: str, tool_calls: tuple[ToolCall, ...]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if tool_calls:
        message["tool_calls"] = [
            {"id": c.call_id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}}
            for c in tool_calls
        ]
    return message


def tool_span_name(name: str) -> str:
    """The span name of a call of tool ``name``, by the GenAI conventions' "execute_tool
    {gen_ai.tool.name}" (https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/):
    a workspace tool's name is one of a fixed set; any other name (an MCP tool, or one a model
    made up) is left out of the name, which stays bounded, and is kept in ``gen_ai.tool.name``.
    """
    return f"execute_tool {name}" if name in TOOL_NAMES else "execute_tool"
