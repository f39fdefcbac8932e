"""Where a task message belongs and where its answer goes, read from the message itself (an
actor's publish carries no session header; protocol/README.md, "Flat messages")."""

from __future__ import annotations

from protocol import (
    BrainstormResult,
    ChatMessage,
    Classification,
    Control,
    Evaluation,
    ReplyTo,
    RunAnswer,
    TaskMessage,
    TurnRequest,
    TurnResult,
)


def waiting_request(message: TaskMessage) -> ReplyTo | None:
    """Where the answer goes when the person is still waiting for it (steps before the
    Reply); None for steps after it (evaluation, reflection)."""
    match message:
        case ChatMessage():
            return ReplyTo.of(message)
        case Classification() | TurnRequest() | RunAnswer() | BrainstormResult():
            return message.reply_to
        case _:
            return None


def address_of(message: TaskMessage) -> ReplyTo | None:
    """The session, gateway and request a task message belongs to, at any step (the reply's
    and after it: evaluation, reflection); None for a Control, which is about a session,
    not a request."""
    match message:
        case (Classification() | TurnRequest() | RunAnswer() | TurnResult() | Evaluation()
              | BrainstormResult()):
            return message.reply_to
        case _:
            return waiting_request(message)


def request_of(message: TaskMessage) -> str:
    """The person's message a task message works for: a ChatMessage's own ``message_id``,
    the ``ReplyTo.in_reply_to`` of every step after it (the reply included: evaluation,
    reflection); "" for a Control. Events of the delivery carry it as
    ``ExecutionEvent.request_id``."""
    if isinstance(message, ChatMessage):
        return message.message_id
    address = address_of(message)
    return address.in_reply_to if address is not None else ""


def session_of(message: TaskMessage) -> str:
    """The session a task message belongs to (its body carries it; actors' publishes have no
    session header)."""
    if isinstance(message, ChatMessage | Control):
        return message.session
    address = address_of(message)
    return address.session if address is not None else "unknown"
