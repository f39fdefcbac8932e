"""The agentic loop of the SEQUENTIAL flow (SPEC.md §3), one run per TurnRequest.

Each turn: one model call with the workspace tools → run the tools it asked for → publish
progress (turn n/max, confidence, model, files read/written) → escalate to the next model of
the path when the model reports it is stuck or its confidence stays under 30 for 2 turns →
finish when the model answers without tools and does not say ``continue``, or at max turns.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from actors.memory import append_exchange, history_messages
from protocol import (
    FileBlob,
    Flow,
    Progress,
    Reply,
    ToolResult,
    TrajectoryStep,
    TurnRequest,
    TurnResult,
)

if TYPE_CHECKING:
    from actors.agent import AgentActor
    from actors.runtime import MessageContext

LOW_CONFIDENCE = 30
LOW_CONFIDENCE_TURNS = 2
MAX_FILE_BYTES = 8 * 1024 * 1024
"""Largest file attached to an answer (Discord's upload limit without boosts)."""
_MARKER = re.compile(r"<<([^<>\n]{1,300})>>")


class AgentLoop:
    """Runs one SEQUENTIAL request to its end and publishes the Reply and the TurnResult."""

    def __init__(self, actor: AgentActor, ctx: MessageContext, request: TurnRequest) -> None:
        from actors.tools import Workspace

        self.actor, self.ctx, self.request = actor, ctx, request
        self.chat = request.classification.request
        self.topology = actor.topology
        self.workspace = Workspace.for_session(actor.services.settings.workspace_root,
                                               self.chat.session)
        path = self.topology.escalation_path()
        start = self.topology.model_for_tier(request.tier).name
        self.path = path
        self.level = next((i for i, m in enumerate(path) if m.name == start), 0)
        self.usage = request.usage
        self.trajectory: list[TrajectoryStep] = []
        self.files_written: list[str] = []
        self.confidence = 50
        self.low_turns = 0

    async def run(self) -> None:
        from actors.llm import strip_report

        started = time.perf_counter()
        messages = await self._first_messages()
        text = ""
        max_turns = max(1, self.request.max_turns)
        for turn in range(1, max_turns + 1):
            text, done = await self._turn(turn, max_turns, messages)
            if done:
                break
        answer = strip_report(text) or "I stopped without a final answer."
        answer, files = self._attach_files(answer)
        chat = self.chat
        await self.ctx.reply(chat.origin, Reply(
            session=chat.session, origin=chat.origin, in_reply_to=chat.message_id, text=answer,
            files=files, flow=Flow.SEQUENTIAL, usage=self.usage,
        ))
        await self.actor.services.sessions.update(chat.session, lambda s: append_exchange(
            s, chat.text, answer, user_id=chat.user_id, window=self.topology.history_window))
        await self.ctx.send("evaluator", TurnResult(
            request=self.request, text=answer, turns=len(self.trajectory),
            trajectory=tuple(self.trajectory), files_written=tuple(self.files_written),
            confidence=self.confidence, usage=self.usage,
            duration_ms=(time.perf_counter() - started) * 1000,
        ))

    async def _first_messages(self) -> list[dict[str, Any]]:
        from actors.prompts import render

        plan = "\n".join(f"{i}. {step}" for i, step in enumerate(self.request.plan, 1))
        system = render(self.actor.actor_id.role, plan=plan, memory=self.request.memory)
        state = await self.actor.services.sessions.get(self.chat.session)
        return [{"role": "system", "content": system}, *history_messages(state, 6),
                {"role": "user", "content": self.chat.text}]

    async def _turn(self, turn: int, max_turns: int, messages: list[dict[str, Any]]
                    ) -> tuple[str, bool]:
        from actors.llm import parse_report
        from actors.tools import TOOL_SCHEMAS, files_touched, run_tool

        spec = self.path[self.level]
        started = time.perf_counter()
        reply = await self.actor.call_model(self.ctx, spec, messages, tools=TOOL_SCHEMAS,
                                            purpose=f"turn {turn}")
        self.usage = self.usage + reply.usage
        report = parse_report(reply.text)
        if report.confidence is not None:
            self.confidence = report.confidence
        messages.append(_assistant_message(reply.text, reply.tool_calls))
        results: list[ToolResult] = []
        read: list[str] = []
        written: list[str] = []
        for call in reply.tool_calls:
            result = await run_tool(self.workspace, call, self.topology.tools)
            results.append(result)
            messages.append({"role": "tool", "tool_call_id": call.call_id,
                             "content": result.content})
            if not result.is_error:
                touched = files_touched(call)
                read += touched.read
                written += touched.written
            await self.ctx.emit("tool_call", detail=f"{call.name} "
                                f"{'error' if result.is_error else 'ok'}: {call.arguments}"[:500])
        for path in written:
            if path not in self.files_written:
                self.files_written.append(path)
        self.trajectory.append(TrajectoryStep(
            turn=turn, model=spec.name, text=reply.text, tool_calls=tuple(reply.tool_calls),
            tool_results=tuple(results), confidence=self.confidence,
            duration_ms=(time.perf_counter() - started) * 1000,
        ))
        chat = self.chat
        await self.ctx.reply(chat.origin, Progress(
            session=chat.session, origin=chat.origin, in_reply_to=chat.message_id, stage="turn",
            flow=Flow.SEQUENTIAL, turn=turn, max_turns=max_turns, confidence=self.confidence,
            model=spec.name, files_read=tuple(read), files_written=tuple(written),
        ))
        await self.ctx.emit("turn", model=spec.name,
                            detail=f"turn {turn}/{max_turns} confidence {self.confidence} "
                                   f"tools {len(results)} status {report.status or '-'}")
        await self._maybe_escalate(report.status, turn)
        done = not reply.tool_calls and report.status != "continue"
        if not reply.tool_calls and not done:
            messages.append({"role": "user", "content": "Continue with the next step."})
        return reply.text, done

    async def _maybe_escalate(self, status: str | None, turn: int) -> None:
        self.low_turns = self.low_turns + 1 if self.confidence < LOW_CONFIDENCE else 0
        reason = ""
        if status == "stuck":
            reason = "the model reported it is stuck"
        elif self.low_turns >= LOW_CONFIDENCE_TURNS:
            reason = f"confidence under {LOW_CONFIDENCE} for {self.low_turns} turns"
        if not reason or self.level + 1 >= len(self.path):
            return
        previous = self.path[self.level].name
        self.level += 1
        self.low_turns = 0
        await self.ctx.emit("escalation", model=self.path[self.level].name,
                            detail=f"turn {turn}: {previous} → {self.path[self.level].name}: "
                                   f"{reason}")

    def _attach_files(self, answer: str) -> tuple[str, tuple[FileBlob, ...]]:
        """Replace each ``<<path>>`` marker by a note and attach the file (SPEC.md §6)."""
        from actors.errors import ToolError

        files: list[FileBlob] = []

        def _swap(match: re.Match[str]) -> str:
            rel = match.group(1).strip()
            try:
                path = self.workspace.resolve(rel)
            except ToolError as exc:
                return f"(cannot attach {rel}: {exc})"
            if not path.is_file():
                return f"(cannot attach {rel}: no such file in the workspace)"
            if path.stat().st_size > MAX_FILE_BYTES:
                return f"(cannot attach {rel}: larger than {MAX_FILE_BYTES // 2**20} MiB)"
            files.append(FileBlob(name=rel, data=path.read_bytes()))
            return f"📎 {rel}"

        return _MARKER.sub(_swap, answer), tuple(files)


def _assistant_message(text: str, tool_calls: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if tool_calls:
        message["tool_calls"] = [
            {"id": c.call_id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}}
            for c in tool_calls
        ]
    return message

