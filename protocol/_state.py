"""Values kept in JetStream (not sent as messages): session memory, run state and checkpoints
in KV buckets, cases in the case stream. JSON like the wire messages; the same schema
evolution rules apply (protocol/README.md)."""

from __future__ import annotations

import enum

import msgspec

from protocol._messages import (
    Reply,
    ReplyTo,
    RequestFacts,
    Usage,
    _Part,
)
from protocol._outcomes import (
    Reflection,
    Scores,
    StepDigest,
    ToolCall,
)


class HistoryEntry(_Part, kw_only=True, frozen=True):
    """One message of a session's conversation; ``role`` is ``user`` or ``assistant``."""

    role: str
    text: str
    user_id: str = ""
    at: float = 0.0
    session: str = ""
    """The session it was said in (per-user memory spans sessions)."""
    request_id: str = ""
    """The request of the exchange (the person's ChatMessage ``message_id``, the id the
    answer replied to): a 👎 on that answer reflects on this exchange."""


class Insight(_Part, kw_only=True, frozen=True):
    """A key insight kept in session memory; ``score`` ranks it, ``seen`` counts repeats."""

    text: str
    score: int = 0
    seen: int = 1


class SessionState(msgspec.Struct, kw_only=True):
    """The value of a session in the sessions KV bucket (docs/design.md#reflexion-memory).

    Memory windows: ``reflections`` keeps the last 5, ``insights`` the top 20.
    ``confidence`` is 10-100.
    """

    session: str
    confidence: int = 50
    history: list[HistoryEntry] = []
    reflections: list[Reflection] = []
    insights: list[Insight] = []
    trajectory_summary: str = ""
    scores: Scores | None = None
    runs: int = 0
    updated_at: float = 0.0
    tier: int = 0
    """Model tier chosen for this session with ``/model`` (1-4); 0 lets each role choose."""
    last_case: str = ""
    """Id of the case (``Case.case_id``) of this session's last finished run (a 👍 / 👎
    whose control carries no ``request_id`` marks it)."""
    votes: dict[str, int] = {}
    """The 👍 / 👎 counted, ``"<request id> <user id>"`` → the control's value (the latest
    ``actors.reflector.VOTES_KEPT``): one vote per person per answer, a changed vote replaces
    the earlier one."""
    rule_tier_min: int = 0
    """The rules' floor on the tiers of this session's latest request (0: none); the 👎
    reflection on its answer keeps to it."""
    rule_tier_max: int = 0
    """The rules' cap on the tiers of this session's latest request (0: none)."""


class Case(msgspec.Struct, kw_only=True, frozen=True):
    """One finished SEQUENTIAL run, kept in the case base (``<PREFIX>_CASES`` stream, one
    subject per case) so the router and the planner learn from it.

    Tiers are 1-4; ``tiers`` lists the tier of each turn in order; ``outcome`` is
    ``succeeded`` or ``failed`` (from the evaluator's scores, overridden by feedback on the
    answer of its request: ``feedback`` +1 for 👍, -1 for 👎); cost in US dollars; ``at``
    Unix seconds. A run stopped with 🛑 is no case. ``case_id`` is the request's id.
    """

    case_id: str
    session: str
    task: str
    role: str
    task_type: str = ""
    complexity: str = ""
    plan: tuple[str, ...] = ()
    start_tier: int = 1
    final_tier: int = 1
    tiers: tuple[int, ...] = ()
    escalations: int = 0
    turns: int = 0
    outcome: str = "succeeded"
    scores: Scores | None = None
    feedback: int = 0
    cost_usd: float = 0.0
    at: float = 0.0
    embedding: tuple[float, ...] = ()
    """The task's embedding when ``cases.embedding_model`` is set (ranking by cosine)."""

    @property
    def succeeded(self) -> bool:
        return self.outcome == "succeeded"


class EscalationMemo(msgspec.Struct, kw_only=True):
    """What the escalation rules remember between turns (``actors.escalation``)."""

    low_turns: int = 0
    unchanged_turns: int = 0
    errors: dict[str, int] = {}


class CheckpointStatus(enum.StrEnum):
    """Where a checkpointed SEQUENTIAL run got to (``Checkpoint.status``; stored as the
    value). Which status follows which, and what each lets a delivery do, is
    ``actors.run_control``'s (docs/design.md#the-agentic-loop)."""

    RUNNING = "running"
    """Between turns: a redelivery continues from here."""
    PAUSED = "paused"
    """Asked the person a question (``Checkpoint.question``); their answer resumes it."""
    DONE = "done"
    """Finished with an answer (``Checkpoint.reply``)."""
    ABORTED = "aborted"
    """Stopped by an abort control; ``Checkpoint.reply`` says so."""
    AWAITING_APPROVAL = "awaiting_approval"
    """Stopped before tool calls marked ``approval: ask`` (``Checkpoint.approval``); a Control
    ``approve`` / ``deny`` / ``approval_timeout`` of that approval resumes it."""


