"""The reflector: a Reflexion self-reflection on each evaluated run, kept in session memory.

The model answers what worked, what failed, the root cause, the strategy change and the key
insight (Shinn et al., "Reflexion", 2023; SPEC.md §4). When its answer is not the JSON asked
for, a reflection is derived from the scores instead, so memory is never skipped.
"""

from __future__ import annotations

import shutil
import time

import msgspec

from actors.errors import PermanentError
from actors.memory import add_reflection
from actors.modeled import ModelActor
from actors.runtime import MessageContext, handler
from protocol import (
    Control,
    ControlAction,
    Evaluation,
    Reflection,
    Scores,
    SessionState,
)


class _Answer(msgspec.Struct):
    what_worked: str = ""
    what_failed: str = ""
    root_cause: str = ""
    strategy_change: str = ""
    key_insight: str = ""


def parse_reflection(text: str) -> _Answer | None:
    """The JSON object in ``text`` (fenced or bare), or None when there is none."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        return msgspec.json.decode(text[start:end + 1], type=_Answer)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def fallback_reflection(evaluation: Evaluation) -> _Answer:
    s = evaluation.scores
    notes = ", ".join(evaluation.notes) or "no notable events"
    good = s.task_completion >= 60
    return _Answer(
        what_worked="the task was completed" if good else "the run produced an answer",
        what_failed="nothing notable" if good else f"completion scored {s.task_completion}",
        root_cause=notes,
        strategy_change="keep the same approach" if good else "verify with tests earlier",
        key_insight="write a test and run it before answering" if not good else
        "small verified steps work for this kind of task",
    )


def summarize(evaluation: Evaluation) -> str:
    result = evaluation.result
    files = ", ".join(result.files_written) or "no files"
    return (f"{result.turns} turns, wrote {files}; scores "
            f"{evaluation.scores.task_completion}/{evaluation.scores.code_quality}/"
            f"{evaluation.scores.efficiency}")


FEEDBACK_UP, FEEDBACK_DOWN = 15, -20
"""Confidence change of 👍 and 👎 on a bot message (SPEC.md §5); clamped to 10-100."""


class Reflector(ModelActor):
    """Writes each run's reflection and key insight into the session (windows 5 and 20);
    applies people's feedback to the session's confidence (👎 also asks for a reflection);
    forgets a deleted thread's workspace and artifacts."""

    role = "reflector"

    @handler
    async def on_control(self, control: Control, ctx: MessageContext) -> None:
        match control.action:
            case ControlAction.FEEDBACK:
                await self._feedback(control, ctx)
            case ControlAction.DELETE_SESSION:
                await self._delete_session(control, ctx)
            case _:
                msg = f"the reflector does not handle {control.action} controls"
                raise PermanentError(msg)

    async def _feedback(self, control: Control, ctx: MessageContext) -> None:
        def _apply(state: SessionState) -> None:
            state.confidence += control.value

        state = await self.services.sessions.update(control.session, _apply)
        await ctx.emit("feedback", detail=f"{control.value:+d} by {control.user_id}: "
                       f"confidence now {state.confidence}")
        if control.value < 0:
            await self._reflect_on_feedback(state, control, ctx)

    async def _reflect_on_feedback(self, state: SessionState, control: Control,
                                   ctx: MessageContext) -> None:
        from actors.prompts import render

        asked = next((e.text for e in reversed(state.history) if e.role == "user"), "")
        answered = next((e.text for e in reversed(state.history) if e.role == "assistant"), "")
        scores = state.scores or Scores(task_completion=30, code_quality=50, efficiency=50)
        spec = self.topology.model_for_tier(self.spec.tier)
        reply = await self.call_model(ctx, spec, [
            {"role": "system", "content": render(
                "reflector", task=asked or "(unknown)",
                trajectory=(state.trajectory_summary or "") + f"\nanswer: {answered[:500]}",
                scores=f"task completion {scores.task_completion}, code quality "
                       f"{scores.code_quality}, efficiency {scores.efficiency}; "
                       "the person reacted 👎 to the answer")},
            {"role": "user", "content": "Reflect on why the answer disappointed."},
        ], purpose="reflection on 👎")
        answer = parse_reflection(reply.text) or _Answer(
            what_failed="the person disliked the answer", root_cause="unknown",
            strategy_change="ask what was wrong before retrying",
            key_insight="confirm the goal with the person when an answer is rejected")
        reflection = Reflection(
            session=control.session, what_worked=answer.what_worked,
            what_failed=answer.what_failed, root_cause=answer.root_cause,
            strategy_change=answer.strategy_change, key_insight=answer.key_insight,
            scores=scores, task=asked[:500], created_at=time.time(),
        )
        await self.services.sessions.update(
            control.session, lambda s: add_reflection(s, reflection, s.trajectory_summary))
        await ctx.emit("reflection", model=spec.name,
                       detail=f"after 👎: {reflection.key_insight}"[:500])

    async def _delete_session(self, control: Control, ctx: MessageContext) -> None:
        from actors.runs import CheckpointStore
        from actors.tools import Workspace

        removed = 0
        if self.services.artifacts is not None:
            removed = await self.services.artifacts.delete_session(control.session)
        workspace = Workspace.for_session(self.services.settings.workspace_root,
                                          control.session)
        shutil.rmtree(workspace.root, ignore_errors=True)
        await CheckpointStore(self.services.checkpoints).delete(control.session)
        await ctx.emit("session_deleted", detail=f"workspace and {removed} artifacts removed")

    @handler
    async def on_evaluation(self, evaluation: Evaluation, ctx: MessageContext) -> None:
        from actors.prompts import render

        result = evaluation.result
        chat = result.request.classification.request
        trajectory = "\n".join(
            f"turn {s.turn} ({s.model}, confidence {s.confidence}): "
            + ", ".join(f"{c.name} {c.arguments[:120]}" for c in s.tool_calls)
            + "".join(f"\n  -> {'ERROR ' if r.is_error else ''}{r.content[:200]}"
                      for r in s.tool_results)
            for s in result.trajectory
        )
        scores = evaluation.scores
        spec = self.topology.model_for_tier(self.spec.tier)
        reply = await self.call_model(ctx, spec, [
            {"role": "system", "content": render(
                "reflector", task=chat.text, trajectory=trajectory or "(no turns)",
                scores=f"task completion {scores.task_completion}, code quality "
                       f"{scores.code_quality}, efficiency {scores.efficiency}; "
                       f"{', '.join(evaluation.notes)}")},
            {"role": "user", "content": "Reflect on this run."},
        ], purpose="reflection")
        answer = parse_reflection(reply.text) or fallback_reflection(evaluation)
        reflection = Reflection(
            session=chat.session, what_worked=answer.what_worked, what_failed=answer.what_failed,
            root_cause=answer.root_cause, strategy_change=answer.strategy_change,
            key_insight=answer.key_insight, scores=Scores(
                task_completion=scores.task_completion, code_quality=scores.code_quality,
                efficiency=scores.efficiency),
            task=chat.text[:500], created_at=time.time(),
        )
        summary = summarize(evaluation)
        await self.services.sessions.update(
            chat.session, lambda state: add_reflection(state, reflection, summary))
        await ctx.emit("reflection", model=spec.name, detail=f"insight: {reflection.key_insight}"
                       f" | strategy: {reflection.strategy_change}"[:500])
