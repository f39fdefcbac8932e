"""OpenTelemetry tracing across processes: W3C ``traceparent`` travels in NATS headers.

Each handled message is a span, child of the span that published it, so one request is one
trace from the gateway through every actor (docs/design.md#observability). Spans are exported to
the console
when ``SB_TRACE_CONSOLE=1``; any other exporter can be added to the provider by the operator.

When the provider has no span processor (no exporter: the default), a span would be recorded
for nobody, so ``start_span`` makes a non-recording span instead: a new span id under the
parent's trace id, enough for ``traceparent`` propagation and the trace ids of execution
events, at about a tenth of the SDK span's cost (8 % of an actor's CPU per message, profiled
with py-spy in the bench's ``runtime`` scenario). A delivery goes further: ``begin_delivery``
makes no OpenTelemetry object at all when nothing records, only the two strings a delivery
publishes (its ``traceparent`` and trace id), kept in a context variable (about 1 µs instead
of 10 µs per delivery, measured with ``timeit`` here).

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set, spans are
exported over OTLP http/protobuf by OpenTelemetry's own exporter, configured by the standard
variables (``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_BSP_SCHEDULE_DELAY``, ...;
https://opentelemetry.io/docs/specs/otel/protocol/exporter/); ``OTEL_TRACES_EXPORTER=none``
turns it off. The exporter is imported only then.

Whether spans are recorded or not, each delivery, model call and tool call has a span id, and
the execution events carry it (``span_id``, ``parent_span_id``), so ``switchboard trace``
draws a request's span tree from the events alone.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from protocol import HEADER_TRACEPARENT, HEADER_TRACESTATE

_log = logging.getLogger(__name__)
_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("switchboard")


OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
"""Either one makes ``setup_tracing`` export spans over OTLP (the OpenTelemetry spec's names)."""


def otlp_configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the standard variables ask for OTLP trace export: an endpoint is set and
    ``OTEL_TRACES_EXPORTER`` (default ``otlp``) names ``otlp``."""
    if not any(environ.get(name) for name in OTLP_ENDPOINT_VARIABLES):
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "otlp").replace(" ", "").split(",")
    return "otlp" in exporters


def setup_tracing(service: str, *, console: bool = False) -> None:
    """Install an SDK tracer provider for this process, named ``service`` (once per process:
    OpenTelemetry refuses to replace a provider), exporting to the console with ``console``
    and over OTLP http/protobuf when ``otlp_configured()``."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if console:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    if otlp_configured():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        _log.info("%s: exporting spans over OTLP", service)
    trace.set_tracer_provider(provider)
    global _recording_cache  # the provider changed
    _recording_cache = None
    global _tracer  # the tracer follows the provider set once at start-up
    _tracer = trace.get_tracer("switchboard")


def shutdown_tracing(timeout_s: float = 5.0) -> None:
    """Export the spans still queued and stop the exporters (a process's last step: a forked
    actor leaves with ``os._exit``, which skips the SDK's own ``atexit`` flush). Waits up to
    ``timeout_s`` seconds; a no-op when nothing records."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider) and _recording():
        provider.force_flush(int(timeout_s * 1000))
        provider.shutdown()


_recording_cache: tuple[object, bool] | None = None


def _recording() -> bool:
    """Whether spans go anywhere: the SDK provider has at least one span processor (asked
    once per provider: ``setup_tracing`` sets it up before the first message); no provider
    set (the API's proxy or no-op provider) records nothing."""
    global _recording_cache  # a cache of the process-wide provider
    provider = trace.get_tracer_provider()
    if _recording_cache is not None and _recording_cache[0] is provider:
        return _recording_cache[1]
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return False
    processors = getattr(getattr(provider, "_active_span_processor", None),
                         "_span_processors", None)
    recording = processors is None or bool(processors)
    if isinstance(provider, TracerProvider):
        _recording_cache = (provider, recording)
    return recording


_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
"""A W3C ``traceparent`` of version 00: trace id, parent span id, flags, lowercase hex
(https://www.w3.org/TR/trace-context/#traceparent-header)."""
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


def _parent_of(headers: dict[str, str] | None) -> tuple[str, str, str] | None:
    """(trace id, parent span id, flags), as hex, of the ``traceparent`` in ``headers``; None
    when there is none or it is invalid (all-zero ids: the trace starts here, W3C trace
    context 3.2.2.3)."""
    value = headers.get(HEADER_TRACEPARENT) if headers else None
    parent = _TRACEPARENT.fullmatch(value) if value else None
    if parent is None or parent[1] == _ZERO_TRACE or parent[2] == _ZERO_SPAN:
        return None
    return parent[1], parent[2], parent[3]


EVENT_PARENT_KEY = "sb"
"""Switchboard's ``tracestate`` entry (W3C trace context 3.3: a vendor's own key): the span id
that the events of a message's sender were under, 16 hex digits. A recorded publish is a
PRODUCER span of its own, so the ``traceparent`` names that span, which has no execution event;
the entry lets ``switchboard trace`` hang the delivery under the sender's span all the same."""
_EVENT_PARENT = re.compile(r"(?:^|,)[ \t]*sb=([0-9a-f]{16})[ \t]*(?:,|$)")


def event_parent(headers: dict[str, str] | None, span_parent: str) -> str:
    """The span id the events of a delivery name as its parent: the ``sb`` entry of the
    ``tracestate`` in ``headers`` when there is one, else ``span_parent`` (the
    ``traceparent``'s)."""
    state = headers.get(HEADER_TRACESTATE) if headers else None
    if state:
        found = _EVENT_PARENT.search(state)
        if found is not None:
            return found[1]
    return span_parent


def start_span(name: str, headers: dict[str, str] | None,
               kind: SpanKind = SpanKind.INTERNAL) -> Span:
    """Start (not attach) a span named ``name`` of ``kind``, child of the ``traceparent`` (and
    ``tracestate``) in ``headers`` when present, read by OpenTelemetry's W3C propagator; the
    caller ends it. Non-recording when no exporter is configured."""
    if _recording():
        return _tracer.start_span(name, context=_propagator.extract(headers or {}), kind=kind)
    parent = _parent_of(headers)
    trace_id = int(parent[0], 16) if parent else random.getrandbits(128) or 1
    flags = TraceFlags(int(parent[2], 16) if parent else TraceFlags.SAMPLED)
    return NonRecordingSpan(SpanContext(trace_id, random.getrandbits(64) or 1,
                                        is_remote=False, trace_flags=flags))


class DeliveryTrace:
    """The trace of one delivery: the ``traceparent`` its publishes carry, its trace id (32
    hex digits, "" when none), its span id and its parent's (16 hex digits; the parent is ""
    when the message came without a ``traceparent``) and its span (None when nothing
    records)."""

    __slots__ = ("parent_id", "span", "span_id", "trace_id", "traceparent")

    def __init__(self, traceparent: str, trace_id: str, span: Span | None, span_id: str = "",
                 parent_id: str = "") -> None:
        self.traceparent, self.trace_id, self.span = traceparent, trace_id, span
        self.span_id, self.parent_id = span_id, parent_id

    def end(self) -> None:
        if self.span is not None:
            self.span.end()


_delivery: ContextVar[DeliveryTrace | None] = ContextVar("sb_delivery_trace", default=None)


def begin_delivery(role: str, step: str, headers: dict[str, str] | None,
                   session: str = "", destination: str = "") -> DeliveryTrace:
    """Start the span of one delivery, child of the ``traceparent`` in ``headers``, and make it
    current in the running ``contextvars`` context (one that belongs to this delivery and is
    dropped after it). Without an exporter no span object is made (see the module docstring);
    the caller ends it with ``DeliveryTrace.end``.

    A recorded span follows the OpenTelemetry messaging conventions for the processing of one
    pushed message (https://opentelemetry.io/docs/specs/semconv/messaging/messaging-spans/):
    kind CONSUMER, named ``process <destination>`` (the role's task subject, one per role:
    bounded), child of the message's creation context (the publisher's PRODUCER span), with
    ``messaging.*`` attributes and ``switchboard.role``, ``switchboard.step``,
    ``switchboard.session``. The delivery's events name the sender's span as their parent
    (``event_parent``)."""
    parent = _parent_of(headers)
    if _recording():
        span = start_span(f"process {destination}" if destination else "process", headers,
                          SpanKind.CONSUMER)
        span.set_attributes({
            "messaging.system": "nats", "messaging.operation.type": "process",
            "messaging.operation.name": "process", "messaging.destination.name": destination,
            "switchboard.role": role, "switchboard.step": step, "switchboard.session": session})
        attach_span(span)
        context = span.get_span_context()
        trace = DeliveryTrace(traceparent_of(span), format(context.trace_id, "032x"), span,
                              format(context.span_id, "016x"),
                              event_parent(headers, parent[1]) if parent is not None else "")
    else:
        span_id = "%016x" % (random.getrandbits(64) or 1)  # the fastest form
        if parent is not None:
            trace_id, parent_id, flags = parent
            if headers and HEADER_TRACESTATE in headers:
                parent_id = event_parent(headers, parent_id)
        else:
            trace_id, parent_id, flags = "%032x" % (random.getrandbits(128) or 1), "", "01"
        trace = DeliveryTrace(f"00-{trace_id}-{span_id}-{flags}", trace_id, None, span_id,
                              parent_id)
    _delivery.set(trace)
    return trace


class ChildSpan:
    """A span inside a delivery (a model call, a tool call): its id and its parent's (16 hex
    digits) for the execution event that reports it, and the recorded span, if any, for its
    attributes. Made by ``child_span``."""

    __slots__ = ("parent_id", "span", "span_id", "started")

    def __init__(self, span: Span | None, span_id: str, parent_id: str) -> None:
        self.span, self.span_id, self.parent_id = span, span_id, parent_id
        self.started = time.perf_counter()

    @property
    def elapsed_ms(self) -> float:
        """Milliseconds since the span started."""
        return (time.perf_counter() - self.started) * 1000

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        """Attributes of the recorded span (nothing when nothing records)."""
        if self.span is not None:
            self.span.set_attributes(attributes)

    def event_ids(self) -> dict[str, str]:
        """``span_id`` and ``parent_span_id`` for ``Actor.emit``."""
        return {"span_id": self.span_id, "parent_span_id": self.parent_id}


@contextmanager
def child_span(name: str, attributes: dict[str, Any],
               kind: SpanKind = SpanKind.INTERNAL) -> Iterator[ChildSpan]:
    """A span named ``name`` of ``kind`` under the current one (the delivery's, when called
    from a handler), current while the block runs; an exception leaving the block is recorded
    on it. ``name`` must come from a bounded set (a model's or a tool's configured name, never
    an id). When nothing records, only a span id is made (no OpenTelemetry object)."""
    if _recording():
        with _tracer.start_as_current_span(name, attributes=attributes, kind=kind) as span:
            context = span.get_span_context()
            parent = getattr(span, "parent", None)
            yield ChildSpan(span, format(context.span_id, "016x"),
                            format(parent.span_id, "016x") if parent is not None else "")
        return
    delivery = _delivery.get()
    yield ChildSpan(None, f"{random.getrandbits(64) or 1:016x}",
                    delivery.span_id if delivery is not None else "")


def attach_span(span: Span) -> None:
    """Make ``span`` current in the running ``contextvars`` context, without a token to
    detach: for a context that belongs to one delivery and is dropped after it."""
    otel_context.attach(trace.set_span_in_context(span))


def traceparent_of(span: Span) -> str:
    """The ``traceparent`` header value for ``span`` ("" when its context is invalid)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return ""
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def current_traceparent() -> str:
    """The ``traceparent`` of the current span ("" when there is none): the delivery's when
    nothing records, else OpenTelemetry's current span (which may be a child of it)."""
    delivery = _delivery.get()
    if delivery is not None and delivery.span is None:
        return delivery.traceparent
    return traceparent_of(trace.get_current_span())


def current_trace_id() -> str:
    """The trace id of the current span, 32 hex digits ("" when there is none)."""
    delivery = _delivery.get()
    if delivery is not None:
        return delivery.trace_id
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def current_span_ids() -> tuple[str, str]:
    """(trace id, span id) of the current span: the delivery's when nothing records, else
    OpenTelemetry's current span (a model call's inside one); ("", "") when there is none."""
    delivery = _delivery.get()
    if delivery is not None and delivery.span is None:
        return delivery.trace_id, delivery.span_id
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return (delivery.trace_id, delivery.span_id) if delivery is not None else ("", "")
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def record_error(exc: BaseException) -> None:
    """Record ``exc`` on the current span and mark it failed."""
    span = trace.get_current_span()
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, str(exc)))
