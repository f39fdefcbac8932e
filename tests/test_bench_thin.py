"""The bench's thin layer (``bench._thin``, the floor of the ``runtime`` scenario) against a real
nats-server: every task answered once, nothing redelivered, one event per hop and one KV entry
per task stored; and it imports no Switchboard code. No timings are asserted."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import nats
import pytest

from bench._loop import HOPS, closed_loop
from bench._pipeline import PipelineClient, counts, redeliveries, wait_ready
from bench._thin import Names, provision, serve

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parent.parent
TASKS = 50
IN_FLIGHT = 8


def test_thin_layer_imports_no_switchboard_code() -> None:
    code = ("import sys, bench._thin; "
            "print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in {'actors', 'protocol', 'gateway'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True, timeout=30)
    assert out.stdout.strip() == "[]"


async def test_thin_pipeline_answers_every_task_once(nats_url: str) -> None:
    names = Names(f"t{uuid.uuid4().hex[:8]}")
    nc = await nats.connect(nats_url, allow_reconnect=False, connect_timeout=5)
    stop = asyncio.Event()
    hops: list[asyncio.Task[None]] = []
    try:
        js = nc.jetstream(timeout=10)
        await provision(js, names, limit=IN_FLIGHT)
        hops = [asyncio.create_task(serve(nats_url, names, hop, limit=IN_FLIGHT, stop=stop))
                for hop in range(1, HOPS + 1)]
        await wait_ready(nc, names, timeout_s=20)
        client = PipelineClient(nc, names)
        await client.start()
        before = await counts(nc, names)
        result = await closed_loop(client.one, IN_FLIGHT, TASKS, budget_s=30)
        after = await counts(nc, names)

        assert (result.finished, result.lost, client.duplicates) == (TASKS, 0, 0)
        assert redeliveries(before, after) == 0
        assert after.stored - before.stored == TASKS * HOPS
        events = await js.stream_info(names.events_stream)
        assert events.state.messages == TASKS * HOPS
        outbox = await js.stream_info(names.outbox_stream)
        assert outbox.state.messages == TASKS
        kv = await js.key_value(names.bucket)
        assert len(await kv.keys()) == TASKS
    finally:
        stop.set()
        if hops:
            await asyncio.wait(hops, timeout=10)
        await nc.close()
