"""``switchboard trace SESSION``: the span tree of a session's last request, from its execution
events alone (no trace collector needed).

Rules (the events' ``span_id`` / ``parent_span_id``, ``runtime._tracing``):

- The **last request** is the trace of the session's last ``handled`` event whose step is a
  chat message (the classifier's first step of every request); without one, the trace of the
  session's last event that has a trace id.
- A **span** is an event that reports one: ``handled`` (a delivery: one actor's step),
  ``model_call`` / ``model_error`` (a model call), ``tool_call`` / ``tool_refused`` (a tool
  call). It ended at the event's ``at`` and lasted ``duration_ms``.
- A span's **parent** is the span whose id is its ``parent_span_id``; a span whose parent is
  not among the events (the gateway's span, which has no event) is a root.
- **Point events** (``classified``, ``turn``, ``fallback``, ...: no ``span_id``) are listed
  under the span they happened in, at their time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

import msgspec
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from core.config import Settings, Topology
from core.errors import BrokerError
from protocol import ExecutionEvent, Subjects, event_decoder
from runtime.bus import connect

SPAN_KINDS = frozenset({"handled", "model_call", "model_error", "tool_call", "tool_refused"})
"""Event kinds that report a span (they carry ``span_id`` and ``duration_ms``)."""
READ_TIMEOUT_S = 5.0
"""How long reading a session's stored events may wait for the next one (seconds)."""


@dataclass
class SpanNode:
    """One span of the tree: what it was, when it started (Unix seconds), how long it took
    (milliseconds), the spans under it and the point events in it."""

    event: ExecutionEvent
    start: float
    duration_ms: float
    children: list[SpanNode] = field(default_factory=list)
    points: list[ExecutionEvent] = field(default_factory=list)

    @property
    def label(self) -> str:
        e = self.event
        if e.kind == "handled":
            return f"{e.actor} {e.step}"
        if e.kind in {"model_call", "model_error"}:
            return f"{e.actor} {e.kind} {e.model}"
        return f"{e.actor} {e.kind} {e.detail.split(':', 1)[0]}"

    def as_dict(self, origin: float) -> dict[str, Any]:
        """The span as JSON-ready data: offsets from ``origin`` in ms."""
        e = self.event
        data: dict[str, Any] = {
            "span_id": e.span_id, "parent_span_id": e.parent_span_id, "actor": e.actor,
            "kind": e.kind, "step": e.step, "model": e.model,
            "start_ms": round((self.start - origin) * 1000, 3),
            "duration_ms": round(self.duration_ms, 3),
            "prompt_tokens": e.prompt_tokens, "completion_tokens": e.completion_tokens,
            "cost_usd": e.cost_usd, "detail": e.detail,
        }
        data["events"] = [{"kind": p.kind, "at_ms": round((p.at - origin) * 1000, 3),
                           "source": p.source, "detail": p.detail} for p in self.points]
        data["children"] = [c.as_dict(origin) for c in self.children]
        return data


@dataclass
class Trace:
    """A request's spans: the roots (by start time), the trace id, the session."""

    trace_id: str
    session: str
    roots: list[SpanNode]

    @property
    def start(self) -> float:
        return min((r.start for r in self.roots), default=0.0)

    @property
    def end(self) -> float:
        ends = [n.start + n.duration_ms / 1000 for n in self.walk()]
        return max(ends, default=self.start)

    def walk(self) -> Iterable[SpanNode]:
        stack = list(reversed(self.roots))
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    @property
    def services(self) -> list[str]:
        return sorted({n.event.actor for n in self.walk()})


def last_trace_id(events: list[ExecutionEvent]) -> str:
    """The trace id of the session's last request (module docstring); "" when none."""
    for e in reversed(events):
        if e.kind == "handled" and e.step.startswith("chat_message") and e.trace_id:
            return e.trace_id
    return next((e.trace_id for e in reversed(events) if e.trace_id), "")


def build_trace(events: list[ExecutionEvent], trace_id: str, session: str = "") -> Trace:
    """The span tree of ``trace_id`` from ``events`` (rules in the module docstring)."""
    mine = [e for e in events if e.trace_id == trace_id]
    nodes: dict[str, SpanNode] = {}
    for e in mine:
        if e.kind in SPAN_KINDS and e.span_id:
            nodes[e.span_id] = SpanNode(e, e.at - e.duration_ms / 1000, e.duration_ms)
    roots: list[SpanNode] = []
    for node in nodes.values():
        parent = nodes.get(node.event.parent_span_id)
        (parent.children if parent is not None and parent is not node else roots).append(node)
    for e in mine:
        if e.kind not in SPAN_KINDS or not e.span_id:
            parent = nodes.get(e.parent_span_id)
            if parent is not None:
                parent.points.append(e)
    for node in nodes.values():
        node.children.sort(key=lambda n: n.start)
        node.points.sort(key=lambda p: p.at)
    roots.sort(key=lambda n: n.start)
    return Trace(trace_id, session, roots)


