"""The reflector: a Reflexion self-reflection on each evaluated run, kept in session memory.

The model answers what worked, what failed, the root cause, the strategy change and the key
insight (Shinn et al., "Reflexion", 2023; docs/design.md#reflexion-memory). When its answer is not
the JSON asked
for, a reflection is derived from the scores instead, so memory is never skipped.
"""

from __future__ import annotations

import itertools
import time

import msgspec

from actors.memory import add_reflection
from actors.modeled import CaseModelActor
from actors.prompts import render
from actors.router import models_for
from actors.run_control import RunControl
from core.errors import PermanentError
from protocol import (
    Case,
    Control,
    ControlAction,
    Evaluation,
    Reflection,
    Scores,
    SessionState,
)
from runtime import MessageContext, handler


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
    files = ", ".join(evaluation.files_written) or "no files"
    return (f"{evaluation.turns} turns, wrote {files}; scores "
            f"{evaluation.scores.task_completion}/{evaluation.scores.code_quality}/"
            f"{evaluation.scores.efficiency}")


SUCCESS_COMPLETION = 60
"""Least task-completion score (0-100) of a run whose case counts as succeeded."""


def case_of(evaluation: Evaluation, start_tier: int) -> Case | None:
    """The case base entry of an evaluated SEQUENTIAL run (``protocol.Case``); None for a
    run stopped with 🛑 (``ok`` False): it says nothing about the tier the task needs.

    Outcome: ``succeeded`` when task completion scored at least 60, else ``failed``. Tiers
    come from the trajectory (each turn's tier); an escalation is a turn at a higher tier
    than the one before.
    """
    e = evaluation
    if not e.ok:
        return None
    tiers = tuple(step.tier or start_tier for step in e.trajectory) or (start_tier,)
    escalations = sum(b > a for a, b in itertools.pairwise(tiers))
    succeeded = e.scores.task_completion >= SUCCESS_COMPLETION
    return Case(
        case_id=e.request_id, session=e.reply_to.session, task=e.request.text[:2000],
        role=e.role, task_type=str(e.request.task_type),
        complexity=str(e.request.complexity), plan=e.plan,
        start_tier=tiers[0], final_tier=tiers[-1], tiers=tiers, escalations=escalations,
        turns=e.turns, outcome="succeeded" if succeeded else "failed", scores=e.scores,
        cost_usd=e.cost_usd, at=time.time(),
    )


def with_feedback(case: Case, value: int) -> Case:
    """``case`` after a 👍 (``value`` > 0: succeeded) or 👎 (failed) on its answer."""
    up = value > 0
    return msgspec.structs.replace(case, feedback=1 if up else -1,
                                   outcome="succeeded" if up else "failed")


VOTES_KEPT = 200
"""Votes a session remembers (``SessionState.votes``), the oldest forgotten first."""


def count_vote(state: SessionState, control: Control) -> bool:
    """Count ``control`` (👍 / 👎) once per person and request: apply its value to the
    session's confidence, or the difference when the person changed their vote; False (and
    nothing changed) when it repeats the vote already counted."""
    key = f"{control.request_id or control.message_id} {control.user_id}"
    previous = state.votes.get(key, 0)
    if previous == control.value:
        return False
    state.confidence += control.value - previous
    state.votes.pop(key, None)
    state.votes[key] = control.value
    for stale in list(state.votes)[:max(0, len(state.votes) - VOTES_KEPT)]:
        del state.votes[stale]
    return True


def rated_exchange(state: SessionState, request_id: str) -> tuple[str, str]:
    """What the person asked and was answered in request ``request_id`` (the history
    entries of that request; "" for what the history no longer holds); without a request
    id (a control written before it), the session's last exchange."""
    entries = [e for e in state.history if e.request_id == request_id] if request_id \
        else state.history
    asked = next((e.text for e in reversed(entries) if e.role == "user"), "")
    answered = next((e.text for e in reversed(entries) if e.role == "assistant"), "")
    return asked, answered


