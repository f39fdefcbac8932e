"""The ``runtime`` scenario: Switchboard's runtime alone on a 5-hop durable pipeline.

Five bench-only actors (``bench._runtime_actors``), each its own OS process started by the real
``Supervisor`` (fork server, ``run_actor``), against a bench nats-server on 127.0.0.1. A closed
loop of ``in_flight`` workers publishes ChatMessages to the classifier's task subject (a
JetStream publish) and waits for the consolidator's Reply on a core subscription to the
bench's outbox subject. Each task is 5 durable steps, 10 execution events (the bench actor's
``step`` and the runtime's ``handled``), one KV put and one outbox publish.

Figures: tasks/s, send → Reply latency p50/p90/p99 (ms), lost and duplicated replies,
redeliveries, and CPU µs per step of each process (``/proc/PID/stat``; one step per task per
actor process; for nats-server and the bench client, per task).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from actors.config import Settings, Topology, load_topology
from actors.supervisor import ProcessSpec, Supervisor
from actors.worker import run_actor_process
from bench._consumers import consumer_counts, redeliveries
from bench._measure import percentile
from bench._procs import cpu_seconds
from bench._runtime_actors import BENCH_ACTORS, ROLES
from bench._store import Figure
from bench._system import REPO, bench_nats
from protocol import ChatMessage, Subjects, encoder, outbound_decoder

_log = logging.getLogger(__name__)

SCENARIO = "runtime"
ORIGIN = "benchrt"
"""The bench client's gateway origin: Replies arrive on ``<prefix>.out.benchrt``."""
IN_FLIGHTS = (1, 64, 256)
MAX_IN_FLIGHT = 256
"""``max_in_flight`` of every bench actor, so the load sets the concurrency."""
READY_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0
"""A request unanswered after this many seconds counts as lost."""
PUBLISH_TIMEOUT_S = 10.0
SETTLE_S = 0.5
"""Seconds to keep listening after a load, to see late duplicates."""


@dataclass(frozen=True)
class Load:
    """``requests`` tasks with ``in_flight`` outstanding, after ``warmup`` unmeasured ones, at
    most ``budget_s`` seconds of sending."""

    in_flight: int
    requests: int
    warmup: int
    budget_s: float


def loads(quick: bool) -> list[Load]:
    """The loads of a quick or full run (about 20 s and 60 s of sending here)."""
    if quick:
        return [Load(1, 400, 50, 20), Load(64, 6000, 1000, 20), Load(256, 8000, 1500, 20)]
    return [Load(1, 2000, 100, 60), Load(64, 30000, 2000, 60), Load(256, 40000, 3000, 60)]


@dataclass
class _Result:
    finished: int = 0
    lost: int = 0
    duplicates: int = 0
    errors: int = 0
    wall_s: float = 0.0
    latency_ms: list[float] = field(default_factory=list)


class Client5:
    """The bench client: publishes ChatMessages, matches Replies by ``in_reply_to``."""

    def __init__(self, nc: Client, subjects: Subjects) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        self.subjects = subjects
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self.seen: set[str] = set()
        self.duplicates = 0
        self.errors = 0

    async def start(self) -> None:
        await self.nc.subscribe(self.subjects.outbox(ORIGIN), cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        now = time.perf_counter()
        reply = outbound_decoder.decode(msg.data)
        key = reply.in_reply_to
        if key in self.seen:
            self.duplicates += 1
            return
        self.seen.add(key)
        if getattr(reply, "error", None):
            self.errors += 1
        future = self.waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_result(now)

    async def one(self) -> float:
        """Send one task and return its send → Reply latency in ms.

        Raises:
            TimeoutError: no Reply within ``REQUEST_TIMEOUT_S``.
        """
        key = uuid.uuid4().hex
        session = f"rt-{key[:16]}"
        message = ChatMessage(message_id=key, session=session, origin=ORIGIN, user_id="bench",
                              text="hello", sent_at=time.time())
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[key] = future
        sent = time.perf_counter()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await self.js.publish(self.subjects.task(ROLES[0]), encoder.encode(message),
                                      headers={"Nats-Msg-Id": f"bench:{key}",
                                               "Sb-Session": session})
                done = await future
        finally:
            self.waiting.pop(key, None)
        return (done - sent) * 1000

    async def run(self, in_flight: int, requests: int, budget_s: float) -> _Result:
        """A closed loop of ``in_flight`` workers until ``requests`` finish or ``budget_s``
        seconds of sending pass."""
        result = _Result()
        left = [requests]
        deadline = time.monotonic() + budget_s
        dup0, err0 = self.duplicates, self.errors

        async def worker() -> None:
            while left[0] > 0 and time.monotonic() < deadline:
                left[0] -= 1
                try:
                    result.latency_ms.append(await self.one())
                    result.finished += 1
                except TimeoutError:
                    result.lost += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        result.wall_s = time.perf_counter() - started
        await asyncio.sleep(SETTLE_S)
        result.duplicates = self.duplicates - dup0
        result.errors = self.errors - err0
        return result


def bench_topology() -> Topology:
    """The repository's topology with the five roles at ``MAX_IN_FLIGHT``."""
    base = load_topology(REPO / "topology.yaml", settings=Settings(model=None))
    actors = dict(base.actors)
    for role in ROLES:
        actors[role] = base.actor(role).model_copy(update={"max_in_flight": MAX_IN_FLIGHT,
                                                           "replicas": 1})
    return base.model_copy(update={"actors": actors})


@contextlib.contextmanager
def supervised(topology: Topology, nats_url: str, data_dir: Path) -> Iterator[Supervisor]:
    """The five bench actors under the real Supervisor (fork server), in a thread of this
    process; stopped (SIGTERM, then SIGKILL after 15 s) when the block ends."""
    settings = Settings(nats_url=nats_url, data_dir=data_dir, log_level="WARNING", model=None)
    specs = [ProcessSpec(f"{role}/0", run_actor_process,
                         (role, 0, settings, topology, nats_url, BENCH_ACTORS[role]))
             for role in ROLES]
    supervisor = Supervisor(specs)
    thread = threading.Thread(target=supervisor.run, kwargs={"install_signals": False},
                              name="supervisor", daemon=True)
    thread.start()
    try:
        yield supervisor
    finally:
        supervisor.stop()
        thread.join(timeout=30)


async def _wait_ready(nc: Client, subjects: Subjects, timeout_s: float) -> None:
    """Until every role's consumer has a pull request waiting."""
    js = nc.jetstream(timeout=5)
    async with asyncio.timeout(timeout_s):
        while True:
            waiting = 0
            for role in ROLES:
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    info = await js.consumer_info(subjects.task_stream(role),
                                                  subjects.durable(role))
                    waiting += 1 if (info.num_waiting or 0) > 0 else 0
            if waiting == len(ROLES):
                return
            await asyncio.sleep(0.1)


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu for name, pid in pids.items() if (cpu := cpu_seconds(pid)) is not None}


