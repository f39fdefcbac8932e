"""What the API keeps about each run and each session's queue (JetStream KV values), and the
pure rules that move a run from one state to the next as the actors' answers arrive.

Rules that keep concurrent writers safe (any API replica may handle any outbox message, so a
run's Progress can be applied after its Reply): a finished or paused run never changes status
again, ``turn`` only grows, and fields are only overwritten by non-empty values.
"""

from __future__ import annotations

import random

import msgspec

from api._schema import (
    FINISHED,
    ApprovalCallView,
    ApprovalView,
    ErrorDetail,
    RunStatus,
    RunView,
    WebhookView,
)
from protocol import (
    AGENT_ROLES,
    ApprovalRequest,
    ChatMessage,
    ConsolidatedOptions,
    ErrorCode,
    Flow,
    Progress,
    Reply,
)

ORIGIN = "api"
"""The API's outbox origin: actors answer every API run on ``<prefix>.out.api``."""
MEMORY_OWNER = "api"
"""``ChatMessage.bot`` of API runs: a user's per-user memory is one across API sessions."""
LOOP_STAGES = frozenset({"turn", "escalated"})
"""Progress stages that only the agentic loop sends: once seen, the loop is running and an
abort published now stops it at its next turn (``actors.runs.abort_requested``)."""


class RunRecord(msgspec.Struct, kw_only=True):
    """One run, under ``run.<run_id>`` in the API's runs bucket.

    ``sent_at`` is 0 while the run waits in its session's queue (not yet sent to the actors);
    ``traceparent`` is the W3C trace context it was sent with: every execution event of the
    run carries its trace id. ``stop_requested`` / ``abort_sent``: a stop was asked / the abort
    control was published (only once the loop runs, so it cannot stop another run of the
    session). Times are Unix seconds.
    """

    run_id: str
    session: str
    user: str
    message: str
    traceparent: str
    created_at: float
    updated_at: float = 0.0
    sent_at: float = 0.0
    status: RunStatus = RunStatus.QUEUED
    flow: str = ""
    role: str = ""
    stage: str = ""
    turn: int = 0
    max_turns: int = 0
    model: str = ""
    confidence: int = 0
    answer: str = ""
    files: tuple[str, ...] = ()
    error: ErrorDetail | None = None
    loop_started: bool = False
    stop_requested: bool = False
    abort_sent: bool = False
    approval: ApprovalView | None = None
    """The approval the run waits on (``awaiting_approval``)."""
    tags: tuple[str, ...] = ()
    metadata: dict[str, str] = {}
    version: int = 0
    """How many times the record was written (``RunStore.update`` counts): the index keeps
    the summary of the highest version."""
    webhook: str = ""
    """The URL called when the run ends ("" for none)."""
    webhook_state: str = ""
    """"" (none, or the run goes on), ``delivering`` (claimed by ``webhook_claim``, a
    replica), ``delivered`` or ``failed``."""
    webhook_claim: str = ""
    webhook_attempts: int = 0
    webhook_status: int = 0
    """The HTTP status of the last attempt (0: no answer)."""
    client: str = ""
    """The name of the API key that submitted it ("" for runs from before keys)."""
    retries: int = 0
    """How many times it was retried after it failed (``POST .../retry``)."""

    @property
    def trace_id(self) -> str:
        """The 32 hex digits of the run's trace id (``ExecutionEvent.trace_id``)."""
        return self.traceparent[3:35]

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def settled(self) -> bool:
        """Finished or paused: nothing more comes for this run."""
        return self.finished or self.status is RunStatus.PAUSED

    def chat_message(self) -> ChatMessage:
        """The ChatMessage that asks the actors for this run (``message_id`` is the run id)."""
        return ChatMessage(
            message_id=self.run_id, session=self.session, origin=ORIGIN,
            user_id=f"api:{self.user}", user_name=self.user, text=self.message,
            sent_at=self.created_at, bot=MEMORY_OWNER, addressed=True)

    def view(self, status: RunStatus | None = None) -> RunView:
        """The public shape of the run (``status`` overrides the stored one)."""
        return RunView(
            run_id=self.run_id, session=self.session, status=status or self.status,
            flow=self.flow or None, role=self.role or None, turn=self.turn,
            max_turns=self.max_turns, model=self.model or None,
            confidence=self.confidence or None, answer=self.answer or None,
            files=list(self.files), error=self.error, created_at=self.created_at,
            updated_at=self.updated_at or self.created_at, stop_requested=self.stop_requested,
            approval=self.approval, user=self.user, tags=list(self.tags),
            metadata=self.metadata, webhook=self._webhook_view(), client=self.client or None,
            retries=self.retries)

    def _webhook_view(self) -> WebhookView | None:
        if not self.webhook:
            return None
        return WebhookView(state=self.webhook_state or "pending",
                           attempts=self.webhook_attempts,
                           last_status=self.webhook_status or None)


