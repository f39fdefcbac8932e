"""The HTTP API's request and response bodies, as msgspec structs: decoded and validated in one
step, and the source of the OpenAPI component schemas (``api._openapi``)."""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from protocol import Decoder

MAX_MESSAGE_CHARS = 32_000
"""Longest ``message`` accepted, in characters."""

_TOKEN = r"^[A-Za-z0-9_-]{1,128}$"
Session = Annotated[str, msgspec.Meta(
    pattern=_TOKEN,
    description="The conversation (its memory, workspace and queue): 1-128 of A-Z a-z 0-9 _ -."
    " A new `api-<run_id>` when absent. A run for a session that is busy waits for the runs "
    "before it.")]
User = Annotated[str, msgspec.Meta(
    pattern=_TOKEN,
    description="Who asks, for their memory across sessions: 1-128 of A-Z a-z 0-9 _ -. "
    "`api` when absent.")]


MAX_TAGS = 16
"""Most ``tags`` a run may have."""
MAX_METADATA_KEYS = 16
"""Most keys ``metadata`` may have; each key is 1-64 characters, each value a string of at
most ``MAX_METADATA_VALUE_CHARS``: the bound is in the schema, which a client can check."""
MAX_METADATA_VALUE_CHARS = 500
MAX_URL_CHARS = 2048
"""Longest ``webhook`` URL accepted, in characters."""
Tag = Annotated[str, msgspec.Meta(
    pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
    description="A short label to find the run by (`GET /v1/runs?tag=`): 1-64 of A-Z a-z 0-9 "
    "_ . : -.")]


MetadataKey = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
MetadataValue = Annotated[str, msgspec.Meta(max_length=MAX_METADATA_VALUE_CHARS)]


class MultitaskStrategy(enum.StrEnum):
    """What a run does when its session has a run in progress (LangGraph Server's
    ``multitask_strategy``): ``enqueue`` waits for it (the default), ``reject`` is refused
    (409 ``session_busy``), ``interrupt`` stops the run in progress (as
    ``POST /v1/runs/{run_id}/stop`` does) and goes next."""

    ENQUEUE = "enqueue"
    REJECT = "reject"
    INTERRUPT = "interrupt"


class RunStatus(enum.StrEnum):
    """Where a run is: ``queued`` (waiting for its session, or for the actors to start it),
    ``running``, ``awaiting_approval`` (tool calls wait for a decision:
    ``POST /v1/runs/{run_id}/approvals/{approval_id}``), ``paused`` (the run asked a question:
    answer it with a new run in the same session), ``done``, ``failed``, ``aborted``
    (stopped)."""

    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"
    ABORTED = "aborted"


FINISHED = frozenset({RunStatus.DONE, RunStatus.FAILED, RunStatus.ABORTED})
"""Statuses a run never leaves."""


VISIBLE = (r"[^\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f"
           r"\u205f\u3000]")
r"""A character that is not whitespace as Python's ``str.isspace`` has it, spelled out: ``\S``
means another set in the ECMAScript regexes of JSON Schema (there ``\x1c``-``\x1f`` are not
whitespace), so a client checking the OpenAPI document and the API disagreed on a message
of only ``\x1f`` (found by schemathesis)."""


class RunRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/runs``: what to ask, in which conversation, as whom."""

    message: Annotated[str, msgspec.Meta(
        min_length=1, max_length=MAX_MESSAGE_CHARS, pattern=VISIBLE,
        description="The request, as a person would write it in Discord (not only spaces).")]
    session: Session | None = None
    user: User | None = None
    tags: Annotated[list[Tag], msgspec.Meta(
        max_length=MAX_TAGS, description=f"Up to {MAX_TAGS} labels, kept with the run.")] = []
    metadata: Annotated[dict[MetadataKey, MetadataValue], msgspec.Meta(
        max_length=MAX_METADATA_KEYS,
        description=f"Up to {MAX_METADATA_KEYS} string pairs kept with the run and returned "
        "with it (keys 1-64 characters, values at most "
        f"{MAX_METADATA_VALUE_CHARS}).")] = {}
    multitask_strategy: MultitaskStrategy = MultitaskStrategy.ENQUEUE
    webhook: Annotated[str, msgspec.Meta(
        min_length=1, max_length=MAX_URL_CHARS, pattern=r"^[hH][tT][tT][pP][sS]?://",
        description="An http(s) URL that gets a signed POST (Standard Webhooks) when the run "
        "ends; its host must be public unless the API allows it (docs/http-api.md).")] | None \
        = None


class RunAccepted(msgspec.Struct, kw_only=True):
    """``202`` to ``POST /v1/runs``."""

    run_id: str
    session: str
    status: RunStatus


class ErrorDetail(msgspec.Struct, kw_only=True):
    """Why a request or a run failed: a stable ``code`` and a sentence for people."""

    code: str
    message: str


class ErrorBody(msgspec.Struct, kw_only=True):
    """Every 4xx / 5xx answer of the API."""

    error: ErrorDetail


class ApprovalCallView(msgspec.Struct, kw_only=True):
    """One tool call waiting for the approval: its tool's ``name`` and its ``arguments``
    (JSON text, cut to 1,500 characters)."""

    name: str
    arguments: str


class ApprovalView(msgspec.Struct, kw_only=True):
    """The approval a run waits on (``awaiting_approval``): decide it with ``POST
    /v1/runs/{run_id}/approvals/{approval_id}`` before ``expires_at`` (Unix seconds), after
    which the run takes no answer as a denial."""

    approval_id: str
    role: str
    calls: list[ApprovalCallView]
    expires_at: float


class Decision(enum.StrEnum):
    """What a person decides about an approval."""

    APPROVE = "approve"
    DENY = "deny"


class DecisionRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/runs/{run_id}/approvals/{approval_id}``: the decision, and who makes it
    (only the run's ``user`` may; absent: the run's user)."""

    decision: Decision
    user: User | None = None


class DecisionAccepted(msgspec.Struct, kw_only=True):
    """``202``: the decision went to the run, which goes on (``approve`` runs the calls,
    ``deny`` tells the model they were refused)."""

    run_id: str
    approval_id: str
    decision: Decision


class WebhookView(msgspec.Struct, kw_only=True):
    """The delivery of a run's webhook: ``pending`` (the run goes on), ``delivering``,
    ``delivered`` (a 2xx came back), ``failed`` (every attempt failed); ``attempts`` made so
    far; ``last_status`` the HTTP status of the last attempt (None: no answer)."""

    state: str
    attempts: int
    last_status: int | None = None


class RunView(msgspec.Struct, kw_only=True):
    """``GET /v1/runs/{run_id}``: a run's state. ``turn`` / ``max_turns`` count the agentic
    loop's turns (SEQUENTIAL runs), ``confidence`` is 0-100, ``model`` the last model used,
    ``answer`` the final answer (the question, when ``paused``), ``files`` the paths of the
    files sent with it (``GET .../files/{path}``), ``error`` set when ``failed`` or
    ``aborted`` (code ``terminated`` when ended by ``.../terminate``); ``user``, ``tags`` and
    ``metadata`` as submitted, ``webhook`` how its
    webhook's delivery goes (None: it has none); times are Unix seconds."""

    run_id: str
    session: str
    status: RunStatus
    flow: str | None
    role: str | None
    turn: int
    max_turns: int
    model: str | None
    confidence: int | None
    answer: str | None
    files: list[str]
    error: ErrorDetail | None
    created_at: float
    updated_at: float
    stop_requested: bool
    approval: ApprovalView | None = None
    user: str | None = None
    tags: list[str] = []
    metadata: dict[str, str] = {}
    webhook: WebhookView | None = None
    client: str | None = None
    """The name of the API key that submitted it (None: from before keys)."""
    retries: int = 0
    """How many times it was retried after it failed."""


class StopAccepted(msgspec.Struct, kw_only=True):
    """``202`` to ``POST /v1/runs/{run_id}/stop``: a running run stops at its next turn, a
    queued one at once (``status`` is then ``aborted``)."""

    run_id: str
    status: RunStatus
    stop_requested: bool


class ConsumerState(msgspec.Struct, kw_only=True):
    """One durable consumer as JetStream reports it: messages not yet delivered
    (``num_pending``), delivered and not acknowledged (``num_ack_pending``), pull requests
    waiting (``num_waiting``: replicas ready for work); ``error`` when it could not be read."""

    num_pending: int = 0
    num_ack_pending: int = 0
    num_waiting: int = 0
    error: str | None = None


class Health(msgspec.Struct, kw_only=True):
    """``GET /healthz``: ``ok``, or ``degraded`` when a consumer cannot be read (a role never
    started); every role's consumer, and the API's own outbox consumer."""

    status: str
    roles: dict[str, ConsumerState]
    outbox: ConsumerState


request_decoder: Decoder[RunRequest] = Decoder(RunRequest)
decision_decoder: Decoder[DecisionRequest] = Decoder(DecisionRequest)
encoder = msgspec.json.Encoder()
