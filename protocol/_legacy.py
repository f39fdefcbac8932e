"""The nested message shapes Switchboard wrote before flat messages (protocol/README.md,
"Flat messages"): still read, never written.

A message of one of these types may still wait in a task stream (work queues keep a message
until it is acknowledged) and a paused run's checkpoint may be kept for days, so readers keep
decoding them (they stay in ``TaskMessage``) and turn them into the flat shapes with
``actors.legacy.upgrade``. Their tags stay theirs forever (rule 4).
"""

from __future__ import annotations

import msgspec

from protocol._messages import (
    BrainstormProposal,
    ChatMessage,
    Complexity,
    Flow,
    Reply,
    TaskType,
    Usage,
    _Wire,
)
from protocol._outcomes import (
    Scores,
    TrajectoryStep,
)
from protocol._state import EscalationMemo


class LegacyClassification(_Wire, tag="classification", kw_only=True, frozen=True):
    """The router's verdict on a ChatMessage (``actors.router``).

    ``decided_by`` names what made the decision: ``rule:<name>``, ``case:<id>``, ``model``,
    ``keywords`` (the fallback), ``breakglass``. The starting tier is chosen later, by the
    classifier (SIMPLE, BREAKGLASS) or the planner (SEQUENTIAL), within ``tier_min`` -
    ``tier_max``.
    """

    request: ChatMessage
    respond: bool
    flow: Flow = Flow.SIMPLE
    task_type: TaskType = TaskType.SOCIAL
    role: str = "researcher"
    complexity: Complexity = Complexity.SIMPLE
    reason: str = ""
    decided_by: str = ""
    tier_min: int = 0
    """Rules' floor on every tier of this request (0: none)."""
    tier_max: int = 0
    """Rules' cap on every tier of this request (0: none)."""


class LegacyTurnRequest(_Wire, tag="turn_request", kw_only=True, frozen=True):
    """Work for a role actor: one turn (SIMPLE, BREAKGLASS) or the agentic loop (SEQUENTIAL).

    ``plan`` and ``memory`` come from the planner; ``tier`` is the model tier (1-4) to start at.
    """

    classification: LegacyClassification
    plan: tuple[str, ...] = ()
    memory: str = ""
    tier: int = 1
    max_turns: int = 1
    usage: Usage = Usage()
    answer: ChatMessage | None = None
    """The person's answer to the clarifying question of a paused run: resume that run."""


class LegacyTurnResult(_Wire, tag="turn_result", kw_only=True, frozen=True):
    """A role actor's outcome: the answer and the trajectory that produced it."""

    request: LegacyTurnRequest
    text: str
    ok: bool = True
    error: str = ""
    turns: int = 1
    trajectory: tuple[TrajectoryStep, ...] = ()
    files_written: tuple[str, ...] = ()
    confidence: int = 50
    usage: Usage = Usage()
    duration_ms: float = 0.0


class LegacyEvaluation(_Wire, tag="evaluation", kw_only=True, frozen=True):
    """The evaluator's heuristic scores of a TurnResult's trajectory."""

    result: LegacyTurnResult
    scores: Scores
    notes: tuple[str, ...] = ()


class LegacyBrainstormResult(_Wire, tag="brainstorm_result", kw_only=True, frozen=True):
    """The proposals of the models that brainstormed in parallel, for the consolidator."""

    classification: LegacyClassification
    proposals: tuple[BrainstormProposal, ...]


class LegacyCheckpoint(msgspec.Struct, kw_only=True):
    """A checkpoint as written before flat messages: the run's request kept whole
    (``request``) and the full trajectory. ``legacy_checkpoint_decoder`` reads it when
    ``checkpoint_decoder`` cannot (no ``role``; ``actors.runs.CheckpointStore.load``)."""

    session: str
    request_id: str
    request: LegacyTurnRequest
    turn: int
    status: str = "running"
    level: int = 0
    confidence: int = 50
    escalation: EscalationMemo = msgspec.field(default_factory=EscalationMemo)
    messages: bytes = b""
    trajectory: tuple[TrajectoryStep, ...] = ()
    files_written: tuple[str, ...] = ()
    usage: Usage = Usage()
    branch: str = ""
    question: str = ""
    reply: Reply | None = None
    at: float = 0.0
    control_seq: int = 0


LEGACY_TASK_TYPES = (LegacyClassification, LegacyTurnRequest, LegacyTurnResult, LegacyEvaluation,
                     LegacyBrainstormResult)
"""Task message types that are read (and upgraded) but never written."""
