"""What observers read: execution events and dead letters (docs/design.md#observability)."""

from __future__ import annotations

from protocol._messages import _Wire


class ExecutionEvent(_Wire, tag="execution_event", kw_only=True, frozen=True):
    """One step of the system, for observers (docs/design.md#observability).

    ``kind`` is what happened (``handled``, ``failed``, ``retry``, ``dead_letter``,
    ``model_call``, ``tool_call``, ``turn``, ``reflection``, ``answered`` (a Reply or
    ConsolidatedOptions left for the gateway), ...); ``step`` is the message type handled.
    """

    event_id: str
    session: str
    actor: str
    kind: str
    step: str = ""
    at: float = 0.0
    duration_ms: float = 0.0
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    detail: str = ""
    trace_id: str = ""
    pid: int = 0
    source: str = ""
    """What decided, for decision events: ``classified`` (``rule``, ``case``, ``model``,
    ``keywords``, ``breakglass``, ``resume``), ``tier_chosen`` (``role``, ``task_type``,
    ``case``, ``session``, ``feedback``, ``rule``, ``breakglass``), ``fallback`` (``model``),
    ``case_stored`` / ``case_feedback`` (``case``), and ``escalation`` / ``paused`` (the
    cause: ``stuck``, ``low_confidence``, ``repeated_error``, ``no_progress``;
    ``actors.escalation.cause_of``)."""
    span_id: str = ""
    """The span this event reports (16 hex digits): a delivery's (``handled``), a
    model call's (``model_call``, ``model_error``) or a tool call's (``tool_call``,
    ``tool_refused``); "" for point events."""
    parent_span_id: str = ""
    """The span this event happened in (16 hex digits; for a ``handled`` event, the span that
    published the message, e.g. the gateway's): with ``span_id``, the trace's tree."""
    request_id: str = ""
    """The person's message this step works for (the ChatMessage's ``message_id``, carried
    by every later step as ``ReplyTo.in_reply_to``; a paused run's answer is a request of its
    own). The runtime sets it on every event of a delivery, so one request's events join;
    "" for events about no one request (``started``, a Control's ``feedback``)."""
    flow: str = ""
    """On ``classified``: the flow chosen; on ``answered``: the answer's (a ``Flow`` value)."""
    role: str = ""
    """On ``classified``: the agent role chosen to answer; on ``answered``: the role that
    answered; on ``feedback``: the role whose answer was rated ("" when not known)."""
    user_id: str = ""
    """On ``classified``: who asked; on ``feedback``: who reacted."""
    value: int = 0
    """On ``feedback``: the confidence change (``FEEDBACK_UP`` +15 for 👍, ``FEEDBACK_DOWN``
    -20 for 👎)."""
    sent: int = 0
    """On ``handled``: how many task messages the delivery sent to actors (``send``; replies to
    a gateway are not counted). With the one message that started a request, the sum over a
    trace's ``handled`` events says when no work of the request is left: every message sent
    is handled once (the HTTP API ends a run's event stream on it)."""


class DeadLetter(_Wire, tag="dead_letter", kw_only=True, frozen=True):
    """A task that could not be handled, kept with its original bytes and headers."""

    actor: str
    subject: str
    reason: str
    deliveries: int
    data: bytes
    headers: dict[str, str] = {}
    at: float = 0.0
    error: str = ""
    """The class of the error that dead-lettered it (``MalformedMessageError``,
    ``UnhandledMessageError``, ``ModelRejectedError``, ...): what a reader dispatches on, where
    ``reason`` is prose that may quote a library's wording. Empty on letters from before the
    field."""
