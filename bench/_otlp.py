"""A local OTLP/HTTP trace receiver (the bench's ``tracing`` scenario and the tests): decodes
each ``ExportTraceServiceRequest`` (protobuf, ``opentelemetry-proto``) POSTed to
``/v1/traces`` and keeps (service name, span) pairs (OTLP/HTTP:
https://opentelemetry.io/docs/specs/otlp/#otlphttp)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class OtlpReceiver(ThreadingHTTPServer):
    """The receiver, on a free 127.0.0.1 port; ``spans`` grows as exports arrive (guarded by
    ``arrived``, notified on each)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[tuple[str, Any]] = []
        self.arrived = threading.Condition()

    @property
    def url(self) -> str:
        """What ``OTEL_EXPORTER_OTLP_ENDPOINT`` takes."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def received(self) -> list[tuple[str, Any]]:
        """A copy of the (service name, span) pairs so far."""
        with self.arrived:
            return list(self.spans)

    def wait_for(self, ready: Callable[[list[tuple[str, Any]]], bool], timeout_s: float
                 ) -> bool:
        """Wait until ``ready(spans)`` holds, up to ``timeout_s`` seconds; whether it does."""
        with self.arrived:
            return self.arrived.wait_for(lambda: ready(self.spans), timeout=timeout_s)


class _Handler(BaseHTTPRequestHandler):
    server: OtlpReceiver

    def do_POST(self) -> None:  # http.server's name
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/traces" or \
                self.headers.get("Content-Type") != "application/x-protobuf":
            self.send_response(400)
            self.end_headers()
            return
        request = ExportTraceServiceRequest.FromString(body)
        with self.server.arrived:
            for resource_spans in request.resource_spans:
                attributes = {a.key: a.value.string_value
                              for a in resource_spans.resource.attributes}
                service = attributes.get("service.name", "")
                for scope_spans in resource_spans.scope_spans:
                    self.server.spans.extend((service, s) for s in scope_spans.spans)
            self.server.arrived.notify_all()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A receiver serving in a thread until the block ends."""
    server = OtlpReceiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
