"""The actor runtime: base actor, JetStream dispatch (ack / nak / term / dead-letter), pull
consumer, session store, compare-and-set on KV keys, tracing, and the loop that runs one replica."""

from runtime import _headers
from runtime._actor import Actor, MessageContext, Services, handler
from runtime._addressing import request_of, session_of, waiting_request
from runtime._cas import compare_and_set, read_entry
from runtime._dispatch import Dispatcher
from runtime._publish_trace import start_publish, start_root_publish
from runtime._pull import PullConsumer
from runtime._service import run_actor, stop_on_signals
from runtime._sessions import SessionStore
from runtime._tracing import (
    ChildSpan,
    child_span,
    current_trace_id,
    current_traceparent,
    otlp_configured,
    setup_tracing,
    shutdown_tracing,
)

_headers.install()  # nats-py's header parser without its per-character generator

__all__ = [
    "Actor",
    "ChildSpan",
    "Dispatcher",
    "MessageContext",
    "PullConsumer",
    "Services",
    "SessionStore",
    "child_span",
    "compare_and_set",
    "current_trace_id",
    "current_traceparent",
    "handler",
    "read_entry",
    "run_actor",
    "otlp_configured",
    "setup_tracing",
    "shutdown_tracing",
    "start_publish",
    "start_root_publish",
    "stop_on_signals",
    "request_of",
    "session_of",
    "waiting_request",
]