async def _measure(client: Client5, load: Load, pids: dict[str, int],
                   base: dict[str, Any]) -> list[Figure]:
    if load.warmup:
        await client.run(min(load.in_flight, 64), load.warmup, load.budget_s)
    before = await consumer_counts(client.nc, client.subjects.prefix, list(ROLES))
    cpu0 = _cpu(pids)
    result = await client.run(load.in_flight, load.requests, load.budget_s)
    cpu1 = _cpu(pids)
    after = await consumer_counts(client.nc, client.subjects.prefix, list(ROLES))
    tasks_per_s = result.finished / result.wall_s if result.wall_s else 0.0
    params = {"requests": load.requests, "warmup": load.warmup, "hops": len(ROLES),
              "events_per_step": 2, **base}

    def fig(metric: str, value: float, unit: str, label: str | None = None) -> Figure:
        return Figure(scenario=SCENARIO, flow="runtime5", in_flight=load.in_flight,
                      replicas=1, delay_s=0.0, metric=metric, value=value, unit=unit,
                      label=label, params=params)

    figures = [
        fig("tasks_per_s", tasks_per_s, "tasks/s"),
        fig("finished", result.finished, "tasks"),
        fig("wall", result.wall_s, "s"),
        fig("lost", result.lost, "tasks"),
        fig("duplicates", result.duplicates, "messages"),
        fig("error_replies", result.errors, "replies"),
        fig("redeliveries", redeliveries(before, after), "deliveries"),
    ]
    figures += [fig(f"latency_p{q}", percentile(result.latency_ms, q), "ms")
                for q in (50, 90, 99)]
    if result.finished:
        total = 0.0
        for name, cpu in cpu1.items():
            used_us = (cpu - cpu0.get(name, cpu)) * 1e6 / result.finished
            figures.append(fig("cpu_per_step", used_us, "us", label=name))
            if name in ROLES:
                total += used_us
        figures.append(fig("cpu_per_step", total / len(ROLES), "us", label="actors mean"))
    _log.info("runtime %d in flight: %.0f tasks/s, p50 %.2f ms, p99 %.2f ms, lost %d, "
              "dup %d", load.in_flight, tasks_per_s, percentile(result.latency_ms, 50),
              percentile(result.latency_ms, 99), result.lost, result.duplicates)
    return figures


async def _run(workdir: Path, quick: bool) -> list[Figure]:
    topology = bench_topology()
    subjects = topology.subjects
    with bench_nats(workdir) as server, supervised(topology, server.url, workdir / "data") as sup:
        nc = await nats.connect(server.url, name="bench-runtime", allow_reconnect=False,
                                connect_timeout=5)
        try:
            await _wait_ready(nc, subjects, READY_TIMEOUT_S)
            client = Client5(nc, subjects)
            await client.start()
            pids = {name.split("/")[0]: pid for name, pid in sup.pids().items()}
            if server.pid is not None:
                pids["nats-server"] = server.pid
            pids["bench client"] = os.getpid()
            base = {"max_in_flight": MAX_IN_FLIGHT}
            figures: list[Figure] = []
            for load in loads(quick):
                figures += await _measure(client, load, pids, base)
            return figures
        finally:
            await nc.close()


def run_runtime(workdir: Path, *, quick: bool) -> list[Figure]:
    """Run the scenario and return its figures (see the module docstring)."""
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        import uvloop

        return uvloop.run(_run(workdir, quick))
    except ImportError:
        return asyncio.run(_run(workdir, quick))
