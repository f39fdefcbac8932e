"""The harness around a five-hop pipeline whose hops are separate processes on a bench
nats-server (the thin layer, the FastStream peer): the client, the processes, the counters.

The client does what the ``runtime`` scenario's ``Client5`` does: a JetStream publish of each
task (``Nats-Msg-Id`` and a session header, awaiting the PubAck) and a core subscription to the
outbox subject where the last hop's Reply arrives, matched by ``in_reply_to``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from bench._loop import (
    BENCH_CLIENT,
    HOPS,
    NATS_SERVER,
    SETTLE_S,
    Answers,
    Load,
    LoopResult,
    Measured,
    closed_loop,
    pipeline_figures,
)
from bench._procs import cpu_seconds
from bench._store import Figure
from bench._thin import Names, Reply, Task, encoder, reply_decoder

ORIGIN = "bench"
"""A request unanswered after this many seconds counts as lost."""
PUBLISH_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


class PipelineClient:
    """Publishes Tasks to hop 1, matches Replies by ``in_reply_to``.

    Args:
        nc: a connected client.
        names: the pipeline's names.
        headers: extra headers on every task (FastStream reads the content type).
    """

    def __init__(self, nc: Client, names: Names, headers: dict[str, str] | None = None) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        self.names = names
        self.extra = headers or {}
        self.answers = Answers()

    @property
    def duplicates(self) -> int:
        return self.answers.duplicates

    async def start(self) -> None:
        await self.nc.subscribe(self.names.outbox(ORIGIN), cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        now = time.perf_counter()
        reply: Reply = reply_decoder.decode(msg.data)
        self.answers.arrived(reply.in_reply_to, now)

    async def one(self) -> float:
        """Send one task; its send → Reply latency in ms.

        Raises:
            TimeoutError: no Reply within ``bench._loop.REQUEST_TIMEOUT_S``.
        """
        key = uuid.uuid4().hex
        session = f"rt-{key[:16]}"
        task = Task(message_id=key, session=session, origin=ORIGIN, user_id="bench",
                    text="hello", sent_at=time.time())
        return await self.answers.latency_ms(key, lambda: self.js.publish(
            self.names.task(1), encoder.encode(task),
            headers={"Nats-Msg-Id": f"bench:{key}", "Bench-Session": session, **self.extra}))

    async def run(self, load: Load, *, warmup: bool) -> LoopResult:
        """One closed-loop run of ``load`` (its warm-up when ``warmup``)."""
        dup0 = self.duplicates
        if warmup:
            return await closed_loop(self.one, min(load.in_flight, 64), load.warmup,
                                     load.budget_s)
        result = await closed_loop(self.one, load.in_flight, load.requests, load.budget_s)
        await asyncio.sleep(SETTLE_S)
        result.duplicates = self.duplicates - dup0
        return result


@dataclass(frozen=True)
class Counts:
    """The task stream's last sequence and its consumers' deliveries and backlog, summed."""

    stored: int
    delivered: int
    pending: int


async def counts(nc: Client, names: Names) -> Counts:
    """Read the counters of the task stream and every hop's consumer."""
    js = nc.jetstream(timeout=5)
    stream = await js.stream_info(names.tasks_stream)
    delivered = pending = 0
    for hop in range(1, HOPS + 1):
        info = await js.consumer_info(names.tasks_stream, names.durable(hop))
        delivered += (info.delivered.consumer_seq or 0) if info.delivered else 0
        pending += info.num_pending or 0
    return Counts(stream.state.last_seq or 0, delivered, pending)


def redeliveries(before: Counts, after: Counts) -> int:
    """Deliveries beyond one per stored message (each stored task goes to one consumer)."""
    return ((after.delivered - before.delivered) - (after.stored - before.stored)
            + after.pending - before.pending)


