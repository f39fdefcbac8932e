"""The trace context a NATS publish carries: a PRODUCER span per publish when spans are
recorded, by the OpenTelemetry messaging conventions
(https://opentelemetry.io/docs/specs/semconv/messaging/messaging-spans/: the "send" operation,
``publish <destination>``, its context injected as the message's creation context).

When nothing records (no exporter: the default) no span is made: the message carries the
current span's ``traceparent``, as cheap as before (the bench's ``tracing`` scenario).
"""

from __future__ import annotations

from opentelemetry.trace import Span, SpanKind

from protocol import HEADER_TRACEPARENT, HEADER_TRACESTATE
from runtime import _tracing
from runtime._tracing import EVENT_PARENT_KEY, current_span_ids, current_traceparent

MESSAGING_SYSTEM = "nats"
"""``messaging.system`` of every messaging span (the semantic conventions' registry value)."""


def _attributes(destination: str, subject: str, message_id: str) -> dict[str, str]:
    attributes = {"messaging.system": MESSAGING_SYSTEM, "messaging.operation.type": "send",
                  "messaging.operation.name": "publish",
                  "messaging.destination.name": subject}
    if destination != subject:
        attributes["messaging.destination.template"] = destination
    if message_id:
        attributes["messaging.message.id"] = message_id
    return attributes


def start_publish(destination: str, subject: str, headers: dict[str, str],
                  message_id: str = "") -> Span | None:
    """Put the trace context of one publish to ``subject`` into ``headers``; the caller ends
    the returned span once the publish is handed over (None: nothing records, nothing to end).

    Recording, a PRODUCER span ``publish <destination>`` under the current span: its
    ``traceparent`` and a ``tracestate`` (the caller's entries, and ``sb`` naming the current
    span for the events; ``runtime._tracing.EVENT_PARENT_KEY``) go into ``headers``. Not
    recording, the current span's ``traceparent`` only (none when there is no current span).

    Args:
        destination: ``subject`` or, when ``subject`` holds an id (an origin, a session), its
            template (``sb.out.{origin}``): the span's name, of bounded cardinality.
        subject: the NATS subject (``messaging.destination.name``).
        headers: the message's headers, completed in place.
        message_id: the ``Nats-Msg-Id`` (``messaging.message.id``), if any.
    """
    if not _tracing._recording():
        traceparent = current_traceparent()
        if traceparent:
            headers[HEADER_TRACEPARENT] = traceparent
        return None
    _, sender = current_span_ids()
    span = _tracing._tracer.start_span(f"publish {destination}", kind=SpanKind.PRODUCER,
                                       attributes=_attributes(destination, subject, message_id))
    _inject(span, sender, headers)
    return span


def start_root_publish(destination: str, subject: str, headers: dict[str, str],
                       parent: str = "", message_id: str = "") -> Span:
    """Like ``start_publish`` for a request that enters the system (a gateway's, the API's):
    the PRODUCER span is a child of ``parent`` (a W3C ``traceparent``; the API's HTTP server
    span, a caller's) or starts a trace; the caller ends it. Not recording, a span id is made
    all the same (a non-recording span), so the request has a trace id."""
    carrier = {HEADER_TRACEPARENT: parent} if parent else None
    if not _tracing._recording():
        span = _tracing.start_span("", carrier)
        headers[HEADER_TRACEPARENT] = _tracing.traceparent_of(span)
        return span
    # Extracted into an empty context: without ``parent`` the span starts a trace.
    context = _tracing._propagator.extract(carrier or {})
    span = _tracing._tracer.start_span(f"publish {destination}", context=context,
                                       kind=SpanKind.PRODUCER,
                                       attributes=_attributes(destination, subject, message_id))
    _inject(span, "", headers)
    return span


def _inject(span: Span, sender: str, headers: dict[str, str]) -> None:
    """``traceparent`` and ``tracestate`` of ``span`` into ``headers``, ``sb=<sender>`` first
    in the ``tracestate`` when there is a sender."""
    headers[HEADER_TRACEPARENT] = _tracing.traceparent_of(span)
    state = span.get_span_context().trace_state
    if not state:  # the common case: no vendor entries to keep (no TraceState validation)
        if sender:
            headers[HEADER_TRACESTATE] = f"{EVENT_PARENT_KEY}={sender}"
        return
    if sender:
        state = (state.update(EVENT_PARENT_KEY, sender) if EVENT_PARENT_KEY in state
                 else state.add(EVENT_PARENT_KEY, sender))
    elif EVENT_PARENT_KEY in state:
        state = state.delete(EVENT_PARENT_KEY)
    if state:
        headers[HEADER_TRACESTATE] = state.to_header()
