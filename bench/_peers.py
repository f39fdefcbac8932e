"""Peers on the ``runtime`` scenario's five-step pipeline.

- **autogen5** (``bench._peer_autogen``): autogen-core's ``SingleThreadedAgentRuntime`` in a
  process of its own (``python -m bench._peers autogen``): five ``RoutedAgent``s, each
  forwarding the task to the next one's topic with ``publish_message``; the fifth resolves the
  client's future. No broker: no durability, no events, no KV; CPU per step is the whole
  process (client included) ÷ 5.
- **faststream5**: FastStream's NATS broker, each hop its own process
  (``python -m bench._peers faststream-hop N``) on a bench nats-server, with the thin layer's
  streams and consumers (``bench._thin.provision``, prefix ``ff``): a subscriber on its hop's
  durable pull consumer (``PullSub``, batches of 32), msgspec through fast-depends'
  ``MsgSpecSerializer``, logging at WARNING. Each hop publishes onward through JetStream
  (``broker.publish(..., stream=...)`` awaits the PubAck, ``Nats-Msg-Id`` set) and one event (a
  core publish the events stream stores); hop 5 puts one KV entry and publishes the Reply to
  the outbox stream. FastStream acks once the handler returned. The client is the thin layer's
  (``bench._pipeline.PipelineClient``).

Missing extras: ``available()`` says which, and the scenario skips them with a hint.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench._loop import HOPS, peer_loads
from bench._store import Figure
from bench._thin import LIMIT, Event, Names, Reply, Task

_log = logging.getLogger(__name__)

HINT = ("peers skipped: `uv sync --locked --extra test --extra peers` installs autogen-core and "
        "FastStream for the autogen5 / faststream5 figures")
PEER_TIMEOUT_S = 300.0
FF_NAMES = Names("ff")
FF_BATCH = 32


def available() -> dict[str, bool]:
    """Which peers can run here: ``{"autogen5": ..., "faststream5": ...}``."""
    return {"autogen5": importlib.util.find_spec("autogen_core") is not None,
            "faststream5": importlib.util.find_spec("faststream") is not None}


def run_autogen(workdir: Path, *, quick: bool) -> list[Figure]:
    """The autogen peer in a process of its own; its figures."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "bench._peers", "autogen"] + (["--quick"] if quick else [])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=PEER_TIMEOUT_S,
                         cwd=Path(__file__).resolve().parent.parent, check=False)
    (workdir / "autogen.log").write_text(out.stderr)
    if out.returncode != 0:
        msg = f"the autogen peer failed ({out.returncode}): {out.stderr[-2000:]}"
        raise RuntimeError(msg)
    return [Figure(**row) for row in json.loads(out.stdout)]


# --- FastStream ---------------------------------------------------------------------------


async def _faststream_hop(url: str, hop: int) -> None:
    from fast_depends.msgspec import MsgSpecSerializer
    from faststream.nats import JStream, NatsBroker, PullSub

    names = FF_NAMES
    # Its per-message "Received" / "Processed" lines are logged at INFO: a logger at WARNING
    # drops them (FastStream's default logger prints them, docs/measurements.md: half the rate).
    logger = logging.getLogger("bench.faststream")
    logger.setLevel(logging.WARNING)
    broker = NatsBroker(url, serializer=MsgSpecSerializer(), logger=logger,
                        graceful_timeout=5.0)
    stream = JStream(names.tasks_stream, declare=False)
    pid = os.getpid()
    prefix = uuid.uuid4().hex[:20]
    counter = iter(range(1 << 62))
    kv: Any = None

    @broker.subscriber(names.task(hop), stream=stream, durable=names.durable(hop),
                       pull_sub=PullSub(batch_size=FF_BATCH, timeout=5.0))
    async def handle(task: Task) -> None:
        if hop < HOPS:
            onward = Task(task.message_id, task.session, task.origin, task.user_id, task.text,
                          task.sent_at, hop + 1, min(hop, 3), ("answer",))
            await broker.publish(onward, names.task(hop + 1), stream=names.tasks_stream,
                                 headers={"Nats-Msg-Id": f"{hop}:{task.message_id}"})
        else:
            await kv.put(f"bench-ff.{task.session}", task.message_id.encode())
            await broker.publish(Reply(task.session, task.origin, task.message_id, "done"),
                                 names.outbox(task.origin), stream=names.outbox_stream,
                                 headers={"Nats-Msg-Id": f"{hop}:{task.message_id}"})
        event = Event(f"{prefix}{next(counter):012x}", task.session, f"hop{hop}", "step",
                      time.time(), pid)
        await broker.publish(event, names.event(hop, "step") + task.session)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await broker.connect()
    kv = await broker.key_value(names.bucket, declare=False)
    await broker.start()
    try:
        await stop.wait()
    finally:
        await broker.stop()


