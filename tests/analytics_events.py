"""Known execution events for the analytics tests: a dataset that covers every section of
the report and every outcome of a request, published to a real events stream and exported
into DuckDB the way ``switchboard events export`` does."""

from __future__ import annotations

import time
from pathlib import Path

import nats

from analytics import export_events, open_db
from core.config import load_topology
from protocol import ExecutionEvent, Subjects, encoder
from runtime.bus import provision

SUBJECTS = Subjects()
T0 = time.time() - 600  # ten minutes ago


def event(actor: str, kind: str, session: str, at: float, **fields: object) -> ExecutionEvent:
    """An event of ``actor`` at ``at`` (Unix seconds) from process 1."""
    return ExecutionEvent(event_id=f"{actor}-{kind}-{at}", session=session, actor=actor,
                          kind=kind, at=at, pid=1, **fields)  # type: ignore[arg-type]


def dataset() -> list[ExecutionEvent]:
    """Seven requests: r1 answered (SIMPLE, 105 ms), r2 paused with a question after 705 ms
    (SEQUENTIAL, one escalation and a retry on the way), r3 refused, r4 dead-lettered before
    any answer (no ``classified`` event), r5 aborted, r6 failed (a model error, dead-lettered,
    the person told so), r7 unfinished; feedback, model calls, a reflection of no request."""
    s1, s2 = "terminal-alice", "terminal-bob"
    return [
        # r1: SIMPLE, alice, decided by the model, answered by the researcher.
        event("classifier", "model_call", s1, T0 + 0.004, request_id="r1",
              model="offline/tier-1", prompt_tokens=100, completion_tokens=20,
              cost_usd=0.001, duration_ms=4.0, detail="route"),
        event("classifier", "classified", s1, T0 + 0.005, request_id="r1", source="model",
              flow="simple", role="researcher", user_id="alice"),
        event("classifier", "handled", s1, T0 + 0.010, request_id="r1", duration_ms=10.0,
              step="chat_message"),
        event("researcher", "model_call", s1, T0 + 0.100, request_id="r1",
              model="offline/tier-2", prompt_tokens=200, completion_tokens=50,
              cost_usd=0.002, duration_ms=80.0),
        event("researcher", "answered", s1, T0 + 0.105, request_id="r1", flow="simple",
              role="researcher"),
        event("researcher", "handled", s1, T0 + 0.110, request_id="r1", duration_ms=100.0,
              step="turn_request"),
        # r2: SEQUENTIAL, bob, a rule decided; one escalation, then paused.
        event("classifier", "classified", s2, T0 + 1.0, request_id="r2", source="rule",
              flow="sequential", role="python_coder", user_id="bob"),
        event("classifier", "handled", s2, T0 + 1.005, request_id="r2", duration_ms=5.0),
        event("planner", "handled", s2, T0 + 1.105, request_id="r2", duration_ms=100.0),
        event("python_coder", "model_call", s2, T0 + 1.5, request_id="r2",
              model="offline/tier-3", prompt_tokens=1000, completion_tokens=300,
              cost_usd=0.01, duration_ms=300.0),
        event("python_coder", "escalation", s2, T0 + 1.6, request_id="r2", source="stuck",
              model="offline/tier-4", detail="turn 1: a → b: the model reported it is stuck"),
        event("python_coder", "paused", s2, T0 + 1.7, request_id="r2", source="stuck"),
        event("python_coder", "answered", s2, T0 + 1.705, request_id="r2",
              flow="sequential", role="python_coder"),  # the question
        event("python_coder", "retry", s2, T0 + 1.8, request_id="r2",
              detail="delivery 1: boom"),
        event("python_coder", "handled", s2, T0 + 2.005, request_id="r2", duration_ms=900.0),
        event("evaluator", "handled", s2, T0 + 3.0, request_id="r2", duration_ms=10.0),
        # r3: refused by a rule: only the classifier handled it (no flow latency).
        event("classifier", "classified", s1, T0 + 4.0, request_id="r3", source="rule",
              flow="simple", role="researcher", user_id="carol"),
        event("classifier", "answered", s1, T0 + 4.001, request_id="r3", flow="simple",
              detail="refused"),
        event("classifier", "handled", s1, T0 + 4.002, request_id="r3", duration_ms=2.0),
        # Feedback, and a reflection after the 👎 (a model call of no request).
        event("reflector", "feedback", s2, T0 + 5.0, role="python_coder", user_id="bob",
              value=15, detail="+15 by bob: confidence now 65"),
        event("reflector", "feedback", s2, T0 + 6.0, role="python_coder", user_id="bob",
              value=-20, detail="-20 by bob: confidence now 45"),
        event("reflector", "feedback", s1, T0 + 7.0, role="researcher", user_id="alice",
              value=-20, detail="-20 by alice: confidence now 30"),
        event("reflector", "model_call", s1, T0 + 7.5, model="offline/tier-4",
              prompt_tokens=50, completion_tokens=10, cost_usd=0.0005, duration_ms=6.0),
        event("python_coder", "dead_letter", s2, T0 + 8.0, request_id="r4",
              step="turn_request", detail="HandlerError: delivered 5 times"),
        # r5: SEQUENTIAL, stopped by the person after a turn.
        event("classifier", "classified", s2, T0 + 9.0, request_id="r5", source="model",
              flow="sequential", role="python_coder", user_id="bob"),
        event("python_coder", "abort", s2, T0 + 9.5, request_id="r5",
              detail="stopped before turn 2"),
        event("python_coder", "answered", s2, T0 + 9.6, request_id="r5", flow="sequential",
              role="python_coder", detail="aborted"),
        # r6: SIMPLE, the model kept failing: dead-lettered, the person told so.
        event("classifier", "classified", s1, T0 + 10.0, request_id="r6", source="keywords",
              flow="simple", role="researcher", user_id="alice"),
        event("researcher", "model_error", s1, T0 + 10.2, request_id="r6",
              model="offline/tier-2", duration_ms=200.0, detail="answer: simulated outage"),
        event("researcher", "dead_letter", s1, T0 + 10.3, request_id="r6",
              step="turn_request", detail="ModelUnavailableError: simulated outage"),
        event("researcher", "answered", s1, T0 + 10.4, request_id="r6", detail="model_error"),
        # r7: BRANCH, still under way.
        event("classifier", "classified", s1, T0 + 11.0, request_id="r7", source="case",
              flow="branch", role="researcher", user_id="alice"),
    ]


async def publish(url: str, events: list[ExecutionEvent], *, raw: bytes = b"") -> None:
    """Provision Switchboard's streams on the server at ``url`` and store ``events`` in the
    events stream, then ``raw`` (when given) on an event subject."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await provision(js, load_topology(), ())
        for item in events:
            subject = SUBJECTS.event(item.actor, item.kind, item.session)
            await js.publish(subject, encoder.encode(item))
        if raw:
            await js.publish(SUBJECTS.event("python_coder", "weird", "s1"), raw)
    finally:
        await nc.close()


async def export(url: str, db: Path) -> tuple[int, int]:
    """Export the events stream into ``db`` in batches of 7; (rows added, rows in total)."""
    nc = await nats.connect(url)
    con = open_db(db, read_only=False)
    try:
        result = await export_events(nc.jetstream(), con, SUBJECTS, batch=7)
        return result.added, result.total
    finally:
        con.close()
        await nc.close()
