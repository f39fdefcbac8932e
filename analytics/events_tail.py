"""``switchboard events tail``: one line per execution event, as it happens."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

import msgspec
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from core.config import Settings, Topology
from core.errors import BrokerError
from protocol import ExecutionEvent, event_decoder
from runtime.bus import connect


def format_event(event: ExecutionEvent) -> str:
    """``HH:MM:SS.mmm actor kind session [model] [tokens] [cost] [ms] [step] [by] detail`` on
    one line (``by=`` is what decided, on decision events)."""
    clock = time.strftime("%H:%M:%S", time.localtime(event.at)) + f".{int(event.at % 1 * 1000):03d}"
    parts = [clock, f"{event.actor:<20}", f"{event.kind:<12}", event.session]
    if event.model:
        parts.append(f"model={event.model}")
    if event.prompt_tokens or event.completion_tokens:
        parts.append(f"tokens={event.prompt_tokens}+{event.completion_tokens}")
    if event.cost_usd:
        parts.append(f"cost=${event.cost_usd:.6f}")
    if event.duration_ms:
        parts.append(f"{event.duration_ms:.1f}ms")
    if event.step:
        parts.append(f"step={event.step}")
    if event.source:
        parts.append(f"by={event.source}")
    if event.detail:
        parts.append("· " + " ".join(event.detail.split()))
    return " ".join(parts)


async def tail_events(
    settings: Settings,
    topology: Topology,
    nats_url: str,
    *,
    session: str | None = None,
    actor: str | None = None,
    as_json: bool = False,
    last: int = 0,
    limit: int = 0,
    out: TextIO = sys.stdout,
) -> int:
    """Follow ``<prefix>.event.<actor>.<kind>.<session>`` (``*`` for an actor or a session not
    given: the subject selects them, the server filters) until ``limit`` events or Ctrl-C.

    With ``last``, first replays up to that many events already stored in the events stream
    (an ordered consumer), then follows new ones.

    Returns:
        0, or 2 when NATS cannot be reached.
    """
    subjects = topology.subjects
    try:
        nc = await connect(nats_url, name="events-tail", settings=settings, reconnect=True,
                           timeout_s=3.0)
    except BrokerError as exc:
        out.write(f"❌ {exc}. Is Switchboard running? Start it with `switchboard up`.\n")
        return 2
    seen = 0
    done = asyncio.Event()
    subject = subjects.event(actor or "*", "*", session or "*")

    async def _on_event(msg: Msg) -> None:
        nonlocal seen
        if done.is_set():
            return
        try:
            event = event_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        if session and event.session != session:
            return
        out.write((msg.data.decode() if as_json else format_event(event)) + "\n")
        out.flush()
        seen += 1
        if limit and seen >= limit:
            done.set()

    try:
        js = nc.jetstream(timeout=5)
        if last > 0:
            info = await js.stream_info(subjects.events_stream)
            start = max(1, info.state.last_seq - last + 1)
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                    opt_start_seq=start)
            await js.subscribe(subject, cb=_on_event, ordered_consumer=True,
                               stream=subjects.events_stream, config=config)
        else:
            await nc.subscribe(subject, cb=_on_event)
        await nc.flush(timeout=5)  # the server has the subscription: nothing from now is missed
        sys.stderr.write(f"Following {subject} on {nats_url} (Ctrl-C to stop)\n")
        sys.stderr.flush()
        await done.wait()
        return 0
    finally:
        await nc.close()
