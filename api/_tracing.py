"""The HTTP API's server spans and the trace each run belongs to.

Every request is a SERVER span made by OpenTelemetry's aiohttp server instrumentation
(``opentelemetry-instrumentation-aiohttp-server``): it continues the caller's W3C
``traceparent`` / ``tracestate`` with OpenTelemetry's global propagator, names the span
``{method} {route template}`` (``POST /v1/runs/{run_id}/stop``: bounded, never a raw path) and
sets the HTTP semantic-convention attributes (https://opentelemetry.io/docs/specs/semconv/http/
http-spans/; the stable ones, ``http.request.method``, ``http.route``,
``http.response.status_code``, ``url.path``, unless ``OTEL_SEMCONV_STABILITY_OPT_IN`` says
otherwise). A run created by a request hangs under that request's span (``run_traceparent``),
so its trace id is the caller's when the caller sent one, and no span names a parent that is
not exported.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from opentelemetry import trace

from runtime import current_traceparent

SEMCONV_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
"""OpenTelemetry's switch between the old and the stable HTTP attribute names; the API asks for
the stable ones (``http``) when the operator did not choose."""


@functools.cache
def _instrumentation_ready() -> bool:
    """Initialise the instrumentation's module state (its excluded URLs, semantic-convention
    mode, meters) once per process, without replacing ``aiohttp.web.Application`` for the
    whole process as ``AioHttpServerInstrumentor().instrument()`` alone would."""
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

    os.environ.setdefault(SEMCONV_OPT_IN, "http")
    instrumentor = AioHttpServerInstrumentor()
    instrumentor.instrument()
    instrumentor.uninstrument()  # the middleware below stays, aiohttp's own class comes back
    return True


def server_middleware() -> Any:
    """The aiohttp middleware that makes every request a SERVER span (see the module
    docstring), with the tracer provider this process has now (``runtime.setup_tracing``'s,
    set before the application is built). Register it first, outside every other middleware,
    so the span sees the final status."""
    from opentelemetry.instrumentation.aiohttp_server import create_aiohttp_middleware

    _instrumentation_ready()
    middleware: Any = create_aiohttp_middleware(tracer_provider=trace.get_tracer_provider())
    return middleware


def run_traceparent(fresh: str) -> str:
    """The W3C ``traceparent`` a new run is sent with: the current span's (the request's
    SERVER span, child of the caller's ``traceparent`` when one came), else ``fresh``."""
    return current_traceparent() or fresh