class Reflector(CaseModelActor):
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
        """👍 / 👎 on the answer of request ``control.request_id``: the session's confidence
        moves, that request's case (if it was a SEQUENTIAL run) is marked, and a 👎 is
        reflected on. A person's repeated vote on one request counts once."""
        counted: list[bool] = []

        def _apply(state: SessionState) -> None:
            counted[:] = [count_vote(state, control)]

        state = await self.services.sessions.update(control.session, _apply)
        if not counted[0]:
            await ctx.emit("feedback_repeated", role=control.role, user_id=control.user_id,
                           detail=f"{control.value:+d} by {control.user_id} on "
                                  f"{control.request_id or control.message_id}: already counted")
            return
        await ctx.emit("feedback", role=control.role, user_id=control.user_id,
                       value=control.value, detail=f"{control.value:+d} by {control.user_id}: "
                       f"confidence now {state.confidence}")
        case = None
        rated = control.request_id or state.last_case
        if rated and self.cases is not None:
            case = await self.cases.update(rated, lambda c: with_feedback(c, control.value))
            if case is not None:
                await ctx.emit("case_feedback", source="case",
                               detail=f"case {case.case_id} marked {case.outcome}")
        if control.value < 0:
            await self._reflect_on_feedback(state, control, case, ctx)

    async def _reflect_on_feedback(self, state: SessionState, control: Control,
                                   case: Case | None, ctx: MessageContext) -> None:
        asked, answered = rated_exchange(state, control.request_id)
        asked = asked or (case.task if case is not None else "")
        if case is not None:
            trajectory = (f"{case.turns} turns at tiers {list(case.tiers)}, "
                          f"{case.escalations} escalations")
        else:
            trajectory = "" if control.request_id else state.trajectory_summary
        if case is not None and case.scores is not None:
            scores = case.scores
        elif not control.request_id and state.scores is not None:
            scores = state.scores
        else:
            scores = Scores(task_completion=30, code_quality=50, efficiency=50)
        models = models_for(self.topology, self.spec.tier, role=self.actor_id.role,
                            tier_min=state.rule_tier_min, tier_max=state.rule_tier_max)
        reply = await self.call_model(ctx, models, [
            {"role": "system", "content": render(
                "reflector", task=asked or "(unknown)",
                trajectory=trajectory + f"\nanswer: {answered[:500] or '(not kept)'}",
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
        await ctx.emit("reflection", model=reply.usage.model,
                       detail=f"after 👎: {reflection.key_insight}"[:500])

    async def _delete_session(self, control: Control, ctx: MessageContext) -> None:
        """The thread was deleted: forget its workspace, artifacts and checkpoint under the
        session's run lock, as a merge or a discard is done (``RunControl.delete``: a run that
        holds the lock is waited for up to ``lock_wait_s``, then ``TransientError``)."""
        removed = await RunControl.of(self.services).delete(control, self.actor_id)
        await ctx.emit("session_deleted", detail=f"workspace and {removed} artifacts removed")

    @handler
    async def on_evaluation(self, evaluation: Evaluation, ctx: MessageContext) -> None:
        session = evaluation.reply_to.session
        trajectory = "\n".join(
            f"turn {s.turn} ({s.model}, confidence {s.confidence}): "
            + ", ".join(f"{t.name} {t.arguments[:120]}" for t in s.tools)
            + "".join(f"\n  -> {'ERROR ' if t.is_error else ''}{t.output[:200]}"
                      for t in s.tools)
            for s in evaluation.trajectory
        )
        scores, request = evaluation.scores, evaluation.request
        models = models_for(self.topology, self.spec.tier, role=self.actor_id.role,
                            overrides=request.models, tier_min=request.tier_min,
                            tier_max=request.tier_max)
        reply = await self.call_model(ctx, models, [
            {"role": "system", "content": render(
                "reflector", task=request.text, trajectory=trajectory or "(no turns)",
                scores=f"task completion {scores.task_completion}, code quality "
                       f"{scores.code_quality}, efficiency {scores.efficiency}; "
                       f"{', '.join(evaluation.notes)}")},
            {"role": "user", "content": "Reflect on this run."},
        ], purpose="reflection")
        answer = parse_reflection(reply.text) or fallback_reflection(evaluation)
        reflection = Reflection(
            session=session, what_worked=answer.what_worked, what_failed=answer.what_failed,
            root_cause=answer.root_cause, strategy_change=answer.strategy_change,
            key_insight=answer.key_insight, scores=Scores(
                task_completion=scores.task_completion, code_quality=scores.code_quality,
                efficiency=scores.efficiency),
            task=request.text[:500], created_at=time.time(),
        )
        summary = summarize(evaluation)
        case = case_of(evaluation, evaluation.tier)
        if case is not None and self.cases is not None:
            embedding = await self.embed_task(ctx, case.task)
            if embedding:
                case = msgspec.structs.replace(case, embedding=embedding)
            await self.cases.put(case)
            await ctx.emit("case_stored", source="case", detail=(
                f"case {case.case_id}: {case.role} {case.outcome}, tiers {list(case.tiers)}, "
                f"{case.escalations} escalations"))

        def _remember(state: SessionState) -> None:
            add_reflection(state, reflection, summary)
            if case is not None:
                state.last_case = case.case_id

        await self.services.sessions.update(session, _remember)
        await ctx.emit("reflection", model=reply.usage.model,
                       detail=f"insight: {reflection.key_insight}"
                              f" | strategy: {reflection.strategy_change}"[:500])
