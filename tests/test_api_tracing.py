"""Traces of API runs by the OpenTelemetry conventions, end to end: ``switchboard up`` with the
HTTP API, every process exporting its spans over OTLP to a local receiver.

A caller's ``traceparent`` (and ``tracestate``) is continued; without one the API's HTTP server
span is the root; every span's parent is among the exported spans; span kinds are SERVER for
HTTP, PRODUCER for a NATS publish, CONSUMER for a delivery's processing, CLIENT for a model
call; span names come from a bounded set (route templates, subjects, configured model names)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from api_client import TOKEN, WITHIN_S, Api
from api_system import (  # noqa: F401 (the fixtures api, api_listen)
    TESTS,
    api_fixture,
    api_listen_fixture,
)
from system import RunningSystem, running_system
from waiting import eventually

from bench._otlp import OtlpReceiver, otlp_receiver
from protocol import Subjects

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
SUBJECTS = Subjects()
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
EXPORT_WITHIN_S = 60.0
SERVER, PRODUCER, CONSUMER, CLIENT = 2, 4, 5, 3
"""``Span.SpanKind`` values of OTLP (opentelemetry-proto ``trace.proto``)."""


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as server:
        yield server


@pytest.fixture(scope="module", name="system")
def system_fixture(module_nats: str, tmp_path_factory: pytest.TempPathFactory,
                   api_listen: str, receiver: OtlpReceiver) -> Iterator[RunningSystem]:
    """The default topology (the offline model), with the API, exporting spans."""
    with running_system(module_nats, tmp_path_factory.mktemp("api-traces"),
                        extra_env={"PYTHONPATH": str(TESTS), "SB_API_TOKEN": TOKEN,
                                   "SB_API_LISTEN": api_listen,
                                   "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                                   "OTEL_BSP_SCHEDULE_DELAY": "100"}) as running:
        yield running


# ------------------------------------------------------------------------------ helpers


def _value(any_value: Any) -> Any:
    which = any_value.WhichOneof("value")
    return getattr(any_value, which) if which else None


def _attributes(span: Any) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in span.attributes}


def _trace(receiver: OtlpReceiver, trace_id: str) -> list[tuple[str, Any]]:
    return [(service, s) for service, s in receiver.received() if s.trace_id.hex() == trace_id]


def _missing_parents(spans: list[tuple[str, Any]], allowed: set[str]) -> set[str]:
    ids = {s.span_id.hex() for _, s in spans}
    return {s.parent_span_id.hex() for _, s in spans if s.parent_span_id} - ids - allowed


def _complete(receiver: OtlpReceiver, trace_id: str, services: set[str],
              allowed: set[str]) -> bool:
    """The trace has spans of every one of ``services`` and no span's parent is missing."""
    spans = _trace(receiver, trace_id)
    return services <= {service for service, _ in spans} and not _missing_parents(
        spans, allowed)


def _bounded_name(name: str) -> bool:
    """A span name of the bounded set: an HTTP method and route template, a messaging
    operation and subject (or its template), a GenAI operation and configured name; never an
    id (digits only, 8+ hex digits), a process id or a terminal's origin."""
    patterns = [
        r"(GET|POST|DELETE|HTTP)( /[A-Za-z0-9_./{}-]*)?",
        rf"process {re.escape(SUBJECTS.prefix)}\.task\.[a-z_]+",
        rf"publish {re.escape(SUBJECTS.prefix)}\.(task\.[a-z_]+|out\.\{{origin\}}"
        r"|control\.\{session\})",
        r"chat [a-z]+/[a-z0-9_.-]+", r"execute_tool( [a-z_]+)?", r"invoke_agent [\w./-]+",
    ]
    tokens = re.split(r"[\s/.{}]+", name)
    return (any(re.fullmatch(p, name) for p in patterns)
            and not any(t.isdigit() or re.fullmatch(r"[0-9a-f]{8,}", t) for t in tokens)
            and "term-" not in name)


# -------------------------------------------------------------------------------- tests


