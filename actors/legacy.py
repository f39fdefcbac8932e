"""Reading the nested message shapes written before flat messages (``protocol._legacy``): each
is turned into the flat shape that replaced it, so a message still waiting in a task stream, or
a paused run's old checkpoint, is handled by the same code as a new one (protocol/README.md,
"Flat messages")."""

from __future__ import annotations

from typing import overload

from protocol import (
    BrainstormResult,
    Checkpoint,
    Classification,
    Evaluation,
    LegacyBrainstormResult,
    LegacyCheckpoint,
    LegacyClassification,
    LegacyEvaluation,
    LegacyTurnRequest,
    LegacyTurnResult,
    ReplyTo,
    RunAnswer,
    StepDigest,
    ToolUse,
    TrajectoryStep,
    TurnRequest,
    TurnResult,
)


def digest(step: TrajectoryStep) -> StepDigest:
    """A full trajectory step cut to what the evaluator and the reflector read."""
    from modelcall import parse_report

    return StepDigest(
        turn=step.turn, model=step.model, tier=step.tier, confidence=step.confidence,
        status=parse_report(step.text).status or "", duration_ms=step.duration_ms,
        tools=tuple(ToolUse.of(call, result)
                    for call, result in zip(step.tool_calls, step.tool_results, strict=False)),
    )


def _classification(verdict: LegacyClassification) -> Classification:
    chat = verdict.request
    return Classification(
        reply_to=ReplyTo.of(chat), text=chat.text, user_id=chat.user_id, bot=chat.bot,
        models=chat.models, max_answer_chars=chat.max_answer_chars, max_tokens=chat.max_tokens,
        flow=verdict.flow, task_type=verdict.task_type, complexity=verdict.complexity,
        tier_min=verdict.tier_min, tier_max=verdict.tier_max, role=verdict.role,
    )


def _result(result: LegacyTurnResult) -> TurnResult:
    request = result.request
    verdict = request.classification
    chat = verdict.request
    answered = request.answer or chat
    return TurnResult(
        reply_to=ReplyTo.of(answered), request_id=chat.message_id, role=verdict.role,
        text=chat.text, models=chat.models, task_type=verdict.task_type,
        complexity=verdict.complexity, plan=request.plan, tier=request.tier,
        max_turns=request.max_turns, ok=result.ok and bool(result.text), turns=result.turns,
        trajectory=tuple(digest(s) for s in result.trajectory),
        files_written=result.files_written, confidence=result.confidence, usage=result.usage,
        duration_ms=result.duration_ms,
    )


@overload
def upgrade(message: LegacyClassification) -> Classification: ...
@overload
def upgrade(message: LegacyTurnRequest) -> TurnRequest | RunAnswer: ...
@overload
def upgrade(message: LegacyTurnResult) -> TurnResult: ...
@overload
def upgrade(message: LegacyEvaluation) -> Evaluation: ...
@overload
def upgrade(message: LegacyBrainstormResult) -> BrainstormResult: ...


def upgrade(
    message: LegacyClassification | LegacyTurnRequest | LegacyTurnResult | LegacyEvaluation
    | LegacyBrainstormResult,
) -> Classification | TurnRequest | RunAnswer | TurnResult | Evaluation | BrainstormResult:
    """The flat message that replaced ``message``'s type, with the same content.

    A ``turn_request`` carrying the person's answer to a paused run becomes a RunAnswer (the
    run's checkpoint has the rest); an old TurnResult's answer ``text`` only counts as whether
    the run produced one (``ok``), which is all the evaluator read of it.
    """
    match message:
        case LegacyClassification():
            return _classification(message)
        case LegacyTurnRequest(answer=None):
            return TurnRequest.following(
                _classification(message.classification), plan=message.plan,
                memory=message.memory, tier=message.tier, max_turns=message.max_turns,
                usage=message.usage)
        case LegacyTurnRequest(answer=answer) if answer is not None:
            return RunAnswer(reply_to=ReplyTo.of(answer),
                             request_id=message.classification.request.message_id,
                             text=answer.text, user_id=answer.user_id)
        case LegacyTurnResult():
            return _result(message)
        case LegacyEvaluation():
            result = _result(message.result)
            return Evaluation(
                reply_to=result.reply_to, request_id=result.request_id, role=result.role,
                text=result.text, scores=message.scores, notes=message.notes,
                models=result.models, task_type=result.task_type,
                complexity=result.complexity, plan=result.plan, tier=result.tier,
                ok=result.ok, turns=result.turns, trajectory=result.trajectory,
                files_written=result.files_written, cost_usd=result.usage.cost_usd,
            )
        case LegacyBrainstormResult():
            chat = message.classification.request
            return BrainstormResult(reply_to=ReplyTo.of(chat), text=chat.text,
                                    proposals=message.proposals, user_id=chat.user_id)
    msg = f"no flat shape for {type(message).__name__}"
    raise TypeError(msg)


def upgrade_checkpoint(old: LegacyCheckpoint) -> Checkpoint:
    """A checkpoint written before flat messages, as the run state it holds."""
    request = old.request
    verdict = request.classification
    chat = verdict.request
    return Checkpoint(
        session=old.session, request_id=old.request_id, role=verdict.role, text=chat.text,
        turn=old.turn, user_id=chat.user_id, bot=chat.bot, models=chat.models,
        max_answer_chars=chat.max_answer_chars, max_tokens=chat.max_tokens,
        task_type=verdict.task_type, complexity=verdict.complexity,
        tier_min=verdict.tier_min, tier_max=verdict.tier_max, plan=request.plan,
        tier=request.tier, max_turns=request.max_turns, status=old.status, level=old.level,
        confidence=old.confidence, escalation=old.escalation, messages=old.messages,
        trajectory=tuple(digest(s) for s in old.trajectory), files_written=old.files_written,
        usage=old.usage, branch=old.branch, question=old.question, reply=old.reply, at=old.at,
        control_seq=old.control_seq,
    )
