"""What a run produced, as it crosses NATS: the model's tool calls and their results, the
trajectory of turns, the role actor's TurnResult, the evaluator's scores and Evaluation, and
the reflector's Reflection (docs/design.md#reflexion-memory). Rules of ``_messages.py`` apply
(tagged structs,
defaults omitted; protocol/README.md)."""

from __future__ import annotations

import hashlib

from protocol._messages import ReplyTo, RequestFacts, Usage, _Part, _Wire


class ToolCall(_Wire, tag="tool_call", kw_only=True, frozen=True):
    """A model's request to run a tool; ``arguments`` is the JSON text the model produced."""

    call_id: str
    name: str
    arguments: str = "{}"


class ToolResult(_Wire, tag="tool_result", kw_only=True, frozen=True):
    """What a tool returned to the model; ``is_error`` marks a refusal or failure."""

    call_id: str
    name: str
    content: str
    is_error: bool = False


TOOL_TEXT_CHARS = 300
"""Characters of a tool call's arguments and of its output kept in a ToolUse: the reflector
shows 120 / 200 of them; the evaluator looks for a test command in the arguments and for the
``exit code: N`` line ``run_command`` writes second."""


class ToolUse(_Part, kw_only=True, frozen=True):
    """One tool call of a turn and its outcome, cut for the evaluator and the reflector.

    ``arguments`` and ``output`` are the first 300 characters; ``fingerprint`` identifies the
    whole call (name and full arguments: BLAKE2b, 8 bytes, hex), so a repeated identical call
    is still recognised when its arguments were cut.
    """

    name: str
    arguments: str = ""
    fingerprint: str = ""
    output: str = ""
    is_error: bool = False

    @classmethod
    def of(cls, call: ToolCall, result: ToolResult) -> ToolUse:
        """The cut record of ``call`` and the ``result`` it got."""
        digest = hashlib.blake2b(f"{call.name}\0{call.arguments}".encode(), digest_size=8)
        return cls(name=call.name, arguments=call.arguments[:TOOL_TEXT_CHARS],
                   fingerprint=digest.hexdigest(), output=result.content[:TOOL_TEXT_CHARS],
                   is_error=result.is_error)


class StepDigest(_Part, kw_only=True, frozen=True):
    """One turn of the agentic loop as the evaluator and the reflector read it: the model, its
    tier, the confidence after the turn, the ``Status:`` the model reported (``continue``,
    ``done``, ``stuck`` or "") and the tools it ran. The model's text is not kept (it is in
    the answer and the checkpoint's conversation)."""

    turn: int
    model: str
    tier: int = 0
    confidence: int = 50
    status: str = ""
    tools: tuple[ToolUse, ...] = ()
    duration_ms: float = 0.0


class TurnResult(_Wire, tag="turn_result", kw_only=True, frozen=True):
    """A SEQUENTIAL run's outcome, for the evaluator: what it scores and what the reflector
    keeps (the case base entry).

    Shape: ``reply_to`` addresses the message the run answered last (the request, or the
    person's answer to a clarifying question); ``request_id`` is the run's request (the case
    id); ``role`` the role that ran it; ``request`` the request's RequestFacts (its ``text`` is
    the reflector's prompt and the case's task, its ``models`` and tier bounds the reflector
    keeps to); ``plan``, ``tier`` (the tier the run started at) and ``max_turns`` as the
    TurnRequest had them; then the outcome. The answer itself went to the person and is not
    carried (``ok``: whether there was one).
    """

    reply_to: ReplyTo
    request_id: str
    role: str
    request: RequestFacts
    plan: tuple[str, ...] = ()
    tier: int = 1
    max_turns: int = 1
    ok: bool = True
    turns: int = 1
    trajectory: tuple[StepDigest, ...] = ()
    files_written: tuple[str, ...] = ()
    confidence: int = 50
    usage: Usage = Usage()
    duration_ms: float = 0.0


class Scores(_Part, kw_only=True, frozen=True):
    """Evaluator scores, each 0-100 (docs/design.md#reflexion-memory)."""

    task_completion: int
    code_quality: int
    efficiency: int

    @property
    def overall(self) -> int:
        return round((self.task_completion + self.code_quality + self.efficiency) / 3)


class Evaluation(_Wire, tag="evaluation", kw_only=True, frozen=True):
    """The evaluator's scores of a run, for the reflector: the scores and the TurnResult's
    fields the reflection and the case base entry use (not the TurnResult).

    Shape: ``reply_to``, ``request_id``, ``role``, ``request`` (RequestFacts), ``plan`` and
    ``tier`` as in the TurnResult; ``scores`` and ``notes``; the outcome the case keeps
    (``ok``, ``turns``, ``trajectory``, ``files_written``) and its ``cost_usd`` (of the
    TurnResult's usage).
    """

    reply_to: ReplyTo
    request_id: str
    role: str
    request: RequestFacts
    scores: Scores
    notes: tuple[str, ...] = ()
    plan: tuple[str, ...] = ()
    tier: int = 1
    ok: bool = True
    turns: int = 1
    trajectory: tuple[StepDigest, ...] = ()
    files_written: tuple[str, ...] = ()
    cost_usd: float = 0.0


class Reflection(_Wire, tag="reflection", kw_only=True, frozen=True):
    """A Reflexion self-reflection on one run (Shinn et al. 2023;
    docs/design.md#reflexion-memory)."""

    session: str
    what_worked: str
    what_failed: str
    root_cause: str
    strategy_change: str
    key_insight: str
    scores: Scores
    task: str = ""
    created_at: float = 0.0