async def test_a_callers_trace_is_continued_by_every_process_with_no_phantom_parent(
        api: Api, receiver: OtlpReceiver) -> None:
    status, accepted = await api.call(
        "POST", "/v1/runs", body=b'{"message": "write a python function that reverses a '
                                 b'string and test it", "session": "traced-caller"}',
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
                 "tracestate": "caller=7f,other=x"})
    assert status == 202, accepted
    run_id = accepted["run_id"]
    run = await api.settled(run_id)
    assert run["status"] == "done", run
    stop_status, _ = await api.call("POST", f"/v1/runs/{run_id}/stop")  # finished: 409
    assert stop_status == 409

    services = {"switchboard-api", "switchboard-classifier", "switchboard-planner",
                "switchboard-python_coder", "switchboard-evaluator"}
    complete = receiver.wait_for(
        lambda _: _complete(receiver, CALLER_TRACE, services, {CALLER_SPAN}),
        timeout_s=EXPORT_WITHIN_S)
    spans = _trace(receiver, CALLER_TRACE)
    assert complete, (sorted({s for s, _ in spans}),
                      _missing_parents(spans, {CALLER_SPAN}))

    # The one span under the caller's is the API's server span; no other span lacks a parent.
    roots = [(service, s) for service, s in spans
             if s.parent_span_id.hex() not in {x.span_id.hex() for _, x in spans}]
    assert [(service, s.name, s.kind, s.parent_span_id.hex()) for service, s in roots] == [
        ("switchboard-api", "POST /v1/runs", SERVER, CALLER_SPAN)]
    server = _attributes(roots[0][1])
    assert server["http.route"] == "/v1/runs" and server["http.response.status_code"] == 202
    assert server["http.request.method"] == "POST"
    assert "caller=7f" in roots[0][1].trace_state  # the caller's tracestate continued

    by_id = {s.span_id.hex(): s for _, s in spans}
    kinds = {s.name: s.kind for _, s in spans}
    classifier = f"process {SUBJECTS.task('classifier')}"
    assert kinds[classifier] == CONSUMER
    assert kinds[f"publish {SUBJECTS.task('classifier')}"] == PRODUCER
    assert kinds[f"publish {SUBJECTS.prefix}.out.{{origin}}"] == PRODUCER
    consumers = [s for _, s in spans if s.kind == CONSUMER]
    assert consumers and all(by_id[s.parent_span_id.hex()].kind == PRODUCER
                             for s in consumers)  # each delivery under its message's publish
    models = [s for _, s in spans if s.name.startswith("chat ")]
    assert models and {s.kind for s in models} == {CLIENT}
    assert all(_attributes(s)["gen_ai.operation.name"] == "chat" for s in models)
    assert any(s.name.startswith("execute_tool") for _, s in spans)
    unbounded = sorted({s.name for _, s in spans if not _bounded_name(s.name)})
    assert not unbounded

    # A route with an id in its path is named by its template.
    def stop_spans() -> list[Any]:
        return [s for service, s in receiver.received()
                if service == "switchboard-api" and _attributes(s).get("url.path")
                == f"/v1/runs/{run_id}/stop"]

    async def stop_exported() -> bool:  # the API's batch of spans goes out on its schedule
        return bool(stop_spans())

    await eventually(stop_exported, within_s=30, what="the stop request's span")
    assert [(s.name, s.kind, _attributes(s)["http.route"]) for s in stop_spans()] == [
        ("POST /v1/runs/{run_id}/stop", SERVER, "/v1/runs/{run_id}/stop")]


async def test_without_a_traceparent_the_api_server_span_is_the_runs_root(
        api: Api, receiver: OtlpReceiver) -> None:
    accepted = await api.submit("hello there", session="traced-fresh")
    run = await api.settled(accepted["run_id"], within_s=WITHIN_S)
    assert run["status"] == "done", run

    def run_trace() -> str:
        for _, s in receiver.received():
            if s.kind == CONSUMER and _attributes(s).get("switchboard.session") == "traced-fresh":
                return str(s.trace_id.hex())
        return ""

    assert receiver.wait_for(lambda _: bool(run_trace()), timeout_s=EXPORT_WITHIN_S)
    trace_id = run_trace()
    assert receiver.wait_for(
        lambda _: _complete(receiver, trace_id, {"switchboard-api", "switchboard-classifier"},
                            set()), timeout_s=EXPORT_WITHIN_S), _missing_parents(
        _trace(receiver, trace_id), set())
    spans = _trace(receiver, trace_id)
    roots = [(service, s.name, s.kind) for service, s in spans if not s.parent_span_id]
    assert roots == [("switchboard-api", "POST /v1/runs", SERVER)]
    assert all(_bounded_name(s.name) for _, s in spans), sorted({s.name for _, s in spans})


def test_span_names_outside_the_bounded_set_are_told_apart() -> None:
    assert _bounded_name("POST /v1/runs/{run_id}/stop")
    assert _bounded_name(f"process {SUBJECTS.task('python_coder')}")
    assert _bounded_name("chat offline/tier-2")
    assert not _bounded_name("POST /v1/runs/0123456789abcdef0123456789abcdef/stop")
    assert not _bounded_name("gateway term-3f2a9c chat_message")
    assert not _bounded_name(f"publish {SUBJECTS.prefix}.control.session-12345")
