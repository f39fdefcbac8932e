"""The pieces of a run's event stream, without I/O: Server-Sent Event frames
(https://html.spec.whatwg.org/multipage/server-sent-events.html), their ``id:`` — a position
a client resumes from with ``Last-Event-ID`` — and which outbox messages and execution events
belong to a run.

A frame's id is ``<events>.<outbox>.<status>``: the JetStream stream sequence of the last
execution event (``<PREFIX>_EVENTS``) and of the last outbox message (``<PREFIX>_OUTBOX``)
sent so far, and the run status last sent (``-``: none yet). An execution event's frame thus
carries its own stream sequence as ``<events>``, an outbox message's as ``<outbox>``. Each
source is read in stream order, so resuming after a position sends exactly what came after
it: no frame twice, none left out. ``end`` has the id ``end``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import msgspec

from api._schema import RunStatus
from api.errors import BadHeaderError
from protocol import (
    ApprovalRequest,
    ConsolidatedOptions,
    ExecutionEvent,
    Progress,
    Reply,
    event_decoder,
    outbound_decoder,
)

END_ID = "end"
"""The id of the ``end`` frame; a client resuming from it is answered 204 No Content, which
tells an EventSource to stop reconnecting (WHATWG HTML, "Server-sent events")."""
RETRY_MS = 2000
"""The ``retry:`` a stream starts with: how long a client waits before it reconnects, in
milliseconds."""
EVENTS, OUTBOX = "events", "outbox"
"""The two JetStream sources of frames (``Frame.source``)."""

ID_PATTERN = (r"^(end|([0-9]{1,20})\.([0-9]{1,20})\.("
              + "|".join(s.value for s in RunStatus) + "|-))$")
"""Every id a stream sends (a regular expression, for the OpenAPI document too)."""
_ID = re.compile(ID_PATTERN)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Frame:
    """One event to send: its ``event:`` name, its JSON ``data:``, and where it is stored
    (``source``: ``EVENTS`` or ``OUTBOX``; ``seq``: its JetStream stream sequence)."""

    name: str
    data: bytes
    source: str = ""
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in a run's event stream (see the module docstring): stream sequences of the
    last execution event and outbox message sent, and the last run status sent (None: none)."""

    events: int = 0
    outbox: int = 0
    status: RunStatus | None = None

    def __str__(self) -> str:
        return f"{self.events}.{self.outbox}.{self.status or '-'}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """The position named by a ``Last-Event-ID`` (``str(cursor)`` of a frame sent).

        Raises:
            BadHeaderError: ``text`` is no id this API sends.
        """
        match = _ID.match(text.strip())
        if match is None or match.group(1) == END_ID:
            msg = (f"Last-Event-ID {text[:60]!r} is not an id of this stream: send the id of "
                   "the last event received, e.g. '42.17.running'")
            raise BadHeaderError(msg)
        status = match.group(4)
        return cls(int(match.group(2)), int(match.group(3)),
                   None if status == "-" else RunStatus(status))

    def after(self, frame: Frame) -> Cursor:
        """The position once ``frame`` is sent."""
        if frame.source == EVENTS:
            return replace(self, events=max(self.events, frame.seq))
        if frame.source == OUTBOX:
            return replace(self, outbox=max(self.outbox, frame.seq))
        return self

    def sent(self, frame: Frame) -> bool:
        """Whether ``frame`` is at or before this position (the client has it)."""
        if frame.source == EVENTS:
            return frame.seq <= self.events
        if frame.source == OUTBOX:
            return frame.seq <= self.outbox
        return False


def frame(name: str, data: bytes, event_id: str) -> bytes:
    """One Server-Sent Event: ``id``, ``event`` and one ``data`` line (JSON has no newline)."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event_id.encode(), name.encode(), data)


def retry_field(milliseconds: int = RETRY_MS) -> bytes:
    """The ``retry:`` field alone: the client's reconnection delay, in milliseconds."""
    return b"retry: %d\n\n" % milliseconds


def outbound_frame(data: bytes, run_id: str, seq: int = 0) -> Frame | None:
    """The frame of an outbox message of run ``run_id`` (None for other runs): the message's
    JSON, a Reply's files as their names only; ``seq`` is its outbox stream sequence. Its
    name is ``progress``, ``reply``, ``options`` (a ConsolidatedOptions) or ``approval`` (an
    ApprovalRequest)."""
    try:
        message = outbound_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if message.in_reply_to != run_id:
        return None
    match message:
        case Progress():
            return Frame("progress", data, OUTBOX, seq)
        case Reply():
            body = msgspec.to_builtins(msgspec.structs.replace(message, files=()))
            body["files"] = [blob.name for blob in message.files]
            return Frame("reply", _encoder.encode(body), OUTBOX, seq)
        case ConsolidatedOptions():
            return Frame("options", data, OUTBOX, seq)
        case ApprovalRequest():
            return Frame("approval", data, OUTBOX, seq)
    return None


def run_event(data: bytes, trace_id: str) -> ExecutionEvent | None:
    """The execution event in ``data`` when it belongs to the run whose trace id is
    ``trace_id``, else None."""
    try:
        event = event_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return event if event.trace_id == trace_id else None


def event_frame(data: bytes, trace_id: str, seq: int = 0) -> Frame | None:
    """The frame of an execution event of the run whose trace id is ``trace_id`` (named by
    the event's ``kind``), else None; ``seq`` is its events stream sequence."""
    event = run_event(data, trace_id)
    return Frame(event.kind, data, EVENTS, seq) if event is not None else None


class RunWork:
    """Whether any work of a run may still emit events: the run's first message, and every
    task message a delivery of its trace sent (``ExecutionEvent.sent`` of ``handled``
    events), must each be handled once; so must each decision on an approval of the run (an
    ``approval_decided`` event: the API's, or the run's own deadline, which no ``sent``
    counts). Events arrive per process in order, so once the
    count is zero every event of the run has been stored (a lost event — they are published
    without confirmation — leaves it above zero: the stream's drain time bounds the wait)."""

    def __init__(self) -> None:
        self.open = 1
        self.answered = False

    def saw(self, event: ExecutionEvent) -> None:
        """Count a ``handled`` event of the run."""
        if event.kind == "handled":
            self.open += event.sent - 1
        elif event.kind == "approval_decided":
            self.open += 1

    def saw_frame(self, item: Frame) -> None:
        """Note the run's answer (a ``reply`` or ``options`` frame)."""
        if item.name in {"reply", "options"}:
            self.answered = True

    def done(self, sent: bool) -> bool:
        """Whether nothing more of the run is coming; ``sent``: the run went to the actors
        (one stopped before that has no work at all)."""
        return not sent or (self.open <= 0 and self.answered)
