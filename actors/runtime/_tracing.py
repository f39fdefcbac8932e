"""OpenTelemetry tracing across processes: W3C ``traceparent`` travels in NATS headers.

Each handled message is a span, child of the span that published it, so one request is one
trace from the gateway through every actor (SPEC.md §9). Spans are exported to the console
when ``SB_TRACE_CONSOLE=1``; any other exporter can be added to the provider by the operator.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from protocol import HEADER_TRACEPARENT

_log = logging.getLogger(__name__)
_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("switchboard")


def setup_tracing(service: str, *, console: bool = False) -> None:
    """Install an SDK tracer provider for this process, named ``service`` (once per process:
    OpenTelemetry refuses to replace a provider)."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if console:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    global _tracer  # noqa: PLW0603 - the tracer follows the provider set once at start-up
    _tracer = trace.get_tracer("switchboard")


@contextmanager
def span_from_headers(name: str, headers: dict[str, str] | None) -> Iterator[Span]:
    """A span named ``name``, child of the ``traceparent`` in ``headers`` when present."""
    carrier = {HEADER_TRACEPARENT: headers[HEADER_TRACEPARENT]} if headers and (
        HEADER_TRACEPARENT in headers) else {}
    context = _propagator.extract(carrier)
    with _tracer.start_as_current_span(name, context=context) as span:
        yield span


def current_traceparent() -> str:
    """The ``traceparent`` of the current span ("" when there is none)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(HEADER_TRACEPARENT, "")


def current_trace_id() -> str:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def record_error(exc: BaseException) -> None:
    """Record ``exc`` on the current span and mark it failed."""
    span = trace.get_current_span()
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, str(exc)))
