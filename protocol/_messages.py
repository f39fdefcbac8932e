"""Every message that crosses NATS, as msgspec structs tagged by a ``type`` field.

Flow of one request (docs/design.md#message-flow)::

    ChatMessage ─classifier→ Classification ─┬─(SEQUENTIAL) planner → TurnRequest → role actor
                                             ├─(SIMPLE, BREAKGLASS) TurnRequest → role actor
                                             └─(BRANCH) brainstorm → BrainstormResult → consolidator
    role actor ─→ Reply (to the gateway) and TurnResult → evaluator → Evaluation → reflector
    consolidator ─→ ConsolidatedOptions (to the gateway)
    ChatMessage answering a paused run ─classifier→ RunAnswer → role actor (resumes the run)

Every message after the ChatMessage carries its ``ReplyTo`` (session, origin, message id), the
request's stable part as one ``RequestFacts`` where its step reads any of it, and only the
fields its next step reads, never the previous message whole (protocol/README.md, "Flat
messages"). Progress, Reply and ConsolidatedOptions go to the gateway that sent the
request (``ReplyTo.origin``), built by ``ReplyTo.build``; ExecutionEvent goes to the event
stream. What a run produced (tool calls and results, its trajectory, scores, the
TurnResult, the Evaluation, the Reflection) is in ``_outcomes.py``, the message unions of
each subject family in ``_families.py``. Values kept in KV buckets
(SessionState, RunState, Checkpoint) are in ``_state.py``. Times are Unix seconds (float),
durations milliseconds, costs US dollars.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

import msgspec


class Flow(enum.StrEnum):
    """How a request is handled (docs/design.md#flows)."""

    SIMPLE = "simple"
    BRANCH = "branch"
    SEQUENTIAL = "sequential"
    BREAKGLASS = "breakglass"


class Complexity(enum.StrEnum):
    """Task complexity; it sets the loop's max turns (docs/design.md#the-agentic-loop: 10 / 20 /
    35)."""

    SIMPLE = "simple"
    MEDIUM = "medium"
    COMPLEX = "complex"


class TaskType(enum.StrEnum):
    """What kind of work a request is, as the classifier sees it."""

    SOCIAL = "social"
    QUESTION = "question"
    CODING = "coding"
    COMMAND = "command"
    DEVOPS = "devops"
    ARCHITECTURE = "architecture"
    REVIEW = "review"
    DOCS = "docs"
    DATABASE = "database"
    RESEARCH = "research"
    BRAINSTORM = "brainstorm"


class ErrorCode(enum.StrEnum):
    """Why a request ended without a normal answer; carried by ``Reply.error``."""

    MALFORMED = "malformed"
    MODEL_ERROR = "model_error"
    MODEL_TIMEOUT = "model_timeout"
    TOOL_ERROR = "tool_error"
    TIMEOUT = "timeout"
    DEAD_LETTER = "dead_letter"
    ABORTED = "aborted"
    INTERNAL = "internal"
    REFUSED = "refused"
    """A rule of ``topology.yaml`` refused the request (the reply says which and why)."""


AGENT_ROLES: tuple[str, ...] = (
    "command_executor",
    "python_coder",
    "js_ts_coder",
    "devops_engineer",
    "architect",
    "code_reviewer",
    "documentation_writer",
    "dba",
    "researcher",
)
"""The nine agent roles of docs/design.md#agent-roles, each an actor name and a task subject
token."""


class _Wire(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type"):
    """Base of every tagged wire message."""


class _Part(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base of untagged parts nested in messages."""


class Attachment(_Part, kw_only=True, frozen=True):
    """A file the user attached; ``size`` in bytes, ``url`` where the gateway can fetch it,
    ``content_type`` as the sender declared it (never trusted alone). ``path``: where the
    gateway stored it in the session's workspace (artifact store), "" when it was not stored.
    The bytes never travel in a message: the agent reads them from the store."""

    name: str
    url: str = ""
    size: int = 0
    content_type: str = ""
    path: str = ""


class FileBlob(_Part, kw_only=True, frozen=True):
    """A file sent back to the user; ``data`` travels base64-encoded in JSON."""

    name: str
    data: bytes


class Usage(_Part, kw_only=True, frozen=True):
    """Tokens and cost of model calls, as litellm reports them."""

    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            model=other.model or self.model,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
            calls=self.calls + other.calls,
        )


class ReplyTo(_Part, kw_only=True, frozen=True):
    """Where everything said about one request goes: built once from the person's ChatMessage
    (``ReplyTo.of``) and carried by every message after it, so no step assembles an address by
    hand.

    ``session`` keys the conversation, ``origin`` names the gateway instance whose outbox
    subject (``<prefix>.out.<origin>``) gets the Progress and the Reply, ``in_reply_to`` is the
    request's ``message_id``, by which that gateway finds the channel and the message to answer
    (it keeps that mapping itself, so nothing else is needed to reach the person).
    """

    session: str
    origin: str
    in_reply_to: str

    @classmethod
    def of(cls, chat: ChatMessage | Control) -> ReplyTo:
        """The address of the answers to ``chat``: a person's message, or a control they
        sent from a gateway (``Control.origin``, ``Control.message_id``)."""
        return cls(session=chat.session, origin=chat.origin, in_reply_to=chat.message_id)

    def build(self, kind: type[_A], /, **fields: Any) -> _A:
        """A ``kind`` (Progress, Reply or ConsolidatedOptions) addressed to this request.

        Args:
            kind: the outbound message type.
            **fields: the message's own fields (``text``, ``stage``, ...).

        Raises:
            TypeError: a field ``kind`` does not have.
        """
        return kind(session=self.session, origin=self.origin, in_reply_to=self.in_reply_to,
                    **fields)


class ChatMessage(_Wire, tag="chat_message", kw_only=True, frozen=True):
    """A person's message, as the gateway received it.

    ``origin`` names the gateway instance; every Progress and Reply for this message is
    published to that gateway's outbox subject.
    """

    message_id: str
    session: str
    origin: str
    user_id: str
    user_name: str = ""
    text: str
    channel_id: str = ""
    guild_id: str = ""
    attachments: tuple[Attachment, ...] = ()
    breakglass: bool = False
    sent_at: float = 0.0
    profile: str = ""
    """The answering bot's default agent role for general chat ("" lets the classifier pick)."""
    models: dict[str, str] = {}
    """The answering bot's model overrides: tier (``"1"``..``"4"``) → litellm model name."""
    addressed: bool = True
    """The person spoke to the bot (mention, reply, DM, slash command, terminal); False for a
    message in the bot's own thread or a listening channel that may be meant for other people:
    the router then asks whether to respond at all."""
    bot: str = ""
    """Who answers, for per-user memory (one memory per bot and person); "" means ``origin``."""
    max_answer_chars: int = 0
    """The bot's cap on answer characters (0: none); longer answers are cut with a note."""
    max_tokens: int = 0
    """The bot's cap on a model call's completion tokens (0: the model's own setting)."""
    bot_name: str = ""
    """The answering bot's name in the bots bucket (``BotConfig.name``, ``default`` for
    ``DISCORD_TOKEN``); what a rule's ``bot:`` names. "" outside Discord."""
    parent_channel_id: str = ""
    """The parent channel of a thread (``channel_id`` is then the thread's id); "" elsewhere.
    A rule's ``channel:`` matches either."""


class RequestFacts(_Part, kw_only=True, frozen=True):
    """The stable part of one request: what the person asked and the answering bot's settings
    (from the ChatMessage) and the router's verdict on it, fixed by the classifier
    (``RequestFacts.of``) and carried unchanged, as one value, by every message and state of
    the request after it (Classification, TurnRequest, TurnResult, Evaluation,
    BrainstormResult, the run's Checkpoint).

    Shape (JSON, defaults omitted): ``{"text": str, "user_id": str, "bot": str, "models":
    {tier: model}, "max_answer_chars": int, "max_tokens": int, "flow": Flow, "task_type":
    TaskType, "complexity": Complexity, "tier_min": int, "tier_max": int, "attachments":
    [Attachment]}``.
    """

    text: str
    """The person's request, as they wrote it."""
    user_id: str = ""
    """Who asked: the per-user memory and the session history record it."""
    bot: str = ""
    """``ChatMessage.bot``: whose per-user memory the answer uses ("" means ``reply_to.origin``)."""
    models: dict[str, str] = {}
    """The answering bot's model overrides (``ChatMessage.models``)."""
    max_answer_chars: int = 0
    """The bot's cap on answer characters (``ChatMessage.max_answer_chars``; 0: none)."""
    max_tokens: int = 0
    """The bot's cap on a model call's completion tokens (``ChatMessage.max_tokens``)."""
    flow: Flow = Flow.SIMPLE
    task_type: TaskType = TaskType.SOCIAL
    complexity: Complexity = Complexity.SIMPLE
    tier_min: int = 0
    """Rules' floor on every tier of this request (0: none)."""
    tier_max: int = 0
    """Rules' cap on every tier of this request (0: none)."""
    attachments: tuple[Attachment, ...] = ()
    """``ChatMessage.attachments`` (names, declared types, workspace paths; no bytes)."""

    @classmethod
    def of(cls, chat: ChatMessage, *, flow: Flow = Flow.SIMPLE,
           task_type: TaskType = TaskType.SOCIAL, complexity: Complexity = Complexity.SIMPLE,
           tier_min: int = 0, tier_max: int = 0) -> RequestFacts:
        """The facts of ``chat`` under the router's verdict (``flow`` ... ``tier_max``)."""
        return cls(text=chat.text, user_id=chat.user_id, bot=chat.bot, models=chat.models,
                   max_answer_chars=chat.max_answer_chars, max_tokens=chat.max_tokens,
                   flow=flow, task_type=task_type, complexity=complexity, tier_min=tier_min,
                   tier_max=tier_max, attachments=chat.attachments)


class Classification(_Wire, tag="classification", kw_only=True, frozen=True):
    """The router's verdict on a ChatMessage, for the planner (SEQUENTIAL) or the brainstorm
    actor (BRANCH); SIMPLE and BREAKGLASS go straight on as a TurnRequest.

    Shape: ``reply_to`` (ReplyTo), ``request`` (RequestFacts: the request's fields the later
    steps read and the verdict), ``role`` (the agent role that will answer). Not the
    ChatMessage: attachments, names and channel ids are the router's alone.
    """

    reply_to: ReplyTo
    request: RequestFacts
    role: str = "researcher"


class TurnRequest(_Wire, tag="turn_request", kw_only=True, frozen=True):
    """Work for a role actor (its task subject names the role): one turn (SIMPLE, BREAKGLASS)
    or the agentic loop (SEQUENTIAL).

    Shape: ``reply_to`` (ReplyTo), ``request`` (RequestFacts, as the Classification carried
    it), ``plan`` and ``memory`` from the planner, ``tier`` the model tier (1-4) to start at,
    ``max_turns``, ``usage`` what was spent before (the planner's call).
    """

    reply_to: ReplyTo
    request: RequestFacts
    plan: tuple[str, ...] = ()
    memory: str = ""
    tier: int = 1
    max_turns: int = 1
    usage: Usage = Usage()

    @classmethod
    def following(cls, verdict: Classification, *, plan: tuple[str, ...] = (),
                  memory: str = "", tier: int = 1, max_turns: int = 1,
                  usage: Usage | None = None) -> TurnRequest:
        """The TurnRequest the planner sends after ``verdict``: its address and request,
        and the plan."""
        return cls(reply_to=verdict.reply_to, request=verdict.request, plan=plan,
                   memory=memory, tier=tier, max_turns=max_turns, usage=usage or Usage())


class RunAnswer(_Wire, tag="run_answer", kw_only=True, frozen=True):
    """The person's answer to the clarifying question of a paused SEQUENTIAL run, sent by the
    classifier to the run's role: resume run ``request_id`` of ``reply_to.session`` from its
    checkpoint, which holds everything else the run needs.

    ``reply_to`` addresses the answer message (the rest of the run answers it).
    """

    reply_to: ReplyTo
    request_id: str
    """The paused run's request (``Checkpoint.request_id``)."""
    text: str
    user_id: str = ""


class Approach(_Part, kw_only=True, frozen=True):
    """One way to solve a problem, with its trade-offs."""

    title: str
    summary: str
    pros: tuple[str, ...] = ()
    cons: tuple[str, ...] = ()


class BrainstormProposal(_Wire, tag="brainstorm_proposal", kw_only=True, frozen=True):
    """The approaches one model proposed."""

    model: str
    approaches: tuple[Approach, ...]
    usage: Usage = Usage()


class BrainstormResult(_Wire, tag="brainstorm_result", kw_only=True, frozen=True):
    """The proposals of the models that brainstormed in parallel, for the consolidator.

    Shape: ``reply_to`` (ReplyTo), ``request`` (RequestFacts: the question is its ``text``,
    who asked it its ``user_id``, for the session history), ``proposals``.
    """

    reply_to: ReplyTo
    request: RequestFacts
    proposals: tuple[BrainstormProposal, ...]


class _Addressed(_Wire, kw_only=True, frozen=True):
    """Base of the messages to a gateway's outbox: the three fields of a ReplyTo, first."""

    session: str
    origin: str
    in_reply_to: str


class ConsolidatedOptions(_Addressed, tag="consolidated_options", kw_only=True, frozen=True):
    """2-3 distinct options merged from the proposals; the BRANCH flow's answer."""

    question: str
    options: tuple[Approach, ...]
    usage: Usage = Usage()


class Progress(_Addressed, tag="progress", kw_only=True, frozen=True):
    """Feedback while a request is worked on.

    ``stage`` is one of ``classified``, ``planning``, ``planned``, ``turn``, ``stream``,
    ``escalated``, ``queued`` (another run holds the session), ``brainstorm``,
    ``consolidating``, ``retrying``. For ``stream``, ``text`` is the whole
    answer so far (not a delta), so a renderer can edit one message in place.
    """

    stage: str
    text: str = ""
    flow: Flow = Flow.SIMPLE
    turn: int = 0
    max_turns: int = 0
    confidence: int = 0
    model: str = ""
    files_read: tuple[str, ...] = ()
    files_written: tuple[str, ...] = ()


class Reply(_Addressed, tag="reply", kw_only=True, frozen=True):
    """The final answer to a ChatMessage; ``error`` is set when the request failed."""

    text: str
    files: tuple[FileBlob, ...] = ()
    flow: Flow = Flow.SIMPLE
    error: ErrorCode | None = None
    usage: Usage = Usage()
    role: str = ""
    """The agent role that answered (controls on the answer go back to it)."""
    branch: str = ""
    """The git branch holding this run's work, when it committed any."""
    commit: str = ""
    """The commit message of that work (👍 merges the branch, 👎 deletes it)."""


class ApprovalCall(_Part, kw_only=True, frozen=True):
    """One tool call a run waits to have approved, as the person is shown it: ``name`` as the
    model called it (``<server>__<tool>`` for an MCP tool), ``arguments`` its JSON text cut to
    ``APPROVAL_ARGUMENT_CHARS``."""

    name: str
    arguments: str = ""


APPROVAL_ARGUMENT_CHARS = 1500
"""Characters of a call's arguments shown in an approval request (a Discord message holds
2,000)."""


class ApprovalRequest(_Addressed, tag="approval_request", kw_only=True, frozen=True):
    """A SEQUENTIAL run stopped before tool calls marked ``approval: ask``
    (docs/design.md#approvals): the gateway shows ``calls`` with Approve and Deny, and answers
    with a Control (``approve`` / ``deny``, this ``approval_id``) to ``role``'s task subject.

    Not the request's answer: the run goes on, and its Progress and Reply follow, under the same
    ``in_reply_to``. ``user_id`` is who asked (they and the bot's admins may decide);
    ``expires_at`` the Unix time (s) after which no answer means deny.
    """

    approval_id: str
    role: str
    calls: tuple[ApprovalCall, ...]
    user_id: str = ""
    expires_at: float = 0.0
    turn: int = 0


class ControlAction(enum.StrEnum):
    """What a person asks of a session (docs/design.md#the-agentic-loop)."""

    ABORT = "abort"
    """Stop the session's running loop at its next turn (🛑)."""
    FEEDBACK = "feedback"
    """👍 / 👎 on a bot message: ``value`` is the confidence change (``FEEDBACK_UP`` /
    ``FEEDBACK_DOWN``)."""
    MERGE = "merge"
    """👍 on a commit message: merge ``branch`` into main."""
    DISCARD = "discard"
    """👎 on a commit message: delete ``branch``."""
    DELETE_SESSION = "delete_session"
    """The thread was deleted: remove its workspace and stored artifacts."""
    APPROVE = "approve"
    """The person allows the tool calls the run waits on (``approval_id``): the run runs them
    and goes on (docs/design.md#approvals)."""
    DENY = "deny"
    """The person refuses them: the model gets a ``denied`` tool result for each."""
    APPROVAL_TIMEOUT = "approval_timeout"
    """The run's own deadline for the approval ``approval_id``: when it finds the run still
    waiting on it, that is a denial."""


FEEDBACK_UP, FEEDBACK_DOWN = 15, -20
"""``Control.value`` of a 👍 and a 👎 (docs/design.md#feedback-and-confidence: confidence +15 / -20,
clamped to 10-100)."""


class Control(_Wire, tag="control", kw_only=True, frozen=True):
    """A person's control on a session.

    Routing (``gateway.bridge.Bridge.control``): ``abort`` on ``<prefix>.control.<session>``,
    which every agent replica watches; ``feedback`` and ``delete_session`` to the reflector's
    task subject; ``merge`` and ``discard`` to ``role``'s task subject.
    """

    session: str
    action: ControlAction
    value: int = 0
    user_id: str = ""
    message_id: str = ""
    role: str = ""
    branch: str = ""
    origin: str = ""
    request_id: str = ""
    """The request whose answer (or run, or commit) the control is about: the person's
    ChatMessage ``message_id``, which is also its case id (``Case.case_id``). 👍 / 👎 mark that
    request's case and count once per person (``user_id``) and request. Empty in controls
    written before it: feedback then falls back to the session's last case."""
    approval_id: str = ""
    """``approve``, ``deny`` and ``approval_timeout``: the approval decided (the
    ApprovalRequest's ``approval_id``)."""


_A = TypeVar("_A", bound=_Addressed)