class PendingApproval(msgspec.Struct, kw_only=True):
    """The tool calls a run waits to have approved (``Checkpoint.approval``,
    docs/design.md#approvals).

    ``calls`` are all the calls of the turn that stopped, in the model's order (none has run);
    ``asked`` the ``call_id`` of those that need the approval. ``reply_to`` addresses the
    request the run answers, so a decision made anywhere resumes the run towards it;
    ``expires_at`` is the Unix time (s) after which the run takes no answer as a denial;
    ``model``, ``model_ms`` (how long its model call took, ms) and ``text`` (the model's
    words) are the stopped turn's: its step's duration leaves out the wait for a person.
    """

    approval_id: str
    calls: tuple[ToolCall, ...]
    asked: tuple[str, ...]
    reply_to: ReplyTo
    expires_at: float
    model: str = ""
    model_ms: float = 0.0
    text: str = ""


class Checkpoint(msgspec.Struct, kw_only=True):
    """A SEQUENTIAL run's state after ``turn`` turns, in the checkpoints KV bucket under the
    session's key: written every 5 turns, when the run pauses for the person, and at the end.

    The run's state, not copies of its messages: what the run was asked (``role``, the
    request's ``RequestFacts`` as the TurnRequest carried it, the planner's ``plan``, the start
    ``tier`` and ``max_turns``), so a paused run resumes from a RunAnswer alone, and where it
    got to: ``messages`` is the model conversation (zlib-compressed JSON, the plan and the
    memory are in its system message); ``status`` is a ``CheckpointStatus`` (``paused``:
    ``question`` asked); ``reply`` is the final answer (``done`` or ``aborted``), so a
    redelivered task republishes it instead of running again.
    """

    session: str
    request_id: str
    role: str
    request: RequestFacts
    turn: int
    plan: tuple[str, ...] = ()
    tier: int = 1
    max_turns: int = 1
    status: CheckpointStatus = CheckpointStatus.RUNNING
    level: int = 0
    confidence: int = 50
    escalation: EscalationMemo = msgspec.field(default_factory=EscalationMemo)
    messages: bytes = b""
    trajectory: tuple[StepDigest, ...] = ()
    files_written: tuple[str, ...] = ()
    usage: Usage = Usage()
    branch: str = ""
    question: str = ""
    reply: Reply | None = None
    approval: PendingApproval | None = None
    """The tool calls the run waits to have approved (status ``awaiting_approval``)."""
    delivery: int = 0
    """Stream sequence of the task message whose delivery wrote this checkpoint (0: not
    known): only a redelivery of that message repeats the answer or the approval request it
    published (its publish ids are that delivery's), never another message of the run."""
    at: float = 0.0
    control_seq: int = 0
    """Sequence of the session's last control message when the run started: only aborts
    published after it stop this run."""


class RunState(msgspec.Struct, kw_only=True):
    """The SEQUENTIAL run a session has in progress: the value under the session's key in the
    runs KV bucket (``<PREFIX>_RUNS``), written by the replica that holds the run's lock and
    read by ``/status``. ``status`` says what holds the lock: ``running`` for a run, else the
    ``ControlAction`` that does (``merge``, ``discard``, ``delete_session``:
    ``actors.run_control``); times are Unix seconds."""

    session: str
    role: str
    holder: str
    request_id: str
    status: str = "running"
    turn: int = 0
    max_turns: int = 0
    model: str = ""
    confidence: int = 50
    started_at: float = 0.0
    updated_at: float = 0.0


class ArtifactEntry(msgspec.Struct, kw_only=True, frozen=True, array_like=True):
    """One stored workspace file: ``size`` bytes, lowercase hex ``sha256``, the file's
    modification time when uploaded (``mtime_ns``, nanoseconds since the epoch, 0 unknown).
    Encoded as a JSON array ``[size, sha256, mtime_ns]`` (a manifest holds many)."""

    size: int
    sha256: str
    mtime_ns: int = 0


class ArtifactManifest(msgspec.Struct, kw_only=True):
    """The files a session has in the JetStream artifact store, under the session's key in the
    ``<PREFIX>_ARTIFACT_INDEX`` bucket, so listing one session reads one key instead of the
    metadata of every object of the bucket. ``files``: workspace path → entry."""

    files: dict[str, ArtifactEntry] = {}