class SessionQueue(msgspec.Struct, kw_only=True):
    """The runs of one session, under ``queue.<session>``: ``active`` was sent to the actors
    (``since``: when, Unix seconds) and holds the session until it is answered; ``waiting``
    go out one at a time after it, in order (as the Discord gateway queues a thread's
    messages)."""

    active: str = ""
    since: float = 0.0
    waiting: list[str] = []
    client: str = ""
    """The API key that started the session: a key without ``admin`` runs only in its own."""


def new_traceparent() -> str:
    """A fresh W3C ``traceparent`` (version 00, sampled) for a new run."""
    return f"00-{random.getrandbits(128) or 1:032x}-{random.getrandbits(64) or 1:016x}-01"


def _role_of(progress: Progress) -> str:
    """The role named by the classifier's ``classified`` progress (``flow · role · complexity``),
    else ""."""
    parts = progress.text.split(" · ")
    if progress.stage == "classified" and len(parts) == 3 and parts[1] in AGENT_ROLES:
        return parts[1]
    return ""


def progressed(record: RunRecord, progress: Progress, now: float) -> RunRecord:
    """``record`` after a Progress: running (unless the actors queued it behind another run
    of the session), with the turn, limits, confidence, model and role it reports."""
    if record.settled:
        return record
    waiting = progress.stage == "queued" and record.status is RunStatus.QUEUED
    return msgspec.structs.replace(
        record, status=RunStatus.QUEUED if waiting else RunStatus.RUNNING, updated_at=now,
        approval=None,
        stage=progress.stage,
        flow=str(progress.flow) if progress.stage == "classified"
        else record.flow or str(progress.flow),
        role=_role_of(progress) or record.role, turn=max(record.turn, progress.turn),
        max_turns=progress.max_turns or record.max_turns,
        confidence=progress.confidence or record.confidence,
        model=progress.model or record.model,
        loop_started=record.loop_started or progress.stage in LOOP_STAGES)


def approval_asked(record: RunRecord, request: ApprovalRequest, now: float) -> RunRecord:
    """``record`` after an ApprovalRequest: ``awaiting_approval``, with what waits."""
    if record.settled:
        return record
    return msgspec.structs.replace(
        record, status=RunStatus.AWAITING_APPROVAL, updated_at=now, loop_started=True,
        turn=max(record.turn, request.turn), approval=ApprovalView(
            approval_id=request.approval_id, role=request.role, expires_at=request.expires_at,
            calls=[ApprovalCallView(name=c.name, arguments=c.arguments)
                   for c in request.calls]))


def approval_decided(record: RunRecord, approval_id: str, now: float) -> RunRecord:
    """``record`` once its approval ``approval_id`` was decided: running again (a decision
    made twice finds it so)."""
    if record.approval is None or record.approval.approval_id != approval_id:
        return record
    return msgspec.structs.replace(record, status=RunStatus.RUNNING, approval=None,
                                   updated_at=now)


def _error_of(reply: Reply) -> ErrorDetail | None:
    if reply.error is None:
        return None
    first = next((line for line in reply.text.splitlines() if line.strip()), "")
    return ErrorDetail(code=str(reply.error), message=first or f"the run failed ({reply.error})")


def answered(record: RunRecord, reply: Reply, *, paused: bool, now: float) -> RunRecord:
    """``record`` after its Reply: ``done``, ``paused`` (the run asked a question and waits),
    ``aborted`` (stopped) or ``failed`` (any other error code)."""
    if record.settled:
        return record
    if reply.error is None:
        status = RunStatus.PAUSED if paused else RunStatus.DONE
    elif reply.error is ErrorCode.ABORTED:
        status = RunStatus.ABORTED
    else:
        status = RunStatus.FAILED
    return msgspec.structs.replace(
        record, status=status, updated_at=now,
        flow=record.flow if record.flow and reply.flow is Flow.SIMPLE else str(reply.flow),
        role=reply.role or record.role, answer=reply.text, error=_error_of(reply),
        files=tuple(blob.name for blob in reply.files), model=reply.usage.model or record.model,
        approval=None)