async def run_faststream_loads(workdir: Path, quick: bool) -> list[Figure]:
    """The FastStream peer on its own bench nats-server; its figures."""
    import nats

    from bench._pipeline import (
        PipelineClient,
        hop_processes,
        labelled_pids,
        measure,
        wait_ready,
    )
    from bench._system import bench_nats
    from bench._thin import provision

    names = FF_NAMES
    with bench_nats(workdir) as server:
        nc = await nats.connect(server.url, name="bench-faststream", allow_reconnect=False,
                                connect_timeout=5)
        try:
            await provision(nc.jetstream(timeout=10), names, limit=LIMIT)
            argvs = [["-m", "bench._peers", "faststream-hop", str(hop), "--url", server.url]
                     for hop in range(1, HOPS + 1)]
            with hop_processes(argvs, workdir / "logs") as hops:
                await wait_ready(nc, names)
                client = PipelineClient(nc, names)
                await client.start()
                pids = labelled_pids(hops, server.pid)
                params = {"batch": FF_BATCH, "events_per_step": 1, "max_ack_pending": 2 * LIMIT}
                figures: list[Figure] = []
                for load in peer_loads(quick):
                    figures += await measure("faststream5", client, load, pids,
                                             [f"hop{i}" for i in range(1, HOPS + 1)], params)
                return figures
        finally:
            await nc.close()


def run_peers(workdir: Path, *, quick: bool) -> list[Figure]:
    """Every installed peer in turn (a hint and nothing for a missing one; a failing peer is
    logged and skipped, so the runtime's figures are kept)."""
    present = available()
    if not all(present.values()):
        print(HINT)
    figures: list[Figure] = []
    if present["autogen5"]:
        try:
            figures += run_autogen(workdir / "autogen", quick=quick)
        except (RuntimeError, subprocess.TimeoutExpired, ValueError):
            _log.exception("the autogen peer failed")
    if present["faststream5"]:
        try:
            figures += _run_loop(run_faststream_loads(workdir / "faststream", quick))
        except Exception:
            _log.exception("the FastStream peer failed")
    return figures


def _run_loop(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench._peers autogen [--quick]`` (figures as JSON on stdout) or
    ``python -m bench._peers faststream-hop N --url URL``."""
    parser = argparse.ArgumentParser(prog="python -m bench._peers")
    commands = parser.add_subparsers(dest="command", required=True)
    autogen = commands.add_parser("autogen")
    autogen.add_argument("--quick", action="store_true")
    hop = commands.add_parser("faststream-hop")
    hop.add_argument("hop", type=int, choices=range(1, HOPS + 1))
    hop.add_argument("--url", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.command == "autogen":
        from bench._peer_autogen import autogen_loads

        figures = _run_loop(autogen_loads(args.quick))
        print(json.dumps([dataclasses.asdict(f) for f in figures]))
    else:
        _run_loop(_faststream_hop(args.url, args.hop))
    return 0


if __name__ == "__main__":
    sys.exit(main())