def _span_line(node: SpanNode) -> str:
    e = node.event
    parts = [f"{node.duration_ms:,.1f} ms"]
    if e.prompt_tokens or e.completion_tokens:
        parts.append(f"tokens {e.prompt_tokens}+{e.completion_tokens}")
    if e.cost_usd:
        parts.append(f"${e.cost_usd:.6f}")
    if e.kind in {"model_error", "tool_refused"} or (e.kind == "tool_call" and " error" in
                                                      e.detail.split(":", 1)[0]):
        parts.append("· " + " ".join(e.detail.split())[:120])
    elif e.kind == "tool_call" and " → " in e.detail:
        parts.append("→ " + " ".join(e.detail.rsplit(" → ", 1)[1].split())[:100])
    return f"{node.label}  " + "  ".join(parts)


def render_trace(trace: Trace) -> list[str]:
    """The tree as text lines: a header, then one line per span and point event, each with
    its start offset from the first span (``+12.3 ms``), spans with their durations."""
    origin = trace.start
    total = (trace.end - origin) * 1000
    lines = [f"Trace {trace.trace_id} · session {trace.session} · "
             f"{len(trace.services)} services ({', '.join(trace.services)}) · {total:,.1f} ms"]

    def offset(at: float) -> str:
        return f"+{(at - origin) * 1000:,.1f} ms".rjust(12)

    def draw(node: SpanNode, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─ " if last else "├─ ")
        lines.append(f"{offset(node.start)}  {prefix}{branch}{_span_line(node)}")
        inner = prefix if top else prefix + ("   " if last else "│  ")
        items: list[tuple[float, SpanNode | ExecutionEvent]] = [
            *((c.start, c) for c in node.children), *((p.at, p) for p in node.points)]
        items.sort(key=lambda item: item[0])
        for i, (_, item) in enumerate(items):
            is_last = i == len(items) - 1
            if isinstance(item, SpanNode):
                draw(item, inner, is_last, False)
            else:
                mark = "└─ " if is_last else "├─ "
                what = f"· {item.kind}" + (f" by={item.source}" if item.source else "")
                detail = " ".join(item.detail.split())[:100]
                lines.append(f"{offset(item.at)}  {inner}{mark}{what}"
                             + (f" {detail}" if detail else ""))

    for root in trace.roots:
        draw(root, "", True, True)
    return lines


async def session_events(nc: Any, subjects: Subjects, session: str, *,
                         timeout_s: float = READ_TIMEOUT_S) -> list[ExecutionEvent]:
    """Every stored execution event of ``session``, oldest first: an ordered consumer on the
    events stream filtered by ``<prefix>.event.*.*.<session>``, read until it has caught up
    with what was stored when it started.

    Raises:
        TimeoutError: the stored events did not all arrive within ``timeout_s`` seconds.
    """
    js = nc.jetstream(timeout=timeout_s)
    subject = subjects.event("*", "*", session)
    info = await js.stream_info(subjects.events_stream, subjects_filter=subject)
    stored = sum((info.state.subjects or {}).values())
    events: list[ExecutionEvent] = []
    if not stored:
        return events
    done = asyncio.Event()

    async def _on(msg: Msg) -> None:
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            events.append(event_decoder.decode(msg.data))
        if msg.metadata.num_pending == 0:
            done.set()

    sub = await js.subscribe(subject, cb=_on, ordered_consumer=True,
                             stream=subjects.events_stream,
                             config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
    try:
        async with asyncio.timeout(timeout_s):
            await done.wait()
    finally:
        await sub.unsubscribe()
    return [e for e in events if e.session == session]


async def show_trace(settings: Settings, topology: Topology, nats_url: str, session: str, *,
                     as_json: bool = False, out: TextIO = sys.stdout) -> int:
    """Print the span tree of ``session``'s last request (``render_trace``; with ``as_json``
    one JSON object: trace id, session, services, duration_ms and the spans).

    Returns:
        0; 1 when the session has no traced events; 2 when NATS cannot be reached.
    """
    try:
        nc = await connect(nats_url, name="trace", settings=settings, reconnect=False,
                           timeout_s=3.0)
    except BrokerError as exc:
        out.write(f"❌ {exc}. Is Switchboard running? Start it with `switchboard up`.\n")
        return 2
    try:
        events = await session_events(nc, topology.subjects, session)
    finally:
        await nc.close()
    trace_id = last_trace_id(events)
    if not trace_id:
        out.write(f"No traced events for session {session!r} (is the name right? "
                  "`switchboard events tail` shows sessions as they run).\n")
        return 1
    trace = build_trace(events, trace_id, session)
    if as_json:
        origin = trace.start
        out.write(json.dumps({
            "trace_id": trace.trace_id, "session": session, "services": trace.services,
            "duration_ms": round((trace.end - origin) * 1000, 3),
            "spans": [r.as_dict(origin) for r in trace.roots],
        }, ensure_ascii=False) + "\n")
    else:
        out.write("\n".join(render_trace(trace)) + "\n")
    return 0