def options_answered(record: RunRecord, options: ConsolidatedOptions, text: str,
                     now: float) -> RunRecord:
    """``record`` after the BRANCH flow's answer, rendered as ``text``: done."""
    if record.settled:
        return record
    return msgspec.structs.replace(record, status=RunStatus.DONE, updated_at=now,
                                   flow=str(Flow.BRANCH), answer=text,
                                   model=options.usage.model or record.model)


def stopped_before_sent(record: RunRecord, now: float) -> RunRecord:
    """A run still waiting in its session's queue, stopped: aborted at once."""
    if record.settled or record.sent_at:
        return record
    return msgspec.structs.replace(
        record, status=RunStatus.ABORTED, updated_at=now, stop_requested=True,
        error=ErrorDetail(code=str(ErrorCode.ABORTED),
                          message="Stopped before it started, as asked."))


def stopping(record: RunRecord, now: float) -> RunRecord:
    """A sent run, asked to stop: the abort goes out now if its loop runs, else when the loop
    starts (``abort_due``)."""
    if record.settled:
        return record
    return msgspec.structs.replace(record, stop_requested=True, updated_at=now)


def abort_due(record: RunRecord) -> bool:
    """Whether the abort control must be published for ``record`` now."""
    return (record.stop_requested and record.loop_started and not record.abort_sent
            and not record.settled)


def abort_noted(record: RunRecord) -> RunRecord:
    """The abort control of ``record`` was published."""
    return msgspec.structs.replace(record, abort_sent=True)


def sent(record: RunRecord, now: float) -> RunRecord:
    """The run's ChatMessage goes out now (unless the run was stopped: then it stays so)."""
    if record.settled:
        return record
    return msgspec.structs.replace(record, sent_at=record.sent_at or now, updated_at=now)


def send_failed(record: RunRecord, message: str, now: float) -> RunRecord:
    """The actors could not be reached: failed."""
    if record.settled:
        return record
    return msgspec.structs.replace(
        record, status=RunStatus.FAILED, updated_at=now,
        error=ErrorDetail(code="unavailable", message=message))


def retried(record: RunRecord, now: float) -> RunRecord:
    """A failed run, sent again (``POST .../retry``): queued, its error and answer gone, its
    ``retries`` one more. Any other run is left as it is."""
    if record.status is not RunStatus.FAILED:
        return record
    return msgspec.structs.replace(
        record, status=RunStatus.QUEUED, updated_at=now, sent_at=0.0, error=None, answer="",
        stage="", approval=None, stop_requested=False, abort_sent=False, loop_started=False,
        retries=record.retries + 1)


def terminated(record: RunRecord, by: str, now: float) -> RunRecord:
    """A run ended now by API key ``by`` (``POST .../terminate``): aborted at once, whether
    or not the actors still work on it."""
    if record.settled:
        return record
    return msgspec.structs.replace(
        record, status=RunStatus.ABORTED, updated_at=now, stop_requested=True, approval=None,
        error=ErrorDetail(code="terminated", message=f"Terminated by API key {by}."))


def busy(queue: SessionQueue, now: float, stale_s: float) -> bool:
    """Whether the session has a run in progress (active and answered within ``stale_s``)."""
    return bool(queue.active) and now - queue.since <= stale_s


def admit(queue: SessionQueue, run_id: str, now: float, stale_s: float, *,
          first: bool = False) -> SessionQueue:
    """``queue`` with ``run_id`` active (the session was free, or its active run has been
    unanswered for ``stale_s`` seconds) or waiting behind the others (``first``: before
    them, next to go)."""
    if run_id == queue.active or run_id in queue.waiting:
        return queue
    if not busy(queue, now, stale_s):
        return msgspec.structs.replace(queue, active=run_id, since=now,
                                       waiting=list(queue.waiting))
    waiting = [run_id, *queue.waiting] if first else [*queue.waiting, run_id]
    return msgspec.structs.replace(queue, waiting=waiting)


def owned(queue: SessionQueue, client: str) -> SessionQueue:
    """``queue`` marked as ``client``'s session when no key has it yet."""
    return queue if queue.client or not client else msgspec.structs.replace(queue,
                                                                             client=client)


def release(queue: SessionQueue, run_id: str, now: float) -> SessionQueue:
    """``queue`` without ``run_id``; when it was the active run, the first waiting one is
    active now."""
    waiting = [r for r in queue.waiting if r != run_id]
    if queue.active != run_id:
        return msgspec.structs.replace(queue, waiting=waiting)
    if waiting:
        return msgspec.structs.replace(queue, active=waiting[0], since=now,
                                       waiting=waiting[1:])
    return SessionQueue(client=queue.client)
