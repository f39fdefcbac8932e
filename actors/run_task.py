"""What a SEQUENTIAL run works on (``RunTask``): read from the TurnRequest that starts it or
from the checkpoint a paused run resumes from, and written back into each checkpoint and into
the run's TurnResult, so no message or checkpoint carries another message whole."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from actors.memory import Speaker
from protocol import (
    Checkpoint,
    Control,
    ControlAction,
    ReplyTo,
    RequestFacts,
    RunAnswer,
    StepDigest,
    TurnRequest,
    TurnResult,
    Usage,
)


@dataclass(frozen=True, slots=True)
class Decision:
    """The decision on the approval a run waits on (docs/design.md#approvals): ``approved``,
    and for a denial the ``reason`` the model is told (who denied, or that no one answered in
    time)."""

    approval_id: str
    approved: bool
    reason: str = ""

    @classmethod
    def of(cls, control: Control, timeout_s: float) -> Decision:
        """The decision a Control ``approve`` / ``deny`` / ``approval_timeout`` makes
        (``timeout_s``: the run's approval bound, for the reason)."""
        if control.action is ControlAction.APPROVE:
            return cls(control.approval_id, approved=True)
        if control.action is ControlAction.DENY:
            who = f" by {control.user_id}" if control.user_id else ""
            return cls(control.approval_id, approved=False, reason=f"the person denied it{who}")
        return cls(control.approval_id, approved=False,
                   reason=f"no one approved it within {timeout_s:g} s")


@dataclass(frozen=True, slots=True)
class RunTask:
    """A run's request and settings.

    ``reply_to`` addresses this delivery's answers (the request, or the person's answer to
    the run's question); ``request_id`` names the run (its checkpoint, branch and case);
    ``request`` is the request's RequestFacts, passed on unchanged into each checkpoint and the
    TurnResult. ``said`` is what the person said last (the request's ``text`` or their
    ``answer``), for the session history and their memory. The rest are the TurnRequest's
    fields of the same names.
    """

    reply_to: ReplyTo
    request_id: str
    request: RequestFacts
    plan: tuple[str, ...] = ()
    memory: str = ""
    tier: int = 1
    max_turns: int = 1
    usage: Usage = Usage()
    answer: str = ""
    """The person's answer to the paused run's question ("" when not resuming)."""
    decision: Decision | None = None
    """The decision on the approval the run waits on (None when not deciding one)."""

    @classmethod
    def of_request(cls, request: TurnRequest) -> RunTask:
        """The task of a run started (or redelivered) by ``request``."""
        return cls(reply_to=request.reply_to, request_id=request.reply_to.in_reply_to,
                   request=request.request, plan=request.plan, memory=request.memory,
                   tier=request.tier, max_turns=request.max_turns, usage=request.usage)

    @classmethod
    def of_answer(cls, answer: RunAnswer, checkpoint: Checkpoint) -> RunTask:
        """The task of the paused run ``checkpoint`` resumed by the person's ``answer``: the
        run now speaks with whoever answered (the request's ``user_id`` becomes theirs; the
        classifier only lets the asker answer, or anyone when no asker is known)."""
        request = checkpoint.request
        if answer.user_id and answer.user_id != request.user_id:
            request = msgspec.structs.replace(request, user_id=answer.user_id)
        return cls(reply_to=answer.reply_to, request_id=checkpoint.request_id, request=request,
                   plan=checkpoint.plan, tier=checkpoint.tier, max_turns=checkpoint.max_turns,
                   usage=checkpoint.usage, answer=answer.text)

    @classmethod
    def of_decision(cls, decision: Decision, checkpoint: Checkpoint) -> RunTask:
        """The task of run ``checkpoint``, stopped for an approval, resumed by ``decision``:
        it answers the request it was answering (``PendingApproval.reply_to``), wherever the
        decision was made."""
        assert checkpoint.approval is not None
        return cls(reply_to=checkpoint.approval.reply_to, request_id=checkpoint.request_id,
                   request=checkpoint.request, plan=checkpoint.plan, tier=checkpoint.tier,
                   max_turns=checkpoint.max_turns, usage=checkpoint.usage, decision=decision)

    @property
    def said(self) -> str:
        """What the person said last: their answer when resuming, else the request."""
        return self.answer or self.request.text

    @property
    def speaker(self) -> Speaker:
        return Speaker.of(self.reply_to, self.request.user_id, self.request.bot)

    def checkpoint(self, role: str, *, turn: int) -> Checkpoint:
        """A checkpoint of this run after ``turn`` turns with the task's fields filled in; the
        caller sets the loop's state (``msgspec.structs.replace`` or attributes)."""
        return Checkpoint(session=self.reply_to.session, request_id=self.request_id, role=role,
                          request=self.request, turn=turn, plan=self.plan, tier=self.tier,
                          max_turns=self.max_turns)

    def result(self, role: str, *, ok: bool, trajectory: tuple[StepDigest, ...],
               files_written: tuple[str, ...], confidence: int, usage: Usage,
               duration_ms: float = 0.0) -> TurnResult:
        """The TurnResult of this run for the evaluator."""
        return TurnResult(
            reply_to=self.reply_to, request_id=self.request_id, role=role, request=self.request,
            plan=self.plan, tier=self.tier, max_turns=self.max_turns, ok=ok,
            turns=len(trajectory), trajectory=trajectory, files_written=files_written,
            confidence=confidence, usage=usage, duration_ms=duration_ms,
        )