async def wait_ready(nc: Client, names: Names, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until every hop's consumer has a pull request waiting."""
    js = nc.jetstream(timeout=5)
    async with asyncio.timeout(timeout_s):
        while True:
            ready = 0
            for hop in range(1, HOPS + 1):
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    info = await js.consumer_info(names.tasks_stream, names.durable(hop))
                    ready += 1 if (info.num_waiting or 0) > 0 else 0
            if ready == HOPS:
                return
            await asyncio.sleep(0.1)


@contextlib.contextmanager
def hop_processes(argvs: Sequence[list[str]], logdir: Path) -> Iterator[list[int]]:
    """Start one process per argv (``python -m ...``; each its own session and process group,
    output to ``logdir``); SIGTERM them when the block ends, SIGKILL after 10 s."""
    logdir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, argv in enumerate(argvs, start=1):
            with (logdir / f"hop{i}.log").open("wb") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, *argv], stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                    cwd=Path(__file__).resolve().parent.parent))
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each labelled process."""
    return {name: cpu for name, pid in pids.items() if (cpu := cpu_seconds(pid)) is not None}


async def measure_once(client: PipelineClient, load: Load, pids: dict[str, int], *,
                       warm: bool = True) -> Measured:
    """Warm up (``warm`` and ``load.warmup``), then run ``load``: what came back, CPU, and
    redeliveries."""
    if warm and load.warmup:
        await client.run(load, warmup=True)
    before = await counts(client.nc, client.names)
    cpu0 = cpu_of(pids)
    result = await client.run(load, warmup=False)
    cpu1 = cpu_of(pids)
    after = await counts(client.nc, client.names)
    used = {name: cpu1[name] - cpu0.get(name, cpu1[name]) for name in cpu1}
    return Measured(result, used, redeliveries(before, after))


async def measure(flow: str, client: PipelineClient, load: Load, pids: dict[str, int],
                  actors: list[str], params: dict[str, Any]) -> list[Figure]:
    """Warm up, then run ``load`` and return its figures (``bench._loop.pipeline_figures``)."""
    got = await measure_once(client, load, pids)
    return pipeline_figures(flow, load, got.result, redeliveries=got.redeliveries,
                            cpu_used_s=got.cpu_used_s, actors=actors, params=params)


def labelled_pids(hops: list[int], server_pid: int | None) -> dict[str, int]:
    """``hop1``..``hop5``, the nats-server and this process (the bench client)."""
    pids = {f"hop{i}": pid for i, pid in enumerate(hops, start=1)}
    if server_pid is not None:
        pids[NATS_SERVER] = server_pid
    pids[BENCH_CLIENT] = os.getpid()
    return pids


def _thin_argv(url: str, names: Names, hop: int) -> list[str]:
    return ["-m", "bench._thin", "actor", str(hop), "--url", url, "--prefix", names.prefix]


RunLoad = Callable[[Load, bool], Awaitable[Measured]]
"""``run(load, warm)``: one measured run of ``load`` on a pipeline that is up (``warm``:
send its warm-up first)."""
THIN_ACTORS = [f"hop{i}" for i in range(1, HOPS + 1)]
"""The thin layer's actor labels (``labelled_pids``)."""


@contextlib.asynccontextmanager
async def thin_pipeline(workdir: Path) -> AsyncIterator[RunLoad]:
    """The thin layer (``bench._thin``) on its own bench nats-server, provisioned, its five
    hop processes started; yields ``run(load, warm)`` (``measure_once``); stops everything
    on leaving."""
    import nats

    from bench._system import bench_nats
    from bench._thin import LIMIT, provision

    names = Names("thin")
    with bench_nats(workdir) as server:
        nc = await nats.connect(server.url, name="bench-thin", allow_reconnect=False,
                                connect_timeout=5)
        try:
            await provision(nc.jetstream(timeout=10), names, limit=LIMIT)
            argvs = [_thin_argv(server.url, names, hop) for hop in range(1, HOPS + 1)]
            with hop_processes(argvs, workdir / "logs") as hops:
                await wait_ready(nc, names)
                client = PipelineClient(nc, names)
                await client.start()
                pids = labelled_pids(hops, server.pid)

                async def run(load: Load, warm: bool) -> Measured:
                    return await measure_once(client, load, pids, warm=warm)

                yield run
        finally:
            await nc.close()

