"""Traces: span ids in execution events, the span tree of ``switchboard trace``, and OTLP
export of every process's spans to a local OTLP/HTTP receiver."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from system import REPO, RunningSystem, running_system

from analytics.trace_view import build_trace, last_trace_id, render_trace
from bench._otlp import OtlpReceiver, otlp_receiver
from protocol import HEADER_TRACEPARENT, HEADER_TRACESTATE, ExecutionEvent, Subjects
from runtime import otlp_configured
from runtime._tracing import begin_delivery, child_span, current_span_ids, event_parent

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
GATEWAY_SPAN = "00f067aa0ba902b7"


# ----------------------------------------------------------------------------- pure rules


def _event(kind: str, at: float, **fields: Any) -> ExecutionEvent:
    return ExecutionEvent(event_id=f"{kind}-{at}", session="s1", actor=fields.pop("actor", "a"),
                          kind=kind, at=at, trace_id=fields.pop("trace_id", TRACE), **fields)


def test_otlp_is_configured_by_the_standard_variables() -> None:
    assert not otlp_configured({})
    assert otlp_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert otlp_configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:4318/v1/traces"})
    assert not otlp_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318",
                                "OTEL_TRACES_EXPORTER": "none"})
    assert otlp_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318",
                            "OTEL_TRACES_EXPORTER": "console, otlp"})


def test_a_delivery_is_a_child_of_its_traceparent_and_its_calls_children_of_it() -> None:
    def run() -> tuple[Any, Any, tuple[str, str]]:
        delivery = begin_delivery("planner", "classification",
                                  {HEADER_TRACEPARENT: f"00-{TRACE}-{GATEWAY_SPAN}-01"}, "s1")
        with child_span("model_call m", {}) as call:
            ids = current_span_ids()
        return delivery, call, ids

    import contextvars

    delivery, call, ids = contextvars.copy_context().run(run)
    assert (delivery.trace_id, delivery.parent_id) == (TRACE, GATEWAY_SPAN)
    assert len(delivery.span_id) == 16 and delivery.span_id != GATEWAY_SPAN
    assert delivery.traceparent == f"00-{TRACE}-{delivery.span_id}-01"
    assert call.parent_id == delivery.span_id and call.span_id != delivery.span_id
    assert call.event_ids() == {"span_id": call.span_id, "parent_span_id": delivery.span_id}
    assert ids == (TRACE, delivery.span_id)  # events emitted in the delivery hang under it


def test_a_recorded_publishs_tracestate_names_the_senders_span_for_the_events() -> None:
    import contextvars

    sender = "1111111111111111"
    headers = {HEADER_TRACEPARENT: f"00-{TRACE}-{GATEWAY_SPAN}-01",
               HEADER_TRACESTATE: f"sb={sender},caller=7f"}
    delivery = contextvars.copy_context().run(
        begin_delivery, "planner", "classification", headers, "s1")
    # The traceparent names the publish's PRODUCER span, which has no event: the events hang
    # under the sender's span, named by Switchboard's tracestate entry.
    assert (delivery.trace_id, delivery.parent_id) == (TRACE, sender)
    assert event_parent({HEADER_TRACESTATE: "caller=7f"}, GATEWAY_SPAN) == GATEWAY_SPAN
    assert event_parent({HEADER_TRACESTATE: "xsb=2222222222222222"}, GATEWAY_SPAN) == \
        GATEWAY_SPAN


def test_the_span_tree_follows_parent_span_ids_and_shows_point_events() -> None:
    events = [
        _event("handled", 10.010, actor="classifier", step="chat_message", span_id="c1",
               parent_span_id=GATEWAY_SPAN, duration_ms=10.0),
        _event("model_call", 10.005, actor="classifier", model="m1", span_id="m1",
               parent_span_id="c1", duration_ms=4.0, prompt_tokens=5, completion_tokens=2),
        _event("classified", 10.006, actor="classifier", source="rule", parent_span_id="c1"),
        _event("handled", 10.500, actor="python_coder", step="turn_request", span_id="p1",
               parent_span_id="c1", duration_ms=480.0),
        _event("tool_call", 10.300, actor="python_coder", span_id="t1", parent_span_id="p1",
               duration_ms=20.0, detail="run_command ok: {} → exit code: 0 hello"),
        _event("handled", 20.0, actor="classifier", step="chat_message", span_id="x",
               trace_id="other", duration_ms=1.0),  # another request of the session
    ]
    assert last_trace_id(events) == "other"
    trace = build_trace(events, TRACE, "s1")
    assert [r.event.span_id for r in trace.roots] == ["c1"]  # the gateway has no event: root
    root = trace.roots[0]
    assert [c.event.span_id for c in root.children] == ["m1", "p1"]  # by start time
    assert [p.kind for p in root.points] == ["classified"]
    assert [c.event.span_id for c in root.children[1].children] == ["t1"]
    assert trace.services == ["classifier", "python_coder"]
    lines = render_trace(trace)
    assert lines[0].startswith(f"Trace {TRACE} · session s1 · 2 services")
    assert "500.0 ms" in lines[0]  # from the classifier's start to python_coder's end
    assert lines[1].split() == ["+0.0", "ms", "classifier", "chat_message", "10.0", "ms"]
    assert "├─ classifier model_call m1  4.0 ms  tokens 5+2" in lines[2]
    assert "├─ · classified by=rule" in lines[3]
    assert "└─ python_coder turn_request  480.0 ms" in lines[4]
    assert "   └─ python_coder tool_call run_command ok  20.0 ms  → exit code: 0 hello" in lines[5]


# ----------------------------------------------------------------------- OTLP end to end


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as server:
        yield server


def _attributes(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in span.attributes:
        value = a.value
        out[a.key] = getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") \
            else None
    return out


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_one_request_is_one_trace_over_otlp_across_the_services(
        nats_url: str, tmp_path: Path, receiver: OtlpReceiver) -> None:
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with running_system(nats_url, tmp_path, extra_env=otel) as system:
        chat = subprocess.run(
            [sys.executable, "-m", "switchboard.cli", "chat", "--session", "traced", "--message",
             "write a python function that reverses a string and test it"],
            env={**system.env, **otel}, cwd=REPO, capture_output=True, text=True, timeout=150,
            check=False)
        assert chat.returncode == 0, chat.stdout + chat.stderr
        shown = _trace_command(system, "--json")
        trace_id = shown["trace_id"]

        def services(spans: list[tuple[str, Any]]) -> set[str]:
            return {service for service, s in spans if s.trace_id.hex() == trace_id}

        receiver.wait_for(lambda spans: len(services(spans)) >= 6, timeout_s=30)
    assert {"switchboard-gateway", "switchboard-classifier", "switchboard-planner",
            "switchboard-python_coder", "switchboard-evaluator"} <= services(
        receiver.received()), services(receiver.received())

    spans = [(service, s) for service, s in receiver.received() if s.trace_id.hex() == trace_id]
    by_id = {s.span_id.hex(): (service, s) for service, s in spans}
    # The tree `switchboard trace` drew from the events is the exported one: same ids.
    root = shown["spans"][0]
    assert (root["actor"], root["kind"]) == ("classifier", "handled")
    service, span = by_id[root["span_id"]]
    assert service == "switchboard-classifier"
    assert span.name == f"process {Subjects().task('classifier')}"  # no origin, no pid
    # The terminal's publish is the trace's root (named after the subject, not the origin).
    gateway_service, gateway_span = by_id[root["parent_span_id"]]
    assert gateway_service == "switchboard-gateway" and not gateway_span.parent_span_id
    assert gateway_span.name == f"publish {Subjects().task('classifier')}"
    assert _attributes(gateway_span)["switchboard.origin"].startswith("term-")
    assert _attributes(span)["switchboard.session"] == "traced"
    models = [s for _, s in spans if s.name.startswith("chat ")]
    assert models, [s.name for _, s in spans]
    model = _attributes(models[0])
    assert model["gen_ai.usage.input_tokens"] > 0 and model["gen_ai.request.model"]
    assert "switchboard.cost_usd" in model and model["switchboard.session"] == "traced"
    tools = [s for _, s in spans if s.name.startswith("execute_tool")]
    assert tools and all(by_id.get(t.parent_span_id.hex()) for t in tools)


def _trace_command(system: RunningSystem, *extra: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "switchboard.cli", "trace", "traced", *extra],
                          env=system.env, cwd=REPO, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_switchboard_trace_prints_the_last_request_tree(nats_url: str, tmp_path: Path) -> None:
    with running_system(nats_url, tmp_path) as system:
        missing = subprocess.run([sys.executable, "-m", "switchboard.cli", "trace", "nobody"],
                                 env=system.env, cwd=REPO, capture_output=True, text=True,
                                 timeout=60, check=False)
        assert missing.returncode == 1 and "No traced events for session 'nobody'" in \
            missing.stdout
        first = system.chat("hello there", session="traced")
        second = system.chat("write a python function that reverses a string and test it",
                             session="traced")
        assert first.returncode == 0 and second.returncode == 0, second.stdout + second.stderr
        shown = _trace_command(system, "--json")
        text = subprocess.run([sys.executable, "-m", "switchboard.cli", "trace", "traced"],
                              env=system.env, cwd=REPO, capture_output=True, text=True,
                              timeout=60, check=False).stdout
    assert text.startswith(f"Trace {shown['trace_id']} · session traced · ")
    services = set(shown["services"])
    # The last request (SEQUENTIAL), not the first (SIMPLE).
    assert {"classifier", "planner", "python_coder", "evaluator"} <= services, services
    root = shown["spans"][0]
    assert root["step"].startswith("chat_message") and root["start_ms"] == 0.0

    def walk(span: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield span
        for child in span["children"]:
            yield from walk(child)

    spans = list(walk(root))
    assert all(s["duration_ms"] > 0 for s in spans)
    coder = next(s for s in spans if s["actor"] == "python_coder" and s["kind"] == "handled")
    kinds = [c["kind"] for c in coder["children"]]
    assert "model_call" in kinds and "tool_call" in kinds
    assert any(e["kind"] == "turn" for e in coder["events"])
    assert " python_coder turn_request" in text and "model_call offline/" in text
